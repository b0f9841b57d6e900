"""A hard cap on what one rebuild may construct, counted as it happens (issue 8 finding 4b).

A forged config can keep its recorded tree small and still ask an installed
constructor for a huge one: ``TransformerEncoder(layer, num_layers=40000)``
deep-copies the layer 40000 times, ``LSTM(num_layers=40000)`` registers
160000 parameters -- minutes of CPU in the parent before the rebuilt tree is
ever compared with the recorded one. Checking arguments class by class cannot
know every constructor, so the builder runs inside :func:`construction_budget`,
which counts, on the calling thread only:

- modules: every ``nn.Module.__init__`` (fresh construction) and
  ``nn.Module.__setstate__`` (``copy.deepcopy`` clones, which skip ``__init__``);
- tensors: every ``register_parameter``/``register_buffer``.

The first call over the budget raises ``ReconstructRefused`` from inside the
constructor, so the work stops there; the budget stays exhausted (any later
counted call raises again) and :meth:`Budget.check` lets the caller fail
closed even if a constructor swallowed the exception.

While a budget is active anywhere in the process, those four ``nn.Module``
methods are thin wrappers that only count when the *current thread* holds a
budget; the originals are put back when the last budget ends.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn

from securehub.errors import ReconstructRefused

__all__ = ["Budget", "construction_budget"]

_MODULE_METHODS = ("__init__", "__setstate__")
_TENSOR_METHODS = ("register_parameter", "register_buffer")


@dataclass
class Budget:
    """How many modules and tensors the current rebuild may still create."""

    modules: int
    tensors: int
    where: str
    modules_used: int = 0
    tensors_used: int = 0
    exhausted: str | None = None

    def charge(self, kind: str) -> None:
        """Count one construction of ``kind`` (``"module"``/``"tensor"``); raise once over the cap."""
        if self.exhausted is None:
            if kind == "module":
                self.modules_used += 1
                if self.modules_used > self.modules:
                    self.exhausted = f"more than {self.modules} module constructions"
            else:
                self.tensors_used += 1
                if self.tensors_used > self.tensors:
                    self.exhausted = f"more than {self.tensors} parameter/buffer registrations"
        self.check()

    def check(self) -> None:
        """Raise ``ReconstructRefused`` if the budget was ever exceeded."""
        if self.exhausted is not None:
            raise ReconstructRefused(
                f"{self.where}: rebuilding would take {self.exhausted}, but the recorded tree accounts for "
                f"at most {self.modules} modules and {self.tensors} tensors; the config's arguments ask the "
                "constructors for more than the child recorded (a forged config); refusing before building it"
            )


_local = threading.local()
_lock = threading.Lock()
_users = 0
_originals: dict[str, Any] = {}
_wrappers: dict[str, Any] = {}


def _current() -> Budget | None:
    budget: Budget | None = getattr(_local, "budget", None)
    return budget


def _counting(orig: Callable[..., Any], kind: str) -> Callable[..., Any]:
    @functools.wraps(orig)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        budget = _current()
        if budget is not None:
            budget.charge(kind)
        return orig(self, *args, **kwargs)

    wrapper._securehub_budget_orig = orig  # type: ignore[attr-defined]
    return wrapper


def _unwrapped(method: Any) -> Any:
    """The original method under any (inert) counting wrappers a third party left installed."""
    while hasattr(method, "_securehub_budget_orig"):
        method = method._securehub_budget_orig
    return method


def _install() -> None:
    global _users  # noqa: PLW0603 - process-wide refcount of active budgets
    with _lock:
        if _users == 0:
            for name in (*_MODULE_METHODS, *_TENSOR_METHODS):
                orig = _unwrapped(nn.Module.__dict__[name])
                _originals[name] = orig
                _wrappers[name] = _counting(orig, "module" if name in _MODULE_METHODS else "tensor")
                type.__setattr__(nn.Module, name, _wrappers[name])
        _users += 1


def _uninstall() -> None:
    global _users  # noqa: PLW0603 - process-wide refcount of active budgets
    with _lock:
        _users -= 1
        if _users == 0:
            for name, orig in _originals.items():
                # Someone who wrapped ours since keeps our (inert) wrapper underneath: leave theirs.
                if nn.Module.__dict__.get(name) is _wrappers[name]:
                    type.__setattr__(nn.Module, name, orig)
            _originals.clear()
            _wrappers.clear()


@contextmanager
def construction_budget(*, modules: int, tensors: int, where: str) -> Iterator[Budget]:
    """Count module constructions and tensor registrations on this thread inside the block.

    Raises ``ReconstructRefused`` (from inside the constructor doing it) on the
    first construction over ``modules`` or registration over ``tensors``.
    """
    budget = Budget(modules=modules, tensors=tensors, where=where)
    _install()
    previous = _current()
    _local.budget = budget
    try:
        yield budget
    finally:
        _local.budget = previous
        _uninstall()
