"""Red team 5: a datagram ``socketpair`` re-aimed at a UNIX socket outside the sandbox (SPEC section 6).

SPEC 6: "The child cannot connect to UNIX sockets outside its temp dir (path or abstract)". seccomp
refuses ``socket(AF_UNIX, ...)`` because Landlock does not mediate ``connect()`` on pathname sockets,
but ``socketpair()`` stayed allowed "because it reaches nothing". A connected AF_UNIX *datagram*
pair is not tied to its peer: ``sendto(addr)`` sends to any datagram socket by path, and
``connect(addr)`` re-aims it (``SOCK_RAW`` is a datagram socket for AF_UNIX). Before the fix a hubconf
delivered datagrams to a 0666 socket in a root-only directory (think ``/dev/log``,
``/run/systemd/journal/socket``: forged system log lines), through libc without any audit event,
and the load succeeded. The filter now allows ``socketpair`` only as ``AF_UNIX``/``SOCK_STREAM``
(whose sockets refuse ``sendto``/``connect`` with ``EISCONN``). Each test asserts the exact errno or
code and that nothing reached the listener.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.sandbox.config import SandboxConfig
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer
from tests.sandbox_probes._harness import run_action

pytestmark = NEEDS_FULL_SANDBOX

CFG = SandboxConfig(timeout_s=30)


class _DatagramListener:
    """A datagram socket like ``/dev/log``: mode 0666, in a directory only root may list."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "dev-log.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o666)  # noqa: PTH101 - the socket, as /dev/log is
        self.sock.setblocking(False)

    def received(self) -> list[bytes]:
        out: list[bytes] = []
        while True:
            try:
                out.append(self.sock.recv(256))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[_DatagramListener]:
    lst = _DatagramListener(tmp_path)
    yield lst
    lst.close()


# ---------------------------------------------------------------- probes (the bare sandbox)


@pytest.mark.parametrize("action", ["dgram_socketpair_sendto", "dgram_socketpair_connect"])
def test_datagram_socketpair_to_host_socket_is_refused(action: str, listener: _DatagramListener) -> None:
    result, _ = run_action(CFG, action, str(listener.path))
    assert result["ok"] is False, result
    assert result["errno"] == errno.EPERM, result
    assert listener.received() == []


@pytest.mark.parametrize("sock_type", [socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET])
def test_datagram_socketpair_via_ctypes_libc_is_refused(sock_type: int, listener: _DatagramListener) -> None:
    result, _ = run_action(CFG, "ctypes_dgram_socketpair_sendto", str(listener.path), int(sock_type))
    assert result["ok"] is False, result
    assert result["errno"] == errno.EPERM, result
    assert listener.received() == []


def test_stream_socketpair_still_works() -> None:
    """Stream pairs (asyncio's self-pipe, the channel itself) reach nothing and stay allowed."""
    result, _ = run_action(CFG, "stream_socketpair_works")
    assert result == {"ok": True, "errno": None, "detail": "ping"}


# ---------------------------------------------------------------- a hostile hubconf, end to end

HUBCONF = '''
import ctypes
import socket
import struct

from torch import nn

dependencies = ["torch"]


def log_forger(path=""):
    """Write a forged syslog line through libc (no audit event), then return a harmless model."""
    libc = ctypes.CDLL(None, use_errno=True)
    fds = (ctypes.c_int * 2)()
    if libc.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM, 0, fds) != 0:
        raise OSError(ctypes.get_errno(), "socketpair refused")
    addr = struct.pack("=H", socket.AF_UNIX) + path.encode() + b"\\0"
    if libc.sendto(fds[0], b"<34>sshd: forged", 16, 0, addr, len(addr)) < 0:
        raise OSError(ctypes.get_errno(), "sendto refused")
    return nn.Linear(1, 1)


def log_forger_python(path=""):
    a, _b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.sendto(b"<34>sshd: forged", path)
    return nn.Linear(1, 1)
'''


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.lock = env.root / "hub.lock"
        self.spec = env.spec(publish(env, "dgram-forger", {"hubconf.py": HUBCONF}))
        lock_repos([self.spec], policy="strict", lock=self.lock)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("dgram"), git_server) as env:
        yield World(env)


def _results(hub: Path) -> list[str]:
    return sorted(p.name for p in (hub / "results").glob("*")) if (hub / "results").exists() else []


@pytest.mark.parametrize("entrypoint", ["log_forger", "log_forger_python"])
def test_hubconf_cannot_send_datagrams_to_a_host_socket(
    world: World, listener: _DatagramListener, entrypoint: str
) -> None:
    before = Snapshot.take(world.env.hub, world.lock)
    results_before = _results(world.env.hub)
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(
            world.spec, entrypoint, path=str(listener.path), policy="default", lock=world.lock, verbose=False
        )
    assert excinfo.value.code == "entrypoint-error", str(excinfo.value)
    assert "Operation not permitted" in str(excinfo.value) or "[Errno 1]" in str(excinfo.value), str(excinfo.value)
    assert listener.received() == []
    before.assert_unchanged(world.env.hub, world.lock)
    assert _results(world.env.hub) == results_before
