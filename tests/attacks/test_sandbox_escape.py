"""Attacks from inside the sandbox (SPEC section 6): each probe tries one escape, the test asserts
the exact errno / error code AND that nothing happened outside.

Probes live in tests/sandbox_probes/; most need no torch, so each child costs ~50 ms.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from securehub.errors import SandboxResource, SandboxTimeout, SandboxViolation
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import check_available
from tests._sandbox_helpers import launch_mode_fixture  # noqa: F401 - the launch_mode fixture
from tests.sandbox_probes._harness import run_action, run_until_exit

pytestmark = [
    pytest.mark.skipif(
        check_available(SandboxConfig()).level != "full",
        reason="full sandbox isolation is not available on this machine",
    ),
    # every escape is tried from a fresh interpreter and from a fork of the fork server
    pytest.mark.usefixtures("launch_mode"),
]

CFG = SandboxConfig(timeout_s=30)


def _tcp_errno() -> int:
    # Landlock ABI >= 4 refuses TCP connect before routing (EACCES); without it the
    # empty network namespace has no route (ENETUNREACH).
    abi = check_available(CFG).landlock_abi or 0
    return errno.EACCES if abi >= 4 else errno.ENETUNREACH


class _Listener:
    """A loopback listener that records whatever reaches it."""

    def __init__(self, sock: socket.socket, stream: bool) -> None:
        self.sock = sock
        self.received: list[bytes] = []
        self._stream = stream
        self._stop = threading.Event()
        sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._stream:
                    conn, _ = self.sock.accept()
                    self.received.append(b"<connection>" + conn.recv(100))
                    conn.close()
                else:
                    self.received.append(self.sock.recv(100))
            except (TimeoutError, OSError):
                continue

    def close(self) -> list[bytes]:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.received


@pytest.fixture
def tcp_listener() -> Iterator[tuple[int, _Listener]]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    lst = _Listener(s, stream=True)
    yield s.getsockname()[1], lst
    lst.close()


@pytest.fixture
def udp_listener() -> Iterator[tuple[int, _Listener]]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    lst = _Listener(s, stream=False)
    yield s.getsockname()[1], lst
    lst.close()


# ---------------------------------------------------------------- network egress


def test_tcp_connect_to_loopback_listener_is_refused(tcp_listener: tuple[int, _Listener]) -> None:
    port, listener = tcp_listener
    result, _ = run_action(CFG, "tcp_connect", port)
    assert result["ok"] is False
    assert result["errno"] == _tcp_errno()
    assert listener.close() == []


def test_tcp_connect_via_ctypes_libc_bypassing_python_is_refused(tcp_listener: tuple[int, _Listener]) -> None:
    port, listener = tcp_listener
    result, _ = run_action(CFG, "ctypes_tcp_connect", port)
    assert result["ok"] is False
    assert result["errno"] == _tcp_errno()
    assert listener.close() == []


def test_udp_sendto_loopback_listener_is_unreachable(udp_listener: tuple[int, _Listener]) -> None:
    port, listener = udp_listener
    result, _ = run_action(CFG, "udp_sendto", port)
    assert result["ok"] is False
    assert result["errno"] == errno.ENETUNREACH
    assert listener.close() == []


def test_unix_socket_connect_outside_tmpdir_is_refused(tmp_path: Path) -> None:
    # Landlock does not mediate connect() on pathname sockets (docker.sock attack); seccomp does.
    path = tmp_path / "agent.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen()
    listener = _Listener(s, stream=True)
    result, _ = run_action(CFG, "unix_connect", str(path))
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM
    assert listener.close() == []


def test_abstract_unix_socket_connect_is_refused() -> None:
    name = f"securehub-test-{os.getpid()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind("\0" + name)
    s.listen()
    listener = _Listener(s, stream=True)
    result, _ = run_action(CFG, "abstract_unix_connect", name)
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM
    assert listener.close() == []


def test_unix_socket_via_ctypes_libc_is_refused() -> None:
    result, _ = run_action(CFG, "ctypes_unix_socket")
    assert result == {"ok": False, "errno": errno.EPERM, "detail": result["detail"]}


# ---------------------------------------------------------------- reading secrets


def test_read_ssh_key_in_fake_home_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "home" / ".ssh" / "id_rsa"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY----- secret")
    result, _ = run_action(CFG, "read_file", str(key))
    assert result["ok"] is False
    assert result["errno"] == errno.EACCES


def test_list_fake_home_is_refused(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".netrc").write_text("machine x password y")
    result, _ = run_action(CFG, "list_dir", str(tmp_path / "home"))
    assert result["ok"] is False
    assert result["errno"] == errno.EACCES


def test_read_hub_lock_next_to_parent_cwd_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "hub.lock").write_text('{"version": 1}')
    monkeypatch.chdir(project)
    result, _ = run_action(CFG, "read_file", str(project / "hub.lock"))
    assert result["ok"] is False
    assert result["errno"] == errno.EACCES


def test_read_other_process_proc_entries_is_refused() -> None:
    for path in ("/proc/1/cmdline", f"/proc/{os.getpid()}/environ", f"/proc/{os.getpid()}/cmdline"):
        result, _ = run_action(CFG, "read_file", path)
        assert result["ok"] is False, path
        assert result["errno"] == errno.EACCES, path


def test_env_tokens_and_proxies_do_not_reach_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "GITHUB_TOKEN": "ghp_secret",
        "SECUREHUB_GITHUB_TOKEN": "ghp_secret2",
        "SECUREHUB_DIR": "/somewhere",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "HTTPS_PROXY": "http://proxy:3128",
        "http_proxy": "http://proxy:3128",
    }
    for k, v in secrets.items():
        monkeypatch.setenv(k, v)
    result, child = run_action(CFG, "environment")
    env = result["detail"]
    assert not set(secrets) & set(env)
    assert not any(k.startswith("SECUREHUB_") for k in env)
    assert not any("secret" in v for v in env.values())
    assert env["HOME"] == str(child.tmpdir / "home")
    assert env["TMPDIR"] == str(child.tmpdir / "tmp")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10 has no -P: the sandbox keeps -I there")
def test_the_parents_python_variables_do_not_reach_the_interpreter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The child runs without -E (so PYTHONHASHSEED=0 fixes str hashing, red team 13): every other PYTHON*
    variable of the parent must still be absent, and none may change the interpreter (path, startup, inspect)."""
    (tmp_path / "sitecustomize.py").write_text(f"open({str(tmp_path / 'canary')!r}, 'w').close()\n")
    (tmp_path / "startup.py").write_text(f"open({str(tmp_path / 'canary')!r}, 'w').close()\n")
    parent = {
        "PYTHONPATH": str(tmp_path),
        "PYTHONSTARTUP": str(tmp_path / "startup.py"),
        "PYTHONINSPECT": "1",
        "PYTHONUSERBASE": str(tmp_path),
        "PYTHONHASHSEED": "random",
        "PYTHONSAFEPATH": "0",
    }
    for k, v in parent.items():
        monkeypatch.setenv(k, v)
    seen = []
    for _ in range(3):  # the first launch of a process is a fresh interpreter, later ones forks (if enabled)
        env, _child = run_action(CFG, "environment")
        info, _child = run_action(CFG, "interpreter")
        assert {k for k in env["detail"] if k.startswith("PYTHON")} == {"PYTHONHASHSEED"}
        assert env["detail"]["PYTHONHASHSEED"] == "0"
        detail = info["detail"]
        assert detail["hash_randomization"] == 0 and detail["inspect"] == 0 and detail["no_user_site"] == 1
        assert not any(p.startswith(str(tmp_path)) for p in detail["sys_path"]), detail["sys_path"]
        seen.append((detail["str_hash"], detail["set_order"]))
    assert seen[0] == seen[1] == seen[2]
    assert not (tmp_path / "canary").exists()


