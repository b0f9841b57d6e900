"""Packaging: the wheel ships the built-in policies, so ``policy="strict"`` works from any directory,
and ``python -m securehub`` / the console script are declared."""

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
