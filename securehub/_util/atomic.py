"""Atomic file replacement: a reader sees the old file or the new one, never a partial write."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from securehub._util.regular import open_nonblocking


def replace_file(target: Path, write: Callable[[BinaryIO], object], *, mode: int | None = None) -> None:
    """Write ``target`` through ``write(fh)`` into a temp file beside it, fsync, then one rename.

    ``mode``: permission bits of the result; ``None`` keeps an existing file's
    bits and gives a new file 0644. The rename is made durable by syncing the
    directory. On any error the temp file is removed and ``target`` is untouched.
    """
    existing = _stat(target)
    if existing is not None and _special(existing):
        # A device, FIFO or socket (``--output /dev/null``, ``/dev/stdout``): write into it. Replacing it
        # renamed a regular file over the node -- as root, over the system's /dev/null -- and a full device
        # (/dev/full) went unnoticed.
        _write_into(target, write)
        return
    if mode is None:
        mode = stat.S_IMODE(existing.st_mode) if existing is not None else 0o644
    directory = target.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fsync(fh.fileno())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_bytes(target: Path, data: bytes, *, mode: int | None = None) -> None:
    """:func:`replace_file` with ``data`` as the content."""
    replace_file(target, lambda fh: fh.write(data), mode=mode)


def is_special_file(target: Path) -> bool:
    """Whether ``target`` exists and is a device, FIFO or socket (after symlinks): written into, never replaced."""
    existing = _stat(target)
    return existing is not None and _special(existing)


def _stat(target: Path) -> os.stat_result | None:
    try:
        return target.stat()  # follows a symlink: /dev/stdout names the process's fd 1
    except (FileNotFoundError, NotADirectoryError):
        return None


def _special(st: os.stat_result) -> bool:
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


def _write_into(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write into an existing non-regular file; a FIFO without a reader is ``ENXIO`` rather than a hang,
    and a write error (``ENOSPC`` from /dev/full) is raised, never dropped."""
    fd = open_nonblocking(target, os.O_WRONLY)
    try:
        fh = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        write(fh)
        fh.flush()