def test_inheritable_fd_opened_by_parent_is_not_visible_in_child(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    fd = os.open(secret, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        result, _ = run_action(CFG, "open_fds")
    finally:
        os.close(fd)
    fds = result["detail"]
    assert str(secret) not in fds.values()
    # Only stdin (/dev/null), stdout/stderr (run dir files) and the channel socket;
    # the listing's own directory fd is closed by the time it is readlink'ed.
    assert fds["0"] == "/dev/null"
    others = [v for k, v in fds.items() if k not in ("0", "1", "2") and v != "error 2"]
    assert len(others) == 1, fds
    assert others[0].startswith("socket:["), fds


# ---------------------------------------------------------------- writing / metadata


def test_write_outside_tmpdir_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "dropped.py"
    result, _ = run_action(CFG, "write_file", str(target))
    assert result["ok"] is False
    assert result["errno"] == errno.EACCES
    assert not target.exists()


def test_write_into_cache_dir_creates_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "securehub" / "artifacts"
    cache.mkdir(parents=True)
    victim = cache / "abc.safetensors"
    victim.write_bytes(b"good")
    for target in (cache / "new.safetensors", victim):
        result, _ = run_action(CFG, "write_file", str(target))
        assert result["ok"] is False
        assert result["errno"] == errno.EACCES
    assert sorted(p.name for p in cache.iterdir()) == ["abc.safetensors"]
    assert victim.read_bytes() == b"good"


def test_chmod_secret_outside_is_refused_and_mode_unchanged(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x")
    secret.chmod(0o600)
    result, _ = run_action(CFG, "chmod", str(secret), 0o666)
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_utime_and_setxattr_outside_are_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    before = victim.stat().st_mtime_ns
    for action in ("utime", "setxattr"):
        result, _ = run_action(CFG, action, str(victim))
        assert result["ok"] is False, action
        assert result["errno"] == errno.EPERM, action
    assert victim.stat().st_mtime_ns == before
    assert os.listxattr(victim) == []


# ---------------------------------------------------------------- processes


def test_os_system_runs_nothing(tmp_path: Path) -> None:
    result, child = run_action(CFG, "os_system", "pwned")
    assert result["ok"] is False
    assert not (child.tmpdir / "pwned").exists()


def test_subprocess_spawn_is_refused() -> None:
    result, _ = run_action(CFG, "subprocess_run", "pwned")
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM


def test_fork_bomb_fails_at_the_first_fork() -> None:
    result, _ = run_action(CFG, "fork_bomb")
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_double_fork_setsid_daemon_cannot_outlive_the_child() -> None:
    result, child = run_action(CFG, "double_fork_daemon", "daemon.pid")
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM
    assert _processes_mentioning(str(child.run_dir)) == []
    assert not child.run_dir.exists()


def test_setsid_to_leave_the_process_group_is_refused() -> None:
    result, _ = run_action(CFG, "setsid")
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM


def test_signal_to_parent_is_refused_and_parent_unaffected() -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, _frame: received.append(signum))
    try:
        result, _ = run_action(CFG, "kill", os.getpid(), int(signal.SIGUSR1))
        result_init, _ = run_action(CFG, "kill", 1, 0)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert result["ok"] is False
    assert result["errno"] == errno.EPERM
    assert result_init["errno"] == errno.EPERM
    assert received == []


@pytest.mark.parametrize(
    ("name", "nr"),
    [
        ("ptrace", 101),
        ("mount", 165),
        ("unshare", 272),
        ("bpf", 321),
        ("io_uring_setup", 425),
        ("keyctl", 250),
        ("perf_event_open", 298),
        ("process_vm_readv", 310),
    ],
)
def test_dangerous_syscall_is_refused(name: str, nr: int) -> None:
    result, _ = run_action(CFG, "raw_syscall", nr)
    assert result["ok"] is False, name
    assert result["errno"] == errno.EPERM, name


def test_x32_abi_syscall_bypass_kills_the_child() -> None:
    from securehub.sandbox.parent.spawn import launch
    from tests.sandbox_probes._harness import probe_path

    with launch(CFG, probe_file=probe_path("actions")) as child:
        child.send("params", {"action": "x32_syscall", "args": []})
        with pytest.raises(SandboxViolation) as exc_info:
            child.recv()
    assert exc_info.value.code == "sandbox-violation"
    info = child.exit_info()
    assert info is not None
    assert info.signal == signal.SIGSYS


# ---------------------------------------------------------------- resource bombs


def test_memory_bomb_fails_with_sandbox_resource() -> None:
    info, child = run_until_exit(SandboxConfig(memory_mb=512, timeout_s=30), "memory_bomb")
    err = child.error_for_exit(info)
    assert isinstance(err, SandboxResource)
    assert err.code == "sandbox-resource"
    assert "memory" in err.message


def test_cpu_spin_fails_with_sandbox_resource() -> None:
    info, child = run_until_exit(SandboxConfig(cpu_s=1, timeout_s=30), "cpu_spin")
    assert info.signal == signal.SIGXCPU
    err = child.error_for_exit(info)
    assert isinstance(err, SandboxResource)
    assert "CPU" in err.message


def test_cpu_spin_ignoring_sigxcpu_is_killed_at_the_hard_limit() -> None:
    # soft 1 s + 5 s grace: ~6 s of CPU, the slowest test here.
    info, child = run_until_exit(SandboxConfig(cpu_s=1, timeout_s=30), "cpu_spin_ignore_xcpu")
    assert info.signal == signal.SIGKILL
    assert not info.killed and not info.timed_out
    err = child.error_for_exit(info)
    assert isinstance(err, SandboxResource)
    assert "CPU" in err.message


def test_sleep_past_deadline_fails_with_sandbox_timeout() -> None:
    from securehub.sandbox.parent.spawn import launch
    from tests.sandbox_probes._harness import probe_path

    with launch(SandboxConfig(timeout_s=1.5), probe_file=probe_path("sleep_forever")) as child:
        with pytest.raises(SandboxTimeout) as exc_info:
            child.recv()
        assert exc_info.value.code == "sandbox-timeout"
        info = child.exit_info()
        assert info is not None
        assert info.timed_out
    assert _processes_mentioning(str(child.run_dir)) == []
