"""Red team 9: a hostile hubconf run as a fork of the fork server, against the server and later forks.

From a process's second sandbox launch on, children are forks of one server that has torch imported
(securehub/sandbox/parent/forkserver.py). Every load here is at least a process's third, through the
real git server, sandbox and torch, under the built-in ``default`` and ``strict`` policies, and each
asserts that it *was* a fork. The hubconf is handed the server's real pid (an attacker can guess
pids) and reports the errno of every attempt in its error message; the test asserts each attempt was
refused, that the server is the same live process afterwards, and that the next load is a correct
fork of it. ``channel_ioctl`` is a finding of this round: socket device ioctls on the channel, a
socket the parent created, described the host's network namespace (``SIOCGIFCONF`` listed the host's
interfaces and addresses under ``network: deny``); they are now EPERM in both launch modes.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.sandbox.parent import forkserver
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer
from tests.sandbox_probes._harness import process_alive

pytestmark = NEEDS_FULL_SANDBOX

CANARY_NAMES = ("securehub-rt9-planted", "securehub-rt9-planted-shm")

HUBCONF = """
import ctypes
import errno
import fcntl
import os
import stat
import struct
import sys

import torch
from torch import nn

dependencies = ["torch"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys(nr, *args):
    ctypes.set_errno(0)
    got = _libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return "ok" if got >= 0 else str(ctypes.get_errno())


def _os(func, *args):
    try:
        func(*args)
    except OSError as exc:
        return str(exc.errno)
    return "ok"


def _report(results):
    raise ValueError("ATTEMPTS " + " ".join(f"{k}={v}" for k, v in results.items()) + " END")


def ok(n=0):
    return nn.Linear(1, 1)


def reach_server(pid=0):
    buf = ctypes.create_string_buffer(64)
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 64)
    remote = (ctypes.c_void_p * 2)(0x400000, 64)
    results = {
        "kill0": _os(os.kill, pid, 0),
        "kill9": _os(os.kill, pid, 9),
        "killpg": _os(os.killpg, pid, 9),
        "environ": _os(lambda: open(f"/proc/{pid}/environ", "rb").read()),
        "maps": _os(lambda: open(f"/proc/{pid}/maps", "rb").read()),
        "mem": _os(lambda: open(f"/proc/{pid}/mem", "rb").read(1)),
        "fds": _os(os.listdir, f"/proc/{pid}/fd"),
        "cwd": _os(os.listdir, f"/proc/{pid}/cwd"),
        "ptrace_attach": _sys(101, 16, pid, 0, 0),
        "ptrace_seize": _sys(101, 0x4206, pid, 0, 0),
        "process_vm_readv": _sys(310, pid, ctypes.addressof(local), 1, ctypes.addressof(remote), 1, 0),
        "pidfd_open": _sys(434, pid, 0),
        "kcmp": _sys(312, os.getpid(), pid, 0, 0, 0),
    }
    # Every fd but the channel and stdio: the control socket is closed before the fork runs anything.
    others = [fd for fd in range(3, 256) if _os(os.fstat, fd) == "ok"]
    results["extra_fds"] = str(len(others) - 1)
    _report(results)


def _channel():
    socks = [fd for fd in range(3, 256) if _os(os.fstat, fd) == "ok" and stat.S_ISSOCK(os.fstat(fd).st_mode)]
    assert len(socks) == 1, socks
    return socks[0]


def _channel_ioctl(request):
    # SIOCGIFCONF (0x8912) and friends on the inherited channel: the parent's network namespace.
    buf = ctypes.create_string_buffer(4096)
    if request == 0x8912:
        arg = bytearray(struct.pack("iL", 4096, ctypes.addressof(buf)))
    else:
        arg = bytearray(struct.pack("16s24s", b"lo", b""))
    fcntl.ioctl(_channel(), request, arg)


def _model():
    torch.manual_seed(0)
    return nn.Linear(1, 1)


def channel_ifconf():
    # A time bomb (strict pins outputs: hub.lock recorded the honest run): attacks once MKL_NUM_THREADS
    # (one of the few variables a child sees) is 7.
    if os.environ.get("MKL_NUM_THREADS") == "7":
        _channel_ioctl(0x8912)
    return _model()


def channel_hwaddr():
    if os.environ.get("MKL_NUM_THREADS") == "7":
        _channel_ioctl(0x8927)
    return _model()


def plant(n=0):
    # State for the next fork: files outside the temp dir, the environment, shared modules.
    for path in ("/tmp/securehub-rt9-planted", "/dev/shm/securehub-rt9-planted-shm", "/var/tmp/securehub-rt9-planted"):
        try:
            with open(path, "w") as fh:
                fh.write("planted")
        except OSError:
            pass
    return nn.Linear(1, 1)


def plant_memory(n=0):
    # What a fork changes in its own memory: copy-on-write, never the server's.
    os.environ["SECUREHUB_RT9_PLANTED"] = "1"
    os.putenv("SECUREHUB_RT9_PLANTED_C", "1")
    torch.securehub_rt9_planted = True
    sys.modules["securehub.sandbox.child.runtime"].securehub_rt9_planted = True
    sys.modules["json"].JSONDecoder.securehub_rt9_planted = True
    return nn.Linear(1, 1)


