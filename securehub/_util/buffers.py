"""Scatter/gather I/O: a list of buffers, filled or written a part at a time."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

__all__ = ["IOV_MAX", "transfer_all", "write_all"]

#: Buffers per ``readv``/``writev``/``recvmsg_into`` call (Linux IOV_MAX is 1024).
IOV_MAX = 512


def transfer_all(op: Callable[[list[memoryview]], int], views: list[memoryview]) -> bool:
    """Call ``op`` (a scatter read or gather write returning a byte count) until every byte of ``views`` is
    transferred, in order, at most :data:`IOV_MAX` buffers at a time. ``False`` when ``op`` returns 0 or less
    first (end of file or stream); short transfers are continued."""
    todo = [v for v in views if len(v)]
    while todo:
        n = op(todo[:IOV_MAX])
        if n <= 0:
            return False
        todo = _advance(todo, n)
    return True


def write_all(fd: int, views: list[memoryview]) -> None:
    """Write every byte of ``views``, in order, to ``fd`` (``writev``)."""
    if not transfer_all(partial(os.writev, fd), views):
        raise OSError(f"writev to fd {fd} wrote nothing")


def _advance(views: list[memoryview], n: int) -> list[memoryview]:
    """``views`` minus their first ``n`` bytes (a short transfer covered only part of them)."""
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
