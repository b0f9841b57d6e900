"""Red team 5 regressions: syscalls and kernel objects a child aims at its parent, all refused.

Each probe runs in the real sandbox with the parent's real pid and process group as targets (an
attacker can guess them) and asserts the exact errno the hostile code sees, then that the parent and
the bootstrap's supervisor are untouched. These were already refused (seccomp deny-list, the PID
namespace, the outside uid, Landlock); the tests keep them so.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import time
import warnings
from pathlib import Path

import pytest

from securehub.errors import SandboxTimeout, SecureHubError
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import SandboxCleanupWarning, check_available, launch
from tests._sandbox_helpers import launch_mode_fixture  # noqa: F401 - the launch_mode fixture
from tests.sandbox_probes._harness import probe_path, run_action

pytestmark = pytest.mark.skipif(
    check_available(SandboxConfig()).level != "full",
    reason="full sandbox isolation is not available on this machine",
)

CFG = SandboxConfig(timeout_s=30)
PARENT = os.getpid()
TIOCSTI = 0x5412
TIOCLINUX = 0x541C


@pytest.mark.parametrize(
    ("name", "nr", "args", "expected"),
    [
        ("ptrace PTRACE_ATTACH parent", 101, (16, PARENT, 0, 0), errno.EPERM),
        ("process_vm_writev parent", 311, (PARENT, 0, 0, 0, 0, 0), errno.EPERM),
        ("kcmp parent", 312, (PARENT, PARENT, 0, 0, 0), errno.EPERM),
        ("pidfd_open parent", 434, (PARENT, 0), errno.EPERM),
        ("pidfd_send_signal", 424, (0, signal.SIGKILL, 0, 0), errno.EPERM),
        ("pidfd_getfd", 438, (0, 0, 0), errno.EPERM),
        ("tkill parent", 200, (PARENT, signal.SIGKILL), errno.EPERM),
        ("tgkill parent", 234, (PARENT, PARENT, signal.SIGKILL), errno.EPERM),
        ("rt_sigqueueinfo parent", 129, (PARENT, signal.SIGKILL, 0), errno.EPERM),
        ("kill parent's process group", 62, (-os.getpgrp(), signal.SIGKILL), errno.EPERM),
        ("kill every process", 62, (-1, signal.SIGKILL), errno.EPERM),
        ("add_key (user keyring)", 248, (0, 0, 0, 0, -4), errno.EPERM),
        ("request_key", 249, (0, 0, 0, -4), errno.EPERM),
        ("userfaultfd", 323, (0,), errno.EPERM),
        ("setns", 308, (0, 0), errno.EPERM),
        ("io_uring_enter", 426, (0, 0, 0, 0, 0, 0), errno.EPERM),
        ("io_uring_register", 427, (0, 0, 0, 0), errno.EPERM),
        ("name_to_handle_at", 303, (0, 0, 0, 0, 0), errno.EPERM),
        ("open_by_handle_at", 304, (0, 0, 0), errno.EPERM),
        ("fanotify_init", 300, (0, 0), errno.EPERM),
        ("clone3 (falls back to clone, threads only)", 435, (0, 0), errno.ENOSYS),
        ("clone without CLONE_THREAD", 56, (signal.SIGCHLD, 0, 0, 0, 0), errno.EPERM),
        ("prctl PR_SET_PDEATHSIG (survive the parent)", 157, (1, 0), errno.EPERM),
        ("setpgid (leave the process group)", 109, (0, 0), errno.EPERM),
    ],
)
def test_syscall_aimed_at_the_parent_is_refused(name: str, nr: int, args: tuple[int, ...], expected: int) -> None:
    result, _ = run_action(CFG, "raw_syscall_args", nr, *args)
    assert result["ok"] is False, (name, result)
    assert result["errno"] == expected, (name, result)


@pytest.mark.parametrize(("request_name", "ioctl_request"), [("TIOCSTI", TIOCSTI), ("TIOCLINUX", TIOCLINUX)])
def test_terminal_injection_ioctls_are_refused_by_the_filter(request_name: str, ioctl_request: int) -> None:
    """EPERM is the filter's answer: on the child's stdin (/dev/null) the kernel would say ENOTTY."""
    result, _ = run_action(CFG, "ioctl_on_stdin", ioctl_request)
    assert result["ok"] is False, result
    assert result["errno"] == errno.EPERM, (request_name, result)


@pytest.mark.parametrize(
    ("entry", "flags"),
    [
        ("mem", os.O_RDWR),
        ("environ", os.O_RDONLY),
        ("fd", os.O_RDONLY | os.O_DIRECTORY),
        ("fd/0", os.O_RDONLY),
        ("cwd", os.O_RDONLY | os.O_DIRECTORY),
        ("root", os.O_RDONLY | os.O_DIRECTORY),
        ("maps", os.O_RDONLY),
    ],
)
def test_parent_proc_entries_cannot_be_opened(entry: str, flags: int) -> None:
    result, _ = run_action(CFG, "open_path", f"/proc/{PARENT}/{entry}", flags)
    assert result["ok"] is False, (entry, result)
    assert result["errno"] == errno.EACCES, (entry, result)


def test_signal_to_own_process_group_reaches_only_the_child() -> None:
    """kill(0, SIGTERM): the group also holds the supervisor (outside uid 0, outside Landlock's domain).

    Were it signalled, the supervisor would die of SIGTERM and the child would not exit with 0
    (``run_action`` asserts it does), and the parent is in another session entirely.
    """
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        result, child = run_action(CFG, "signal_own_process_group", int(signal.SIGTERM))
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert result == {"ok": True, "errno": None, "detail": {"delivered_to_self": True}}
    info = child.exit_info()
    assert info is not None and info.returncode == 0 and info.signal is None


def _fds() -> dict[str, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:
            continue  # listdir's own descriptor
    return out


def test_file_descriptors_sent_over_the_channel_never_reach_the_parent(launch_mode: str) -> None:
    """The parent reads the channel without ancillary buffers: the kernel closes passed rights."""
    if launch_mode == "forked":
        run_action(CFG, "ids")  # the fork server exists before the fds are counted
    before = _fds()
    with launch(CFG, probe_file=probe_path("scm_rights_to_parent")) as child:
        child.send("params", {})
        frame = child.recv(max_body_bytes=0)
        new = {n: t for n, t in _fds().items() if n not in before}
        child_dir = str(child.tmpdir)
    assert frame.type == "result" and frame.meta == {"ok": True}
    # What the parent holds for a child: its channel end and a pidfd on the namespace's init (and,
    # for a fork of the fork server, one on the fork itself).
    pidfds = 2 if launch_mode == "forked" else 1
    assert sorted(new.values(), key=lambda t: t.startswith("socket:")) == [
        *["anon_inode:[pidfd]"] * pidfds,
        next(t for t in new.values() if t.startswith("socket:")),
    ], new
    assert not any(t.startswith(child_dir) for t in new.values()), new
    assert not Path(child_dir).exists()


# ---------------------------------------------------------------- what the child leaves behind


def test_traps_left_in_the_temp_dir_and_a_child_still_writing_do_not_reach_the_parent(tmp_path: Path) -> None:
    """Symlinks out, link attempts on a parent file, a socket inode, a sparse file, escape-sequence
    names, a mode-0 directory, and four threads still creating files when the result arrives:
    the parent kills the child before it cleans up, removes everything without following a link,
    and nothing outside changes."""
    outside = tmp_path / "parent-owned.txt"
    outside.write_text("keep me")
    os.chmod(outside, 0o644)  # noqa: PTH101 - readable by the child's uid: the link attempt is not refused for DAC
    with warnings.catch_warnings():
        warnings.simplefilter("error", SandboxCleanupWarning)
        with launch(CFG, probe_file=probe_path("leave_traps")) as child:
            child.send("params", {"outside": str(outside)})
            frame = child.recv(max_body_bytes=0)
            run_dir = child.run_dir
        assert not run_dir.exists()
    done = frame.meta
    assert done["symlink_outside"] == "ok" and done["symlink_root"] == "ok"
    # fs.protected_hardlinks refuses first (EPERM: not the owner, no write access); without it Landlock
    # does (EXDEV: the file lies under no rule of the child's).
    assert done["hardlink_outside"] in (errno.EPERM, errno.EXDEV)
    assert done["hardlink_stderr"] == errno.EXDEV  # the parent's stderr file, reached through /proc/self/fd
    assert done["socket_inode"] == "ok" and done["escape_name"] == "ok" and done["mode0_dir"] == "ok"
    assert done["fifo"] == errno.EPERM  # mknod is refused by seccomp
    assert done["sparse_1tib"] == errno.EFBIG  # RLIMIT_FSIZE (max_file_mb)
    assert done["sparse_1gib"] == "ok"
    assert outside.read_text() == "keep me"
    assert os.stat(outside).st_nlink == 1  # noqa: PTH116
    assert Path("/").exists() and Path("/etc").is_dir()


# ---------------------------------------------------------------- resource attacks on the parent


def test_frame_dripped_one_byte_at_a_time_ends_at_the_deadline() -> None:
    started = time.monotonic()
    with launch(SandboxConfig(timeout_s=4), probe_file=probe_path("drip_frame")) as child:
        with pytest.raises(SandboxTimeout) as excinfo:
            child.recv(max_body_bytes=0)
    assert excinfo.value.code == "sandbox-timeout"
    assert time.monotonic() - started < 4 + 5
    assert not child.run_dir.exists()


def test_stdout_and_stderr_floods_cost_the_parent_neither_memory_nor_terminal_escapes() -> None:
    """The child's output goes to files in the run directory, never to pipes; the parent reads a tail."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with launch(SandboxConfig(timeout_s=60), probe_file=probe_path("flood_output")) as child:
        with pytest.raises(SecureHubError) as excinfo:
            child.recv(max_body_bytes=0)
    assert excinfo.value.code == "sandbox-protocol"
    assert "exit status 3" in excinfo.value.message
    assert len(excinfo.value.message) < 3000
    assert "\x1b" not in str(excinfo.value) and "\x07" not in str(excinfo.value)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024  # KiB
    assert not child.run_dir.exists()
