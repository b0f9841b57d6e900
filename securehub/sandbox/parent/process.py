"""The sandbox child's top process as the parent sees it: signal it, learn how it ended.

Two kinds, one interface (:class:`ChildProcess`):

- :class:`SpawnedProcess`: a fresh interpreter this process started
  (``subprocess.Popen``); reaped here with ``wait4``;
- :class:`ForkedProcess`: a fork of the fork server
  (:mod:`.forkserver`); the server reaps it when asked, so until then its pid
  and process group stay reserved. It is also held by a pidfd, which keeps
  signalling it safe if the server dies (the fork then dies too: its
  ``PR_SET_PDEATHSIG`` names the server).

Both are session leaders (their own process group), so a group signal reaches
every process of the call that did not start a session of its own.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from typing import Protocol

from securehub.sandbox.parent.forkserver import ForkServer, ForkServerError

__all__ = ["ChildProcess", "ForkedProcess", "SpawnedProcess"]


class ChildProcess(Protocol):
    """What :class:`.spawn.SandboxChild` needs of the process it watches."""

    pid: int

    def reap(self) -> tuple[int, float] | None:
        """``(wait status, CPU seconds)`` once it exited (it is then reaped), else ``None``. Never blocks."""

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to its process group (or to it alone if the group is gone). Caller: not yet reaped."""

    def release(self) -> None:
        """Free what holding it took (after it was reaped). Idempotent."""


class SpawnedProcess:
    """A child started by this process."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def reap(self) -> tuple[int, float] | None:
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            return 0, 0.0  # reaped elsewhere (should not happen): nothing is known
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        self.popen.returncode = code
        return status, usage.ru_utime + usage.ru_stime

    def signal_group(self, sig: int) -> None:
        # Not reaped yet, so its pid (and process group id) cannot have been reused.
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def release(self) -> None:
        return None


class ForkedProcess:
    """A child the fork server forked for this process (see the module docstring)."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self.server = server
        self.pid = pid
        # The server reaps only when asked, so ``pid`` still names the fork here.
        self._pidfd: int | None = os.pidfd_open(pid)

    def _exited(self) -> bool:
        if self._pidfd is None:
            return True
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return bool(poller.poll(0))

    def reap(self) -> tuple[int, float] | None:
        try:
            return self.server.poll_exit(self.pid)
        except ForkServerError:
            # The server died, and its forks with it (PDEATHSIG): the exit status went to whoever
            # reaped them. Report a death by SIGKILL once the pidfd says it ended.
            if not self._exited():
                return None
            return signal.SIGKILL, 0.0

    def signal_group(self, sig: int) -> None:
        if self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)
        # The group id is reserved while the fork is unreaped, which only the server does, on our
        # request; a dead server's forks are reaped by others, so then only the pidfd is used.
        if self.server.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def release(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            os.close(fd)
