"""Red team 12: syscalls and file-system tricks a hostile hubconf aims at its parent (regressions).

Through the real git server, sandbox and torch, in both launch modes (fresh interpreter and fork
server), a hubconf handed the parent's pid and the path of a file the parent owns tries what red
team 11 did not: ``pidfd_getfd``/``process_madvise``/``process_mrelease`` on the parent, ``userfaultfd``,
the io_uring calls (its requests bypass seccomp), ``bpf``, ``perf_event_open`` on the parent,
``add_key``/``request_key``/``keyctl``, ``memfd_secret``, every mount call that could shadow a path in
its namespace (``mount``, ``umount2``, ``pivot_root``, ``open_tree``, ``move_mount``, ``fsopen``,
``fsconfig``, ``fsmount``, ``fspick``, ``mount_setattr``, ``unshare(CLONE_NEWNS)``), and, in the
directories it sees, a FIFO (the parent must never block on one), a hard link of a file it may only
read into its temp dir, and a symlink or FIFO in the read-only tree. It reports each errno in its exception message;
the audit hook reports the write through the symlink (``sandbox-violation``).
Each is refused (by seccomp, Landlock or the read-only grant); the symlink it may make in its own temp
directory pointing at the parent's file is inert: nothing of the parent follows it (the file is unchanged and
has one link). Nothing is cached.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub
from securehub.errors import SecureHubError
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context, publish
from tests._sandbox_helpers import launch_mode_fixture  # noqa: F401 - the launch_mode fixture
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = r"""
dependencies = ["torch"]
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PARENT, CANARY = %d, %r

def sc(nr, *args):
    conv = [a if a is None or isinstance(a, (ctypes.Array, bytes)) or hasattr(a, "_obj") else ctypes.c_long(a)
            for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return r if r < 0 else "allowed"  # an allowed call's fd/value is not compared

def sc_errno(nr, *args):
    r = sc(nr, *args)
    return r if r == "allowed" else errno.errorcode.get(ctypes.get_errno(), "?")

def os_errno(call):
    try:
        call()
        return "allowed"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, "?")

def probe():
    r, buf = {}, ctypes.create_string_buffer(256)
    here = os.path.dirname(os.path.abspath(__file__))
    r["pidfd_getfd"] = sc_errno(438, 0, 0, 0)
    r["process_madvise"] = sc_errno(440, 0, buf, 1, 0, 0)
    r["process_mrelease bad fd"] = sc_errno(448, 999, 0)
    r["userfaultfd"] = sc_errno(323, 0)
    r["io_uring_setup"] = sc_errno(425, 8, buf)
    r["io_uring_enter"] = sc_errno(426, 0, 1, 0, 0, 0, 0)
    r["io_uring_register"] = sc_errno(427, 0, 0, 0, 0)
    r["bpf"] = sc_errno(321, 0, buf, 48)
    r["perf_event_open parent"] = sc_errno(298, buf, PARENT, -1, -1, 0)
    r["add_key"] = sc_errno(248, b"user", b"k", b"v", 1, -3)
    r["request_key"] = sc_errno(249, b"user", b"k", None, -3)
    r["keyctl"] = sc_errno(250, 0, -3, 0)
    r["memfd_secret"] = sc_errno(447, 0)
    r["mount bind over tmp"] = sc_errno(165, here.encode(), b"/tmp", None, 4096, None)
    r["umount2"] = sc_errno(166, b"/tmp", 2)
    r["pivot_root"] = sc_errno(155, b"/tmp", b"/tmp")
    r["open_tree"] = sc_errno(428, -100, here.encode(), 1)
    r["move_mount"] = sc_errno(429, -1, b"", -100, b"/tmp", 4)
    r["fsopen"] = sc_errno(430, b"tmpfs", 0)
    r["fsconfig"] = sc_errno(431, 0, 0, None, None, 0)
    r["fsmount"] = sc_errno(432, 0, 0, 0)
    r["fspick"] = sc_errno(433, -100, b"/tmp", 0)
    r["mount_setattr"] = sc_errno(442, -100, b"/tmp", 0, buf, 32)
    r["unshare mount namespace"] = sc_errno(272, 0x00020000)
    tmp = os.environ["TMPDIR"]
    r["mkfifo in own tmp"] = os_errno(lambda: os.mkfifo(os.path.join(tmp, "fifo")))
    r["symlink in own tmp to the parent's file"] = os_errno(lambda: os.symlink(CANARY, os.path.join(tmp, "s")))
    r["write through that symlink"] = os_errno(lambda: open(os.path.join(tmp, "s"), "w").close())
    r["hard link of a tree file into own tmp"] = os_errno(
        lambda: os.link(os.path.join(here, "hubconf.py"), os.path.join(tmp, "h")))
    r["symlink in the tree"] = os_errno(lambda: os.symlink(CANARY, os.path.join(here, "s")))
    r["mkfifo in the tree"] = os_errno(lambda: os.mkfifo(os.path.join(here, "fifo")))
    raise RuntimeError("RESULTS " + json.dumps(r))
