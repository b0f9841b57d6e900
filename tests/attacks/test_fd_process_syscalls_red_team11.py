"""Red team 11: fd and process syscalls a hostile hubconf aims at its parent, all refused (regressions).

Through the real git server, sandbox and torch, in both launch modes (fresh interpreter and fork
server), a hubconf handed the parent's real pid and process group tries to make the kernel signal
the parent through the channel (``F_SETOWN``/``F_SETOWN_EX`` + ``F_SETSIG`` + ``O_ASYNC``), to take
a lease on a file it did not create, to find a terminal on fds 0-2, and to reach the parent with
``prctl``, ``prlimit64``, ``setpriority``, ``sched_setaffinity``, ``ioprio_set`` and ``kill``. It
reports the errno of each attempt in its exception message. Every one is refused by the PID
namespace, the outside uid or the seccomp filter; no signal reaches the parent; nothing is cached.
``FIONREAD``/``SIOCOUTQ`` on the channel (its own queue lengths) and ``F_SETOWN`` of its own pid
namespace's init are allowed and harmless (they report on or signal the child's own processes).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

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
PARENT, PGRP = %d, %d

def sc(nr, *args):
    conv = [a if a is None or isinstance(a, ctypes.Array) or hasattr(a, "_obj") else ctypes.c_long(a) for a in args]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *conv)
    return r if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")

def channel():
    for n in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + n).startswith("socket:"):
                return int(n)
        except OSError:
            pass
    raise RuntimeError("no channel")

def probe():
    c, r = channel(), {}
    r["F_SETOWN parent"] = sc(72, c, 8, PARENT)
    r["F_SETOWN -pgrp"] = sc(72, c, 8, -PGRP)
    r["F_SETOWN_EX pid parent"] = sc(72, c, 15, (ctypes.c_int * 2)(1, PARENT))
    r["F_SETOWN_EX pgrp parent"] = sc(72, c, 15, (ctypes.c_int * 2)(2, PGRP))
    r["F_SETSIG SIGKILL"] = sc(72, c, 10, 9)
    r["F_SETFL O_ASYNC"] = sc(72, c, 4, sc(72, c, 3) | 0o20000)
    r["FIONREAD"] = sc(16, c, 0x541B, ctypes.byref(ctypes.c_int()))
    r["SIOCOUTQ"] = sc(16, c, 0x5411, ctypes.byref(ctypes.c_int()))
    fd = os.open(__file__, os.O_RDONLY)
    r["F_SETLEASE tree file"] = sc(72, fd, 1024, 0)
    for i in (0, 1, 2):
        for name, req in (("TCGETS", 0x5401), ("TIOCGPGRP", 0x540F), ("TIOCSCTTY", 0x540E)):
            r[f"{name} {i}"] = sc(16, i, req, ctypes.create_string_buffer(64))
    r["PR_SET_MM"] = sc(157, 35, 6, 0x1000, 0, 0)
    r["PR_SET_PTRACER parent"] = sc(157, 0x59616D61, PARENT)
    lim = (ctypes.c_ulong * 2)()
    sc(302, 0, 7, None, lim)
    r["prlimit raise NOFILE"] = sc(302, 0, 7, (ctypes.c_ulong * 2)(lim[1] + 1, lim[1] + 1), None)
    r["prlimit parent"] = sc(302, PARENT, 0, (ctypes.c_ulong * 2)(1, 1), None)
    r["setpriority parent"] = sc(141, 0, PARENT, 19)
    r["setpriority pgrp"] = sc(141, 1, PGRP, 19)
    r["sched_setaffinity parent"] = sc(203, PARENT, 8, ctypes.byref(ctypes.c_ulong(1)))
    r["ioprio_set parent"] = sc(251, 1, PARENT, 3 << 13)
    r["ioprio_set pgrp"] = sc(251, 2, PGRP, 3 << 13)
    r["kill parent"] = sc(62, PARENT, 29)
    r["kill every process"] = sc(62, -1, 29)
    r["kill parent group"] = sc(62, -PGRP, 29)
    raise RuntimeError("RESULTS " + json.dumps(r))
"""

#: What each attempt must get (errno name; an int is an allowed call's return value).
EXPECTED: dict[str, object] = {
    "F_SETOWN parent": "ESRCH",  # the parent has no pid in the child's PID namespace
    "F_SETOWN -pgrp": "ESRCH",
    "F_SETOWN_EX pid parent": "ESRCH",
    "F_SETOWN_EX pgrp parent": "ESRCH",
    "F_SETSIG SIGKILL": 0,  # allowed: the owner can only be one of the child's own processes
    "F_SETFL O_ASYNC": 0,
    "FIONREAD": 0,  # allowed: the child's own receive queue length
    "SIOCOUTQ": 0,
    "F_SETLEASE tree file": "EACCES",  # a lease would stall the parent's opens; not the child's file
    **{f"{name} {i}": "ENOTTY" for i in (0, 1, 2) for name in ("TCGETS", "TIOCGPGRP", "TIOCSCTTY")},
    "PR_SET_MM": "EPERM",
    "PR_SET_PTRACER parent": "EINVAL",  # no such pid in the child's namespace
    "prlimit raise NOFILE": "EPERM",
    "prlimit parent": "EPERM",
    "setpriority parent": "EPERM",
    "setpriority pgrp": "EPERM",
    "sched_setaffinity parent": "EPERM",
    "ioprio_set parent": "EPERM",
    "ioprio_set pgrp": "EPERM",
    "kill parent": "EPERM",
    "kill every process": "EPERM",
    "kill parent group": "EPERM",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("fd-syscalls"), git_server) as env:
        repo = publish(env, "fd-syscalls", {"hubconf.py": HUBCONF % (os.getpid(), os.getpgrp())})
        yield env, env.spec(repo)


def test_fd_and_process_syscalls_aimed_at_the_parent_are_refused(world: tuple[HubEnv, str], launch_mode: str) -> None:
    env, spec = world
    received: list[int] = []
    watched = (signal.SIGIO, signal.SIGURG, signal.SIGUSR1)
    previous = {s: signal.signal(s, lambda sig, _frame: received.append(sig)) for s in watched}
    try:
        with pytest.raises(SecureHubError) as excinfo:
            securehub.load(spec, "probe", policy="default")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert excinfo.value.code == "entrypoint-error", str(excinfo.value)
    message = str(excinfo.value)
    assert "RESULTS " in message, message
    results = json.loads(message[message.index("RESULTS ") + len("RESULTS ") :])
    assert results == EXPECTED, (launch_mode, results)
    assert received == [], f"signals reached the parent: {received}"
    results_dir = env.hub / "results"
    assert not results_dir.exists() or not any(results_dir.iterdir())
