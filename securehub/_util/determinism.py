"""One RNG seeding, shared by the sandbox child and the ``source`` strategy's parent-side call.

The ``source`` strategy re-runs the entrypoint in the parent and requires the
result to equal, bit for bit, what the child produced. A randomly initialised
model can only do that if both runs start from the same RNG state, so both
call :func:`seed_all` at the same two points: before ``hubconf.py`` is
imported and before the entrypoint is called. The parent wraps its call in
:func:`preserved_rng` so the user's own RNG state is unchanged afterwards.

Both also run repo code with torch's intra-op thread count fixed at
:data:`THREADS` (:func:`fix_threads`, :func:`fixed_threads`). A seeded RNG is
not enough for a *portable* pin: a parallel reduction sums one partial per
thread, and LAPACK's QR (``nn.init.orthogonal_``) blocks by thread count, so
the same init gave other bits on a 1-core CI runner than on a laptop (or with
another ``OMP_NUM_THREADS``), and every pinned load there was
``output-mismatch`` (red team 13). One thread is the only count that gives
the same blocking on every machine (MKL may use fewer threads than asked on
a smaller one).
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["SEED", "THREADS", "fix_threads", "fixed_threads", "preserved_rng", "seed_all"]

#: The seed every reachable RNG gets (Python's ``random``, torch's CPU generator, numpy's global one).
SEED = 0

#: torch's intra-op thread count while repo code runs (module docstring): the same on every machine.
THREADS = 1


def _numpy_random() -> Any | None:
    """numpy's global RNG module, importing numpy if installed (a repo may import it later and draw)."""
    if "numpy" not in sys.modules and importlib.util.find_spec("numpy") is None:
        return None
    import numpy.random  # noqa: PLC0415 - lazy: numpy is optional

    return numpy.random


def seed_all() -> None:
    """Seed Python's ``random``, torch's default CPU generator and numpy's global RNG with :data:`SEED`."""
    random.seed(SEED)
    torch.manual_seed(SEED)
    np_random = _numpy_random()
    if np_random is not None:
        np_random.seed(SEED)


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore ``random``, torch's CPU RNG and numpy's global RNG to their state on entry, on any exit."""
    np_random = _numpy_random()
    py_state = random.getstate()
    np_state = np_random.get_state() if np_random is not None else None
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(py_state)
            if np_random is not None:
                np_random.set_state(np_state)


def fix_threads() -> None:
    """Set torch's intra-op thread count to :data:`THREADS` (the sandbox child: for the rest of its life)."""
    if torch.get_num_threads() != THREADS:
        torch.set_num_threads(THREADS)


@contextmanager
def fixed_threads() -> Iterator[None]:
    """Run the block with :func:`fix_threads`, then give torch back the thread count it had (the parent)."""
    saved = torch.get_num_threads()
    fix_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != saved:
            torch.set_num_threads(saved)
