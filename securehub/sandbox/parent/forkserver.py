"""The parent's handle on the fork server: torch imported once per process, one fresh fork per call.

A sandbox child spends most of its start in ``import torch`` and the child
runtime (~1.2-2.5 s of CPU). A process that runs the sandbox more than once
(``lock -e``'s two runs, several loads, a test suite) starts one *fork
server* (:mod:`securehub.sandbox.child.forkserver`) at its second launch and
forks every later child from it: the fork has torch imported already and
then confines itself exactly as a child started from scratch does (the
bootstrap's supervisor, init and worker stages). What differs from a fresh
interpreter, and why it is acceptable:

- ``site`` and the preloaded modules ran *before* confinement, in the server:
  trusted code of the same installation the parent itself imports, run before
  any call existed; no repository code ever runs in the server;
- every child of one server shares the server's memory layout (ASLR) and
  Python's hash seed; none of them is the parent's, and no child receives
  anything of another call (the server never reads a plan: each fork reads
  its own from its channel);
- the server is one more process of the parent's uid. Children cannot reach
  it: they run as another uid, in their own user and PID namespaces, under
  seccomp and Landlock's signal scope; the control socket is a socketpair
  only this process and the server hold (a fork closes it first).

The server is started from a dedicated thread of this process that lives as
long as the process (its ``PR_SET_PDEATHSIG`` fires when that thread ends),
so it never dies with the thread of a caller. It exits when this process
exits or closes the control socket; a server that died is replaced at the
next launch. A child's exit status comes from the server (``wait4`` there,
on request: until then the fork's pid and process group cannot be reused).

``SECUREHUB_FORK_SERVER=0`` (or ``SandboxConfig(fork_server=False)``) makes every
child a fresh interpreter, as the first child of every process is.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securehub.sandbox.parent.cleanup import remove_tree
from securehub.sandbox.parent.env import python_flags, scrubbed_env

__all__ = ["ForkServer", "ForkServerError", "enabled", "server_for_launch"]

_SCRIPT = Path(__file__).parents[1] / "child" / "forkserver.py"
#: What every child imports before its call: torch and the child runtime (which imports the bootstrap).
PRELOAD = ("torch", "securehub.sandbox.child.runtime")
#: What a child's first ``torch.export`` imports (~1.4 s of CPU, ~90 MiB): imported by the server when
#: a launch says its call may export (a missing module is skipped), so only processes that export pay.
WARM = (
    "torch.export",
    "torch._dynamo",
    "torch.export._trace",
    "torch._functorch.aot_autograd",
    "torch.fx.experimental.symbolic_shapes",
)
_READY_TIMEOUT_S = 300.0
#: A reply is immediate, except an FW request's one-time import (~1.4 s of CPU, several times that on a busy machine).
_REPLY_TIMEOUT_S = 120.0


class ForkServerError(OSError):
    """The fork server exited or broke the control protocol."""


def enabled() -> bool:
    """False when ``SECUREHUB_FORK_SERVER`` is ``0``/``off``/``false`` (every child is then a fresh interpreter)."""
    return os.environ.get("SECUREHUB_FORK_SERVER", "1").strip().lower() not in ("0", "off", "false", "no")


class _Keeper:
    """A thread that lives as long as the process and starts servers (their PDEATHSIG parent)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], queue.SimpleQueue[tuple[bool, Any]]]] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._loop, name="securehub-forkserver-keeper", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job, box = self._jobs.get()
            try:
                box.put((True, job()))
            except BaseException as exc:  # handed back to the caller
                box.put((False, exc))

    def run(self, job: Callable[[], Any]) -> Any:
        box: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
        self._jobs.put((job, box))
        ok, value = box.get()
        if not ok:
            raise value
        return value