"""

#: What each attempt must get (an errno name, or "allowed" for a call that is harmless to the parent).
EXPECTED: dict[str, str] = {
    "pidfd_getfd": "EPERM",
    "process_madvise": "EPERM",
    "process_mrelease bad fd": "EBADF",  # allowed: it needs a pidfd, and pidfd_open/CLONE_PIDFD are refused
    "userfaultfd": "EPERM",
    "io_uring_setup": "EPERM",
    "io_uring_enter": "EPERM",
    "io_uring_register": "EPERM",
    "bpf": "EPERM",
    "perf_event_open parent": "EPERM",
    "add_key": "EPERM",
    "request_key": "EPERM",
    "keyctl": "EPERM",
    "memfd_secret": "EPERM",
    "mount bind over tmp": "EPERM",
    "umount2": "EPERM",
    "pivot_root": "EPERM",
    "open_tree": "EPERM",
    "move_mount": "EPERM",
    "fsopen": "EPERM",
    "fsconfig": "EPERM",
    "fsmount": "EPERM",
    "fspick": "EPERM",
    "mount_setattr": "EPERM",
    "unshare mount namespace": "EPERM",
    "mkfifo in own tmp": "EPERM",  # mknodat is refused by seccomp
    "symlink in own tmp to the parent's file": "allowed",  # inert: nothing of the parent follows it
    "write through that symlink": "EACCES",  # Landlock: the target is outside what the child may write
    "hard link of a tree file into own tmp": "EPERM",  # Landlock: no REFER right between the two
    "symlink in the tree": "EACCES",
    "mkfifo in the tree": "EPERM",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str, Path]]:
    root = tmp_path_factory.mktemp("kernel-rt12")
    canary = root / "parent-owned.txt"
    canary.write_text("the parent's file\n")
    with hub_env_context(root, git_server) as env:
        repo = publish(env, "kernel-rt12", {"hubconf.py": HUBCONF % (os.getpid(), str(canary))})
        yield env, env.spec(repo), canary


def test_kernel_surface_and_file_tricks_aimed_at_the_parent_are_refused(
    world: tuple[HubEnv, str, Path], launch_mode: str
) -> None:
    env, spec, canary = world
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(spec, "probe", policy="default")
    # the audit hook saw the open of the parent's file for writing (Landlock refused it as well)
    assert excinfo.value.code == "sandbox-violation", str(excinfo.value)
    message = str(excinfo.value)
    assert f"open {canary} for writing" in message, message
    assert "RESULTS " in message, message
    results = json.loads(message[message.index("RESULTS ") + len("RESULTS ") :])
    assert results == EXPECTED, (launch_mode, results)
    assert canary.read_text() == "the parent's file\n"
    assert canary.stat().st_nlink == 1
    results_dir = env.hub / "results"
    assert not results_dir.exists() or not any(results_dir.iterdir())
