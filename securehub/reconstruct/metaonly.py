"""Construction on ``meta`` whatever device the recorded arguments name (December 2026 red team 3).

``torch.device("meta")`` only fills in a device where the caller gave none: a forged config passing
the plain string ``device="cpu"`` (or ``"cuda"``, or positionally: ``Linear(in, out, True, "cpu")``)
made the constructor allocate and initialise real weights in the parent -- ``Linear(30000, 30000,
device="cpu")`` took 3.6 GB and 14 s before the state was found not to fit; ``10**5`` exhausts the
machine. Recorded ``$device`` values were already replaced by ``meta``, plain strings were not.

Inside :func:`meta_only`, every torch function call that names a device (a ``device`` keyword) or
is one of torch's tensor factories gets ``device=meta``, and a call that still returns a tensor
outside ``meta`` is ``ReconstructRefused`` (a constructor that makes real tensors some other way).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils._device import DeviceContext, _device_constructors
from torch.utils._pytree import tree_leaves

from securehub.errors import ReconstructRefused

__all__ = ["meta_only"]

_META = torch.device("meta")


class _MetaOnly(DeviceContext):
    """torch's device mode, but the recorded device is never honoured (``device=`` is overridden)."""

    def __init__(self, where: str) -> None:
        super().__init__(_META)
        self.where = where

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if "device" in kwargs or func in _device_constructors():
            kwargs["device"] = _META
        out = func(*args, **kwargs)
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor) and leaf.device.type != "meta":
                raise ReconstructRefused(
                    f"{self.where}: the constructor made a tensor on {leaf.device} with "
                    f"{getattr(func, '__name__', func)}; a rebuild constructs on the meta device only and takes "
                    "every value from the state (a forged device argument?), refusing"
                )
        return out


@contextmanager
def meta_only(where: str) -> Iterator[None]:
    """Construct on ``meta`` only: devices named by the arguments are replaced, real tensors refused."""
    with _MetaOnly(where):
        yield