class ForkServer:
    """One running fork server (see the module docstring). Thread-safe; one request at a time."""

    def __init__(self, preload: tuple[str, ...]) -> None:
        self.preload = preload
        self.owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._dead = False
        self._closed = False
        self._home = Path(tempfile.mkdtemp(prefix="securehub-forkserver-"))
        parent_sock, server_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._ctrl = parent_sock
        try:
            self._popen = _keeper().run(lambda: self._start(server_sock))
        except BaseException:
            parent_sock.close()
            self._remove_home()
            raise
        finally:
            server_sock.close()
        self.pid = self._popen.pid
        try:
            self._expect_ready()
        except BaseException:
            self.close()
            raise

    def _start(self, server_sock: socket.socket) -> subprocess.Popen[bytes]:
        settings = {
            "parent_pid": os.getpid(),
            "ctrl_fd": server_sock.fileno(),
            "preload": list(self.preload),
            "warm": list(WARM),
        }
        env = scrubbed_env(self._home, self._home)
        with (self._home / "stderr").open("wb") as err:
            return subprocess.Popen(
                [sys.executable, *python_flags(), str(_SCRIPT), json.dumps(settings)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(server_sock.fileno(),),
                close_fds=True,
                start_new_session=True,
                env=env,
                cwd=self._home,
            )

    def _expect_ready(self) -> None:
        ready, _, _ = select.select([self._ctrl], [], [], _READY_TIMEOUT_S)
        reply = self._ctrl.recv(16) if ready else b""
        if reply != b"R":
            raise ForkServerError(f"the sandbox fork server did not start: {self.stderr_tail()!r}")

    def stderr_tail(self, max_bytes: int = 2000) -> str:
        """The end of the server's own stderr (its start-up errors)."""
        try:
            data = (self._home / "stderr").read_bytes()[-max_bytes:]
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace").strip()

    def alive(self) -> bool:
        """True while the server runs and this is the process that started it."""
        return not self._dead and os.getpid() == self.owner_pid and self._popen.poll() is None

    def _request(self, msg: bytes, fds: tuple[int, ...] = ()) -> bytes:
        with self._lock:
            if not self.alive():
                raise ForkServerError("the sandbox fork server is not running")
            try:
                if fds:
                    socket.send_fds(self._ctrl, [msg], list(fds))
                else:
                    self._ctrl.send(msg)
                ready, _, _ = select.select([self._ctrl], [], [], _REPLY_TIMEOUT_S)
                reply = self._ctrl.recv(64) if ready else b""
            except OSError as exc:
                self._dead = True
                raise ForkServerError(f"the sandbox fork server's control socket failed: {exc}") from exc
            if not reply:
                self._dead = True
                raise ForkServerError("the sandbox fork server closed its control socket")
            return reply

    def fork(self, channel_fd: int, stdout_fd: int, stderr_fd: int, *, warm: bool = False) -> int:
        """Fork a child for one call; its pid. The caller then sends the plan on the channel.

        ``warm``: the call may run ``torch.export``: the server first imports
        :data:`WARM` (once), so this fork and every later one has it.
        """
        reply = self._request(b"FW" if warm else b"F", (channel_fd, stdout_fd, stderr_fd))
        if reply[:1] != b"P" or len(reply) != 5:
            self._dead = True
            raise ForkServerError(f"the sandbox fork server answered {reply[:16]!r} to a fork request")
        pid: int = struct.unpack("<i", reply[1:])[0]
        return pid

    def poll_exit(self, pid: int) -> tuple[int, float] | None:
        """``(wait status, CPU seconds)`` of an exited fork (reaped now), or ``None`` while it runs.

        Raises :class:`ForkServerError` when the server is gone (its forks died with it)
        or does not know ``pid``.
        """
        reply = self._request(b"W" + struct.pack("<i", pid))
        if reply == b"N":
            return None
        if reply[:1] == b"X" and len(reply) == 13:
            status, cpu = struct.unpack("<id", reply[1:])
            return int(status), float(cpu)
        raise ForkServerError(f"the sandbox fork server has no child {pid} (answer {reply[:16]!r})")

    def close(self) -> None:
        """Close the control socket (the server exits, and its forks with it) and reap it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._dead = True
        with contextlib.suppress(OSError):
            self._ctrl.close()
        if os.getpid() == self.owner_pid:
            try:
                self._popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._remove_home()

    def _remove_home(self) -> None:
        # The whole tree: the server's own imports write there (an FW request's torch.export modules
        # create torchinductor_<user>/ under its TMPDIR), and an rmdir of a non-empty home left one
        # securehub-forkserver-* directory behind per process that exported (red team 9).
        with contextlib.suppress(OSError):
            remove_tree(self._home)


_state_lock = threading.Lock()
_keeper_thread: _Keeper | None = None
_server: ForkServer | None = None
_launches = 0


def _keeper() -> _Keeper:
    global _keeper_thread  # noqa: PLW0603 - one keeper per process
    if _keeper_thread is None or not _keeper_thread._thread.is_alive():
        _keeper_thread = _Keeper()
    return _keeper_thread


def server_for_launch() -> ForkServer | None:
    """The fork server to fork this launch from, or ``None`` to start a fresh interpreter.

    The first launch of a process starts a fresh interpreter (a process that
    runs the sandbox once gains nothing from a server); from the second on, a
    server is started once and reused while it runs. ``None`` also when
    disabled (:func:`enabled`).
    """
    global _server, _launches  # noqa: PLW0603 - one server per process
    if not enabled():
        return None
    with _state_lock:
        _launches += 1
        if _launches < 2:
            return None
        if _server is not None and _server.alive():
            return _server
        if _server is not None and _server.owner_pid == os.getpid():
            _server.close()
        _server = None
        _server = ForkServer(PRELOAD)
        atexit.register(_shutdown, _server)
        return _server


def _shutdown(server: ForkServer) -> None:
    """At exit: close the server (it exits, its forks with it) and remove its directory."""
    if os.getpid() == server.owner_pid:
        server.close()


def _after_fork_in_child() -> None:
    """In a fork of this process (``multiprocessing``, ``os.fork``): drop the inherited server.

    Its control socket belongs to the parent; the copy is closed here so the
    server still sees end-of-file when the parent closes its end. The fork
    starts its own server if it launches sandbox children.
    """
    global _server, _keeper_thread, _state_lock  # noqa: PLW0603 - per-process state
    _state_lock = threading.Lock()  # another thread may have held it at the fork
    _keeper_thread = None
    server, _server = _server, None
    if server is not None:
        server._dead = True
        server._closed = True
        with contextlib.suppress(OSError):
            server._ctrl.close()


os.register_at_fork(after_in_child=_after_fork_in_child)


def forget(server: ForkServer) -> None:
    """Drop ``server`` (it failed a request): the next launch starts another."""
    global _server  # noqa: PLW0603 - one server per process
    with _state_lock:
        if _server is server:
            _server = None
    server.close()
