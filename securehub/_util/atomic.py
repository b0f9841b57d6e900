"""Atomic file replacement: a reader sees the old file or the new one, never a partial write."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def replace_file(target: Path, write: Callable[[BinaryIO], object], *, mode: int | None = None) -> None:
    """Write ``target`` through ``write(fh)`` into a temp file beside it, fsync, then one rename.

    ``mode``: permission bits of the result; ``None`` keeps an existing file's
    bits and gives a new file 0644. The rename is made durable by syncing the
    directory. On any error the temp file is removed and ``target`` is untouched.
    """
    if mode is None:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o644
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
