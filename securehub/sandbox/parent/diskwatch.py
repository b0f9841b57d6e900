"""The parent's watch over what the child writes into its temp dir, as a whole (red team 15).

``RLIMIT_FSIZE`` (``sandbox.max_file_mb``) bounds each file the child writes,
not how many: six files just under the limit, or a million empty ones, fill
the disk the hub dir and the user's files live on, and a parent that then
cannot write its cache, lock or audit log is down too. :class:`DiskWatch`
polls the child's writable directory from a daemon thread and calls
``on_breach`` once when it holds more than ``max_bytes`` (allocated blocks,
so sparse files count for what they take) or more than ``max_entries``
files and directories, or when part of it cannot be read (a directory the
child made unreadable would hide what is inside: fail closed). Polling can
overshoot by what the child writes in one interval; the per-file limit still
holds for every file.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["MAX_ENTRIES", "POLL_S", "DiskWatch", "usage"]

#: Files and directories the child may create in its temp dir (the policy's default repo file cap).
MAX_ENTRIES = 100_000
POLL_S = 0.1


def usage(root: Path, max_bytes: int, max_entries: int = MAX_ENTRIES) -> str | None:
    """``None`` while ``root`` holds at most ``max_bytes`` and ``max_entries``; else what was exceeded."""
    total = 0
    entries = 0
    stack = [os.fspath(root)]
    try:
        while stack:
            for st, path in _entries(stack.pop(), max_entries + 1 - entries):
                entries += 1
                total += st.st_blocks * 512
                if entries > max_entries:
                    return f"more than {max_entries} files and directories"
                if total > max_bytes:
                    return f"more than {max_bytes >> 20} MiB"
                if stat.S_ISDIR(st.st_mode):
                    stack.append(path)
    except OSError as exc:
        return f"a part the parent cannot measure ({exc.strerror or exc})"
    return None


def _entries(directory: str, limit: int) -> list[tuple[os.stat_result, str]]:
    """``(lstat, path)`` of at most ``limit`` entries of ``directory``; ones removed meanwhile are skipped."""
    found: list[tuple[os.stat_result, str]] = []
    try:
        it = os.scandir(directory)
    except FileNotFoundError:
        return found
    with it:
        for entry in it:
            if len(found) >= limit:
                break
            try:
                found.append((entry.stat(follow_symlinks=False), entry.path))
            except FileNotFoundError:
                continue
    return found


class DiskWatch:
    """Poll ``root`` every :data:`POLL_S` seconds until :meth:`stop`; call ``on_breach(reason)`` at most once."""

    def __init__(self, root: Path, max_bytes: int, on_breach: Callable[[str], None]) -> None:
        self._root = root
        self._max_bytes = max_bytes
        self._on_breach = on_breach
        self._stop = threading.Event()
        self.breach: str | None = None
        self._thread = threading.Thread(target=self._run, name="securehub-diskwatch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            reason = usage(self._root, self._max_bytes)
            if reason is not None and not self._stop.is_set():
                self.breach = reason
                self._on_breach(reason)
                return

    def stop(self) -> None:
        self._stop.set()
