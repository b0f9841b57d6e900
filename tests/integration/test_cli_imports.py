"""Commands that never load a tensor never import torch (importing it costs one to two seconds).

``lock`` without ``-e`` (and ``lock --check``), ``audit`` without ``--rerun``, ``cache verify`` and
``cache prune`` resolve, fetch, hash and compare: none of them needs torch, and a CI job running
``securehub audit`` on every push should not pay for it. Each command runs for real (the
loopback git server, a fresh hub) in a subprocess that reports, at exit, whether ``torch`` was
ever imported. ``lock -e`` and ``load`` do import it: the control that the probe can see it.
"""

from __future__ import annotations

import subprocess
import sys

from tests._servers import RepoHandle
from tests.integration.test_lock_cli import REPO, Cli, cli, repo  # noqa: F401 - fixtures used by name

_PROBE = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: sys.stderr.write('\\nPROBE torch=%s\\n' % ('torch' in sys.modules)))\n"
    "sys.argv = ['securehub', *sys.argv[1:]]\n"
    "runpy.run_module('securehub', run_name='__main__', alter_sys=True)\n"
)


def _imports_torch(cli: Cli, *args: str) -> tuple[int, bool]:  # noqa: F811 - fixture type
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=cli.cwd, env=cli.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    probe = [line for line in proc.stderr.splitlines() if line.startswith("PROBE torch=")]
    assert len(probe) == 1, proc.stderr
    return proc.returncode, probe[0] == "PROBE torch=True"


def test_lock_audit_verify_and_cache_commands_never_import_torch(cli: Cli, repo: RepoHandle) -> None:  # noqa: F811
    spec = f"{REPO}:v1"
    commands = [
        ("lock", spec),
        ("audit",),
        ("audit", "--format", "sarif"),
        ("lock", "--check"),
        ("cache", "verify"),
        ("cache", "prune"),
    ]
    seen = {" ".join(c): _imports_torch(cli, *c) for c in commands}
    assert seen == {" ".join(c): (0, False) for c in commands}


def test_probe_sees_torch_when_a_command_needs_it(cli: Cli, repo: RepoHandle) -> None:  # noqa: F811
    # The control: the probe is not blind. ``lock -e`` runs the entrypoint in the sandbox and
    # digests the state it returns, which takes torch.
    _, imported = _imports_torch(cli, "lock", f"{REPO}:v1", "-e", "tiny")
    assert imported
