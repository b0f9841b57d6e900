"""Deterministic example-input tensors from shapes and dtypes (parent and sandbox child alike).

The parent fills hub.lock's recorded shapes with these values, and the child's
``--example-input auto`` search checks its candidates with the same values, so
inputs found in the child and later replayed from hub.lock are the same tensors.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from collections.abc import Sequence

import torch

from securehub.config.lockfile import InputSpec, example_input_size_problem, example_inputs_total_problem

__all__ = ["check_example_tensors", "example_inputs_digest", "example_tensors", "format_example_inputs"]


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


def example_inputs_digest(inputs: Sequence[torch.Tensor] | None) -> str | None:
    """sha256 over dtype, shape and bytes of each example input tensor (``None`` when there are none)."""
    if inputs is None:
        return None
    h = hashlib.sha256()
    for t in inputs:
        c = t.detach().cpu().contiguous()
        header = json.dumps({"dtype": str(c.dtype), "shape": list(c.shape)}, sort_keys=True, separators=(",", ":"))
        h.update(header.encode("utf-8") + b"\0")
        if c.numel():
            h.update(ctypes.string_at(c.data_ptr(), c.numel() * c.element_size()))
    return h.hexdigest()


def check_example_tensors(example_inputs: Sequence[torch.Tensor]) -> None:
    """``ValueError`` unless ``example_inputs`` are tensors within the bounds hub.lock shapes have.

    The same limits as :data:`securehub.config.lockfile.MAX_EXAMPLE_INPUT_ELEMENTS` and friends (they are
    copied into the sandbox child), checked before anything else happens.
    """
    if isinstance(example_inputs, torch.Tensor) or not isinstance(example_inputs, (tuple, list)):
        raise TypeError(f"example_inputs must be a tuple of tensors, got {type(example_inputs).__name__}")
    sizes: list[int] = []
    for i, tensor in enumerate(example_inputs):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"example_inputs[{i}] must be a torch.Tensor, got {type(tensor).__name__}")
        problem = example_input_size_problem(tuple(tensor.shape), tensor.element_size())
        if problem:
            raise ValueError(f"example_inputs[{i}] {problem}; pass smaller example inputs")
        sizes.append(tensor.numel() * tensor.element_size())
    total = example_inputs_total_problem(sizes)
    if total:
        raise ValueError(f"example_inputs: {total}; pass fewer or smaller example inputs")


def format_example_inputs(specs: Sequence[InputSpec]) -> str:
    """``--example-input`` arguments for ``specs``: ``--example-input 1x3x224x224:float32 ...``."""
    return " ".join(f"--example-input {'x'.join(str(d) for d in s.shape)}:{s.dtype}" for s in specs)
