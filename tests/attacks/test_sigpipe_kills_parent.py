"""Red team 5: a child that stops reading its channel must not kill the parent with SIGPIPE.

Python ignores SIGPIPE, but an application embedding securehub need not: CLIs commonly restore the
default action (``signal.signal(SIGPIPE, SIG_DFL)``, so ``| head`` ends them quietly) and C/C++ hosts
never ignored it. The parent wrote every frame with plain ``send()``; a child that called
``shutdown(SHUT_RD)`` on its end and then asked for an artifact made the parent's answer fail with
``EPIPE``, and the kernel killed the *parent* (exit status -13, the user's whole process, no error,
no audit line). Frames are now sent with ``MSG_NOSIGNAL``: the same child is ``sandbox-protocol``.
Each test runs the parent in a subprocess with SIGPIPE at its default action.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer
from tests.sandbox_probes._harness import probe_path

pytestmark = NEEDS_FULL_SANDBOX

ROOT = Path(__file__).resolve().parents[2]

PROBE_PARENT = textwrap.dedent("""
    import signal, sys
    from pathlib import Path
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from securehub.errors import SecureHubError
    from securehub.sandbox.config import SandboxConfig
    from securehub.sandbox.parent.spawn import launch
    with launch(SandboxConfig(timeout_s=30), probe_file=Path(sys.argv[1])) as child:
        frame = child.recv(max_body_bytes=0)
        assert frame.type == "fetch", frame
        try:
            # An answer as large as a refusal's message may be: more than a socket buffer.
            child.send("error", {"code": "not-locked", "message": "x" * 400_000})
        except SecureHubError as exc:
            print("code=" + exc.code)
    print("parent alive")
""")


def _run_parent(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_child_that_stops_reading_does_not_kill_the_parent_with_sigpipe() -> None:
    proc = _run_parent(PROBE_PARENT, str(probe_path("shut_rd_then_ask")))
    assert proc.returncode == 0, f"parent ended with {proc.returncode} (-13 is SIGPIPE): {proc.stderr[-2000:]}"
    assert "code=sandbox-protocol" in proc.stdout, proc.stdout
    assert "parent alive" in proc.stdout


# ---------------------------------------------------------------- a hostile hubconf, end to end

HUBCONF = textwrap.dedent('''
    import gc
    import json
    import socket
    import struct
    import time

    from torch import nn

    dependencies = ["torch"]


    def _channel():
        for obj in gc.get_objects():
            if isinstance(obj, socket.socket) and obj.family == socket.AF_UNIX and obj.fileno() >= 0:
                return obj
        raise RuntimeError("no channel found")


    def deaf():
        """Stop reading the channel, ask for an artifact the policy refuses at once, wait for the answer."""
        channel = _channel()
        channel.shutdown(socket.SHUT_RD)
        meta = {"url": "http://10.0.0.1/w.pth", "kind": "load_state_dict", "file_name": None,
                "hash_prefix": None, "check_hash": False}
        header = json.dumps({"type": "fetch", "meta": meta}).encode()
        channel.sendall(struct.pack(">QI", 4 + len(header), len(header)) + header)
        time.sleep(30)
        return nn.Linear(1, 1)
''')

LOAD_PARENT = textwrap.dedent("""
    import signal, sys
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    import securehub
    try:
        securehub.load(sys.argv[1], "deaf", policy="default", lock=sys.argv[2], verbose=False)
    except securehub.SecureHubError as exc:
        print("code=" + exc.code)
        print(exc.message)
    print("parent alive")
""")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("sigpipe"), git_server) as e:
        yield e


def test_hubconf_that_stops_reading_does_not_kill_the_loading_process(env: HubEnv) -> None:
    lock = env.root / "hub.lock"
    spec = env.spec(publish(env, "deaf", {"hubconf.py": HUBCONF}))
    lock_repos([spec], policy="default", lock=lock)
    before = Snapshot.take(env.hub, lock)
    results = sorted(p.name for p in (env.hub / "results").glob("*")) if (env.hub / "results").exists() else []
    proc = _run_parent(LOAD_PARENT, spec, str(lock), cwd=env.root)
    assert proc.returncode == 0, f"parent ended with {proc.returncode} (-13 is SIGPIPE): {proc.stderr[-2000:]}"
    assert "code=sandbox-protocol" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "parent alive" in proc.stdout
    before.assert_unchanged(env.hub, lock)
    now = sorted(p.name for p in (env.hub / "results").glob("*")) if (env.hub / "results").exists() else []
    assert now == results
    lines = [json.loads(x) for x in env.audit_log.read_text().splitlines()] if env.audit_log.exists() else []
    assert lines and lines[-1]["entrypoint"] == "deaf" and lines[-1]["code"] == "sandbox-protocol", lines[-1:]
