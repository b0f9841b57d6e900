"""Open files the user names (hub.lock, a policy, a key, a bundle, the audit log) only when they are regular files.

A path securehub reads or appends to may be a symlink someone else chose: a
``hub.lock`` committed to a repository as a symlink to ``/dev/zero`` (read
without end), to a FIFO or ``/dev/stdin`` (an ``open`` or ``read`` that never
returns), or to a terminal. Red team 15 took ``securehub audit`` to gigabytes
of memory in seconds and hung ``load``/``sign``/``cache import`` forever that
way. :func:`open_regular` opens with ``O_NONBLOCK`` (opening a FIFO never
waits for a writer; a FIFO opened for writing without a reader fails with
``ENXIO``), checks the *open* file with ``fstat`` (no window to swap the
name), refuses anything but a regular file with :class:`NotRegularFileError`, and
then clears ``O_NONBLOCK`` for ordinary reads and writes. Symlinks to regular
files are followed, as users expect of these paths.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat

__all__ = ["NotRegularFileError", "open_nonblocking", "open_regular", "read_regular", "what_is"]


class NotRegularFileError(OSError):
    """The path names something other than a regular file (a FIFO, a device, a socket, a directory)."""

    def __init__(self, path: str | os.PathLike[str], found: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file (found {found})", os.fspath(path))
        self.found = found


def what_is(mode: int) -> str:
    """A reader's name for the kind of file ``mode`` describes."""
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str], flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """``os.open(path, flags)`` that never blocks on a FIFO and returns only a regular file's fd.

    Raises :class:`NotRegularFileError` (an ``OSError``) for anything else; other
    ``OSError`` s (``FileNotFoundError``, ``PermissionError``, ...) pass through.
    A FIFO opened for writing with no reader raises ``NotRegularFileError`` too.
    """
    try:
        fd = _open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO (or a socket) with nobody on the other end
            raise NotRegularFileError(path, "a FIFO or socket") from None
        raise
    try:
        _check_regular(fd, path)
        _set_blocking(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_nonblocking(path: str | os.PathLike[str], flags: int, mode: int = 0o600) -> int:
    """``os.open`` that never waits on a FIFO (one without a reader or writer is ``ENXIO`` for writing) or
    adopts a terminal, then reads and writes blocking as usual; any kind of file (``--output /dev/null``)."""
    fd = _open(path, flags, mode)
    try:
        _set_blocking(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open(path: str | os.PathLike[str], flags: int, mode: int) -> int:
    return os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY, mode)


def _set_blocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)


def _check_regular(fd: int, path: str | os.PathLike[str]) -> None:
    st = os.fstat(fd)  # the open file, not the name: no window to swap it
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(path, what_is(st.st_mode))


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the regular file at ``path`` (a caller seeing more than ``limit`` refuses)."""
    with os.fdopen(open_regular(path), "rb") as fh:
        return fh.read(limit + 1)
