"""Packaging: the wheel ships the built-in policies, so ``policy="strict"`` works from any directory,
and ``python -m securehub`` / the console script are declared."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_policies_and_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("securehub-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for preset in ("strict", "default", "permissive"):
            member = f"securehub/policies/{preset}.yaml"
            assert member in names
            assert zf.read(member) == (ROOT / "policies" / f"{preset}.yaml").read_bytes()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "securehub = securehub.cli:main" in zf.read(entry_points).decode()
        assert not any(n.startswith("tests/") for n in names)
        errors_md = next(n for n in names if n.endswith(".data/data/share/doc/securehub/errors.md"))
        assert zf.read(errors_md) == (ROOT / "docs" / "errors.md").read_bytes()
    _installed_wheel_links_sarif_rules_to_its_errors_md(wheel, tmp_path / "venv")


def _installed_wheel_links_sarif_rules_to_its_errors_md(wheel: Path, venv: Path) -> None:
    """SPEC section 10: every SARIF rule has a helpUri, also in a plain wheel install (no checkout, no
    declared Documentation URL): the page the wheel installed under ``<venv>/share/doc/securehub``;
    the tool's informationUri is the README installed beside it.

    The wheel goes into a fresh venv (``pip --python``), never into the running one: ``pip install
    --prefix`` would first uninstall the editable install every other test imports.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-compile", "-q",
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    site = next(venv.glob("lib/python*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages")]  # torch, yaml, ...: no .pth runs from PYTHONPATH
    code = (
        "import securehub, json; from securehub.audit._formats._rules import RULES; "
        "from securehub.audit._formats._rules import INFORMATION_URI; "
        "print(json.dumps([securehub.__file__, RULES['hash-mismatch'].to_sarif().get('helpUri'), INFORMATION_URI]))"
    )
    out = subprocess.run(
        [str(python), "-c", code], env={"PYTHONPATH": ":".join([str(site), *deps])},
        cwd=venv, check=True, capture_output=True, text=True,
    )  # fmt: skip
    where, uri, info = json.loads(out.stdout)
    assert Path(where).is_relative_to(site)  # the installed copy answered, not the checkout
    docs = (venv / "share" / "doc" / "securehub").resolve()
    assert uri == (docs / "errors.md").as_uri() + "#hash-mismatch"
    assert (docs / "errors.md").read_bytes() == (ROOT / "docs" / "errors.md").read_bytes()
    assert info == (docs / "README.md").as_uri()  # SARIF informationUri: the README it installed
    assert (docs / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()


def test_builtin_policy_loads_from_unrelated_cwd(tmp_path: Path) -> None:
    (tmp_path / "strict.yaml").write_text("version: 1\nsandbox: {network: allow}\n")  # must not shadow
    code = (
        "from securehub.config.policy import Policy; p = Policy.load('strict'); print(p.sandbox.network, p.lock.mode)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert out.stdout.split() == ["deny", "required"]


def test_python_dash_m_and_usage_exit_code(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "securehub"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "usage: securehub" in proc.stderr
