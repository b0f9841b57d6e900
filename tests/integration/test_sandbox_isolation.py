"""The sandbox child end to end: what confinement is achieved, what still works inside,
isolation require/best-effort, hostile frames and early exits, cleanup."""

from __future__ import annotations

import errno
import json
import os
import socket
import struct
import warnings
from pathlib import Path

import pytest

from securehub.errors import SandboxProtocol, SandboxUnavailable
from securehub.sandbox.config import IsolationReport, SandboxConfig
from securehub.sandbox.parent import spawn
from securehub.sandbox.parent.spawn import IsolationDegradedWarning, check_available, launch
from tests.sandbox_probes._harness import probe_path, run_action, wait_dead

FULL = check_available(SandboxConfig()).level == "full"
needs_full = pytest.mark.skipif(not FULL, reason="full sandbox isolation is not available on this machine")

CFG = SandboxConfig(timeout_s=30)


@needs_full
def test_child_reports_full_isolation_and_report_is_json() -> None:
    with launch(CFG, probe_file=probe_path("early_exit")) as child:
        report = child.isolation
        assert report is not None
        assert report.level == "full"
        assert report.missing == ()
        assert report.netns and report.userns and report.seccomp and report.no_new_privs
        assert report.rlimits and report.caps
        assert report.landlock_abi is not None and report.landlock_abi >= 1
        assert IsolationReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


@needs_full
def test_tmpdir_is_private_and_writable(tmp_path: Path) -> None:
    cfg = SandboxConfig(timeout_s=30, tmp_parent=tmp_path)
    result, child = run_action(cfg, "tmpdir_roundtrip")
    assert result == {"ok": True, "errno": None, "detail": "ok"}
    assert child.tmpdir.parent.parent == tmp_path
    assert not child.run_dir.exists()  # removed on exit
    assert child.exit_info() is not None  # reaped


@needs_full
def test_threads_work_inside_the_sandbox() -> None:
    result, child = run_action(CFG, "thread_works")
    assert result["ok"] is True
    # getpid() inside the child's own PID namespace: the worker is pid 2 (its init is pid 1).
    assert result["detail"] == 2
    assert child.worker_pid is not None and child.worker_pid != child.pid


@needs_full
def test_read_paths_are_readable_but_not_writable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hubconf.py").write_text("dependencies = []\n")
    cfg = SandboxConfig(read_paths=(repo,), timeout_s=30)
    result, _ = run_action(cfg, "read_file", str(repo / "hubconf.py"))
    assert result == {"ok": True, "errno": None, "detail": "dependencies = []\n"}
    result, _ = run_action(cfg, "write_file", str(repo / "hubconf.py"))
    assert result["ok"] is False
    assert result["errno"] == errno.EACCES
    assert (repo / "hubconf.py").read_text() == "dependencies = []\n"


@needs_full
def test_chmod_is_refused_even_inside_tmpdir() -> None:
    # Documented trade-off: the whole chmod family is denied by seccomp.
    result, _ = run_action(CFG, "chmod", ".", 0o700)
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM


