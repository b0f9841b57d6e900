"""Pause Python's cyclic garbage collector around securehub's own allocation bursts.

Importing securehub's modules and running a load allocate many small objects,
which trigger full (generation 2) collections; with torch imported, each one
walks every object torch created (~0.05-0.1 s here, several per load: 40-60% of
``import securehub`` alone, measured). Reference counting still frees
everything that is not in a cycle; cycles made meanwhile are collected once the
collector runs again. Nested and concurrent pauses are counted: the collector
is switched back on (only if it was on) when the last one ends. Nothing here
is a security control.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


class _Pauses:
    """How many pauses are running, and whether the collector was on before the first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.was_enabled = False


_PAUSES = _Pauses()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off; restore its previous state after the outermost pause."""
    with _PAUSES.lock:
        if _PAUSES.depth == 0:
            _PAUSES.was_enabled = gc.isenabled()
            gc.disable()
        _PAUSES.depth += 1
    try:
        yield
    finally:
        with _PAUSES.lock:
            _PAUSES.depth -= 1
            if _PAUSES.depth == 0 and _PAUSES.was_enabled:
                gc.enable()