def check_planted(n=0):
    found = [
        name
        for name, hit in (
            ("tmp", os.path.exists("/tmp/securehub-rt9-planted")),
            ("shm", os.path.exists("/dev/shm/securehub-rt9-planted-shm")),
            ("environ", "SECUREHUB_RT9_PLANTED" in os.environ or "SECUREHUB_RT9_PLANTED_C" in os.environ),
            ("torch", hasattr(torch, "securehub_rt9_planted")),
            ("runtime", hasattr(sys.modules["securehub.sandbox.child.runtime"], "securehub_rt9_planted")),
            ("json", hasattr(sys.modules["json"].JSONDecoder, "securehub_rt9_planted")),
        )
        if hit
    ]
    if found:
        raise ValueError("PLANTED " + ",".join(found))
    return nn.Linear(1, 1)
"""


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.lock = env.root / "hub.lock"
        self.calls = 0
        self.spec = env.spec(publish(env, "fork-server-attacks", {"hubconf.py": HUBCONF}))
        lock_repos([self.spec], entrypoints=["channel_ifconf", "channel_hwaddr"], policy="strict", lock=self.lock)

    def load(self, entrypoint: str, policy: str, *, warm_up: bool = False, **kwargs: object) -> object:
        """One load that must be a fork of the fork server (``n``: a fresh argument, so no cached result)."""
        self.calls += 1
        if entrypoint in ("ok", "plant", "plant_memory", "check_planted"):
            kwargs["n"] = self.calls
        before = forkserver._launches
        model = securehub.load(self.spec, entrypoint, policy=policy, lock=self.lock, verbose=False, **kwargs)
        if not warm_up:
            assert forkserver._launches > before >= 2, "not a fork of the server"
            assert forkserver._server is not None and forkserver._server.alive()
        return model

    def refused(self, entrypoint: str, policy: str, **kwargs: object) -> SecureHubError:
        before = Snapshot.take(self.env.hub, self.lock)
        with pytest.raises(SecureHubError) as excinfo:
            self.load(entrypoint, policy, **kwargs)
        before.assert_unchanged(self.env.hub, self.lock)
        return excinfo.value


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("fork-server-attacks"), git_server) as env:
        w = World(env)
        for _ in range(3):  # at least the process's third load: a fork of a running server
            w.load("ok", "default", warm_up=True)
        yield w


def _server() -> forkserver.ForkServer:
    server = forkserver._server
    assert server is not None and server.alive(), "no running fork server"
    return server


def _attempts(message: str) -> dict[str, str]:
    found = re.search(r"ATTEMPTS (.*?) END", message)
    assert found, message
    return dict(pair.split("=", 1) for pair in found.group(1).split())


# Under strict an unpinned argument set (the server's pid) is not-locked before anything runs.
@pytest.mark.parametrize("policy", ["default"])
def test_fork_cannot_signal_trace_read_or_open_the_fork_server(world: World, policy: str) -> None:
    server = _server()
    err = world.refused("reach_server", policy, pid=server.pid)
    assert err.code == "sandbox-violation", err.message  # the audit hook saw the kill and the opens
    got = _attempts(str(err))
    refused = {str(errno.EPERM), str(errno.ESRCH), str(errno.EACCES), str(errno.ENOENT)}
    assert {k for k, v in got.items() if k != "extra_fds" and v not in refused} == set(), got
    assert got["extra_fds"] == "0", got  # the channel is the only fd beyond stdio
    assert len(got) == 14, got
    # The server is the same live process, and the next load is a correct fork of it.
    assert _server() is server and process_alive(server.pid)
    assert isinstance(world.load("ok", policy), __import__("torch").nn.Linear)
    assert _server() is server


@pytest.mark.parametrize("policy", ["default", "strict"])
@pytest.mark.parametrize("entrypoint", ["channel_ifconf", "channel_hwaddr"])
def test_channel_ioctl_cannot_list_the_hosts_network_interfaces(
    world: World, policy: str, entrypoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    err = world.refused(entrypoint, policy)
    assert err.code == "entrypoint-error", err.message
    assert "PermissionError" in str(err) and "Operation not permitted" in str(err), str(err)


@pytest.mark.parametrize("policy", ["default"])
def test_fork_leaves_no_state_for_the_next_fork(world: World, policy: str) -> None:
    server = _server()
    home = sorted(p.name for p in server._home.iterdir())
    err = world.refused("plant", policy)
    assert err.code == "sandbox-violation" and "/dev/shm/securehub-rt9-planted-shm" in err.message, err.message
    world.load("plant_memory", policy)
    world.load("check_planted", policy)  # raises entrypoint-error naming what it found
    assert _server() is server
    assert sorted(p.name for p in server._home.iterdir()) == home
    for path in (Path("/tmp/securehub-rt9-planted"), Path("/dev/shm/securehub-rt9-planted-shm")):
        assert not path.exists(), path
    assert "SECUREHUB_RT9_PLANTED" not in os.environ and "SECUREHUB_RT9_PLANTED" not in os.environ.get(
        "SECUREHUB_RT9_PLANTED_C", ""
    )
