"""Deterministic example-input tensors from shapes and dtypes (parent and sandbox child alike).

The parent fills hub.lock's recorded shapes with these values, and the child's
``--example-input auto`` search checks its candidates with the same values, so
inputs found in the child and later replayed from hub.lock are the same tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from securehub.config.lockfile import InputSpec

__all__ = ["example_tensors"]


def example_tensors(specs: Sequence[InputSpec]) -> tuple[torch.Tensor, ...]:
    """Deterministic tensors of the given shapes and dtypes (seeded; the same on every run).

    Floating and complex dtypes: uniform in [0, 1); bool: all False; integer
    dtypes: 0 or 1, so token ids are in range for any vocabulary of at least 2.
    The sizes are the caller's to bound (:class:`~securehub.config.lockfile.InputSpec` does).
    """
    gen = torch.Generator().manual_seed(0)
    out: list[torch.Tensor] = []
    for spec in specs:
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point or dtype.is_complex:
            out.append(torch.rand(spec.shape, generator=gen, dtype=dtype))
        elif dtype == torch.bool:
            out.append(torch.zeros(spec.shape, dtype=dtype))
        else:
            out.append(torch.randint(0, 2, spec.shape, generator=gen, dtype=dtype))
    return tuple(out)
