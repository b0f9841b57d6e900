"""``securehub load|list|help`` from the command line (SPEC section 10), end to end: real git server,
real sandbox, real reconstruction; the console output and exit codes are what a user sees."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HUBCONF = textwrap.dedent(
    '''
    import functools
    import torch
    from torch import nn

    dependencies = ["torch"]

    def mlp(hidden=8):
        """A small MLP.

        Args:
            hidden: width of the hidden layer.
        """
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    wide = functools.partial(mlp, hidden=16)
    '''
)


@pytest.fixture
def project(github_url: str, repo_factory, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = repo_factory.make_repo("acme/cli", files={"hubconf.py": HUBCONF})
    repo.tag("v1", commit=repo.head_commit())
    cwd = tmp_path / "project"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_") and k != "GITHUB_TOKEN"}
    env.update(SECUREHUB_GITHUB_URL=github_url, SECUREHUB_DIR=os.environ["SECUREHUB_DIR"],
               SECUREHUB_AUDIT_LOG=str(tmp_path / "audit.jsonl"))  # fmt: skip
    return cwd, env


def _cli(project: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    cwd, env = project
    return subprocess.run(
        [sys.executable, "-m", "securehub", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_load_save_list_help_under_strict(project: tuple[Path, dict[str, str]]) -> None:
    cwd, _ = project
    assert _cli(project, "lock", "acme/cli:v1", "-e", "mlp", "--arg", "hidden=8", "--policy", "strict").returncode == 0

    out = cwd / "mlp.safetensors"
    proc = _cli(project, "load", "acme/cli:v1", "mlp", "--arg", "hidden=8", "--policy", "strict", "--save", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "loaded torch.nn.modules.container.Sequential" in proc.stdout
    torch.manual_seed(3)
    expected = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).state_dict()
    saved = load_file(str(out))
    assert sorted(saved) == sorted(expected)
    assert all(torch.equal(saved[k], expected[k]) for k in expected)

    listed = _cli(project, "list", "acme/cli:v1", "--policy", "strict")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["mlp", "wide"]

    helped = _cli(project, "help", "acme/cli:v1", "mlp", "--policy", "strict")
    assert helped.returncode == 0, helped.stderr
    assert "A small MLP." in helped.stdout and "hidden: width" in helped.stdout


def test_load_refusals_exit_1_with_code(project: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    cwd, _ = project
    proc = _cli(project, "load", "acme/cli:v1", "mlp", "--policy", "strict")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error[not-locked]:")
    assert not (cwd / "hub.lock").exists()

    local = tmp_path / "local-repo"
    local.mkdir()
    (local / "hubconf.py").write_text(HUBCONF)
    proc = _cli(project, "load", str(local), "mlp", "--source", "local", "--policy", "strict")
    assert proc.returncode == 1
    assert "error[repo-not-allowed]:" in proc.stderr

    proc = _cli(project, "load", "acme/cli:v1", "nope", "--policy", "default")
    assert proc.returncode == 1
    assert "error[entrypoint-not-found]:" in proc.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_output_paths_that_are_devices_are_written_into_never_replaced(project: tuple[Path, dict[str, str]]) -> None:
    """``--save``/``--output``/``cache export`` to a device: as root, renaming the result over /dev/null made
    the machine's /dev/null a regular file, and /dev/full's ENOSPC was exit 0. Device nodes made in the
    project directory stand in for /dev's."""
    import stat

    cwd, _ = project
    null, full = cwd / "null", cwd / "full"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(full, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    assert _cli(project, "lock", "acme/cli:v1", "-e", "mlp", "--policy", "strict").returncode == 0
    saved = _cli(project, "load", "acme/cli:v1", "mlp", "--policy", "strict", "--save", str(null))
    assert saved.returncode == 0, saved.stderr
    audit = _cli(project, "audit", "--offline", "--format", "json", "--output", str(full))
    assert audit.returncode == 2 and "error[usage]: cannot write the report" in audit.stderr, audit.stderr
    export = _cli(project, "cache", "export", str(full), "--policy", "strict")
    assert export.returncode == 2 and "error[usage]: cannot write the bundle" in export.stderr, export.stderr
    assert "No space left on device" in export.stderr
    assert stat.S_ISCHR(null.stat().st_mode) and stat.S_ISCHR(full.stat().st_mode)
    assert sorted(p.name for p in cwd.iterdir()) == ["full", "hub.lock", "null"]