@needs_full
def test_confinement_is_visible_in_proc_status() -> None:
    result, _ = run_action(CFG, "proc_status")
    status = result["detail"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    for cap in ("CapAmb", "CapInh"):
        assert int(status[cap], 16) == 0, cap
    # The only capability left, and only when the interpreter sits below a
    # directory outside uid 65534 cannot search (pyenv under /root 0700), is
    # CAP_DAC_READ_SEARCH inside the child's own user namespace; never
    # SETUID/SETGID/KILL/SYS_RESOURCE, and not in the bounding set either.
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert int(status[cap], 16) & ~(1 << 2) == 0, cap


@needs_full
@pytest.mark.slow
def test_torch_imports_and_computes_inside_the_sandbox() -> None:
    with launch(CFG, probe_file=probe_path("torch_op")) as child:
        frame = child.recv()
        assert frame.type == "result"
        assert frame.meta["value"] == 12.0
        info = child.wait(10)
        assert info is not None and info.returncode == 0, child.stderr_tail()
        assert "Error" not in child.stderr_tail()


@needs_full
def test_network_allow_mode_reaches_loopback() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        cfg = SandboxConfig(network="allow", timeout_s=30)
        result, child = run_action(cfg, "tcp_connect", listener.getsockname()[1])
        assert child.isolation is not None and child.isolation.netns is False
        assert result["ok"] is True
    finally:
        listener.close()


# ---------------------------------------------------------------- isolation: require / best-effort


def test_require_with_mechanism_unavailable_fails_before_spawning(tmp_path: Path) -> None:
    cfg = SandboxConfig(isolation="require", disable_mechanisms=frozenset({"landlock"}), tmp_parent=tmp_path)
    with pytest.raises(SandboxUnavailable) as exc_info:
        launch(cfg, probe_file=probe_path("marker"))
    assert exc_info.value.code == "sandbox-unavailable"
    assert "landlock" in exc_info.value.message
    assert list(tmp_path.iterdir()) == []  # no run dir: nothing was started


@needs_full
def test_require_refuses_when_child_achieves_less_and_entry_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pre-flight says "full" (patched); the child cannot apply Landlock; the parent
    # must refuse after the ready report, before the probe runs.
    full = check_available(SandboxConfig())
    monkeypatch.setattr(spawn, "check_available", lambda _cfg: full)
    out = tmp_path / "out"
    out.mkdir()
    cfg = SandboxConfig(disable_mechanisms=frozenset({"landlock"}), tmp_parent=out)
    with pytest.raises(SandboxUnavailable) as exc_info:
        launch(cfg, probe_file=probe_path("marker"))
    assert "missing landlock" in exc_info.value.message
    assert list(out.iterdir()) == []  # child killed, run dir removed
    assert not (tmp_path / "ran").exists()


@needs_full
def test_best_effort_runs_degraded_and_says_what_is_missing() -> None:
    cfg = SandboxConfig(isolation="best-effort", disable_mechanisms=frozenset({"seccomp"}), timeout_s=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with launch(cfg, probe_file=probe_path("marker")) as child:
            marker = child.tmpdir / "ran"
            child.send("params", {"path": str(marker)})
            assert child.recv().meta == {"ok": True}
            assert marker.read_text() == "ran"
            assert child.isolation is not None
            assert child.isolation.level == "degraded"
            assert child.isolation.missing == ("seccomp",)
            assert child.isolation.seccomp is False
    assert any(issubclass(w.category, IsolationDegradedWarning) for w in caught)


def test_check_available_names_disabled_mechanisms() -> None:
    report = check_available(SandboxConfig(disable_mechanisms=frozenset({"netns", "seccomp"})))
    assert report.level in ("degraded", "none")
    assert {"netns", "seccomp"} <= set(report.missing)
    # with the network allowed, netns is not required
    report = check_available(SandboxConfig(network="allow", disable_mechanisms=frozenset({"netns"})))
    assert "netns" not in report.missing


# ---------------------------------------------------------------- hostile frames, early exits


def _frame(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">QI", 4 + len(header) + len(body), len(header)) + header + body


@needs_full
@pytest.mark.parametrize(
    ("name", "raw", "fragment"),
    [
        ("deep_nesting", _frame(b'{"type":"x","meta":' + b"[" * 5000 + b"]" * 5000 + b"}"), "nests deeper"),
        ("non_object", _frame(b"[1,2]"), "must be a JSON object"),
        ("non_string_type", _frame(b'{"type":5,"meta":{}}'), "frame type"),
        ("over_cap_body", struct.pack(">QI", 1 << 40, 2) + b"{}", "exceeds the cap"),
        ("bad_utf8", _frame(b'{"type":"x","meta":{"a":"\xff"}}'), "UTF-8"),
    ],
)
def test_malformed_frame_from_child_is_refused_and_child_killed(name: str, raw: bytes, fragment: str) -> None:
    with launch(CFG, probe_file=probe_path("garbage")) as child:
        child.send("params", {"hex": raw.hex()})
        with pytest.raises(SandboxProtocol) as exc_info:
            child.recv(max_body_bytes=1 << 20)
        assert fragment in exc_info.value.message, name
        info = child.exit_info()
        assert info is not None and info.killed


@needs_full
def test_truncated_frame_then_exit_is_a_protocol_error() -> None:
    raw = _frame(b'{"type":"result","meta":{}}', b"x" * 100)[:-50]
    with launch(CFG, probe_file=probe_path("garbage")) as child:
        child.send("params", {"hex": raw.hex(), "close": True})
        with pytest.raises(SandboxProtocol) as exc_info:
            child.recv()
        assert "middle of a frame" in exc_info.value.message


@needs_full
def test_early_exit_is_reported_with_the_status() -> None:
    with launch(CFG, probe_file=probe_path("early_exit")) as child:
        with pytest.raises(SandboxProtocol) as exc_info:
            child.recv()
    assert exc_info.value.code == "sandbox-protocol"
    assert "exit status 3" in exc_info.value.message


@needs_full
def test_uncaught_exception_in_probe_is_reported_with_its_output() -> None:
    with launch(CFG, probe_file=probe_path("raises")) as child:
        with pytest.raises(SandboxProtocol) as exc_info:
            child.recv()
    assert "uncaught exception" in exc_info.value.message
    assert "boom from the probe" in exc_info.value.message


# ---------------------------------------------------------------- the child dies with its parent


@needs_full
def test_child_dies_when_the_parent_dies_abruptly(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from securehub.sandbox.config import SandboxConfig\n"
        "from securehub.sandbox.parent.spawn import launch\n"
        f"c = launch(SandboxConfig(timeout_s=120, tmp_parent=Path({str(tmp_path)!r})),\n"
        f"           probe_file=Path({str(probe_path('sleep_forever'))!r}))\n"
        "print(c.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout.strip())
    # PDEATHSIG delivers SIGKILL as the parent exits; allow the kernel a moment.
    assert wait_dead(pid, 10)


@needs_full
def test_bootstrap_closes_fds_leaked_into_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate a spawn bug that passes an extra fd: the bootstrap must close it before
    # confining (a leaked fd would bypass Landlock).
    import subprocess

    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    fd = os.open(secret, os.O_RDONLY)
    real_popen = subprocess.Popen

    def leaky_popen(*args: object, **kwargs: object) -> object:
        kwargs["pass_fds"] = (*kwargs["pass_fds"], fd)  # type: ignore[misc]
        return real_popen(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(spawn.subprocess, "Popen", leaky_popen)
    # A fresh interpreter (Popen); a fork of the fork server gets no fd from the parent but the
    # channel and its output files: tests/integration/test_fork_server.py checks its fds.
    monkeypatch.setenv("SECUREHUB_FORK_SERVER", "0")
    try:
        result, _ = run_action(CFG, "open_fds")
    finally:
        os.close(fd)
    assert str(secret) not in result["detail"].values()
    assert str(fd) not in result["detail"] or result["detail"][str(fd)] != str(secret)
