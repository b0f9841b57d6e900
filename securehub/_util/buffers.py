"""Scatter/gather I/O helpers: a list of buffers, filled or written a part at a time."""

from __future__ import annotations

import os

__all__ = ["IOV_MAX", "advance", "write_all"]

#: Buffers per ``readv``/``writev``/``recvmsg_into`` call (Linux IOV_MAX is 1024).
IOV_MAX = 512


def advance(views: list[memoryview], n: int) -> list[memoryview]:
    """``views`` minus their first ``n`` bytes (a short read or write covered only part of them)."""
    out = list(views)
    while n and out:
        first = out[0]
        if n >= len(first):
            n -= len(first)
            out.pop(0)
        else:
            out[0] = first[n:]
            n = 0
    return out


def write_all(fd: int, views: list[memoryview]) -> None:
    """Write every byte of ``views``, in order, to ``fd`` (``writev``; short writes continued)."""
    todo = [v for v in views if len(v)]
    while todo:
        n = os.writev(fd, todo[:IOV_MAX])
        if n <= 0:
            raise OSError(f"writev wrote {n} bytes")
        todo = advance(todo, n)
