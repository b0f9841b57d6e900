"""Weight and spectral normalisation, re-applied by the parent with torch's own functions.

The child describes a module that ``torch.nn.utils.weight_norm``/``spectral_norm`` or
``torch.nn.utils.parametrizations.weight_norm``/``spectral_norm`` was applied to by its own class plus a
``norms`` list (:mod:`securehub.sandbox.child.record_norms`). The trusted strategy rebuilds the module from its
constructor call and then calls the same function itself. Guarantees:

- only these four functions are ever called, chosen by a fixed table from the recorded ``kind``; the
  child names no callable;
- every argument is checked before the call: ``name`` is a parameter the rebuilt module holds (each name
  once per module), ``dim`` an integer inside that parameter's dimensions, ``n_power_iterations`` an
  integer in ``1..``:data:`MAX_POWER_ITERATIONS`, ``eps`` a finite float in ``(0, 1]``; anything else,
  or a key the kind does not take, is ``ReconstructRefused``;
- the functions run on the ``meta`` device (no RNG is drawn, no memory allocated); the state assigned
  afterwards provides every tensor (``weight_g``/``weight_v``, ``weight_orig``/``weight_u``/``weight_v``,
  ``parametrizations.weight.original0``/``original1``, ``parametrizations.weight.0._u``/``_v``);
- after the state is assigned, the hook-based functions' derived ``weight`` attribute is recomputed from
  it (without a power iteration), as torch's own forward pre-hook would do, so no tensor is left on
  ``meta``; a parametrization's modules follow their module's training flag.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from securehub.errors import ReconstructMismatch, ReconstructRefused

__all__ = ["MAX_POWER_ITERATIONS", "Norm", "apply_norms", "norm_modes", "parse_norms", "refresh_norm_weights"]

MAX_POWER_ITERATIONS = 64

_WEIGHT = ("kind", "name", "dim")
_SPECTRAL = ("kind", "name", "dim", "n_power_iterations", "eps")

#: recorded kind -> (torch function, the keys its record has, lowest allowed dim)
_KINDS: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...], int]] = {
    # dim -1 is weight norm's "over the whole tensor" (dim=None), not "the last dimension"
    "weight_norm": (torch.nn.utils.weight_norm, _WEIGHT, -1),
    "spectral_norm": (torch.nn.utils.spectral_norm, _SPECTRAL, 0),
    "parametrizations.weight_norm": (parametrizations.weight_norm, _WEIGHT, -1),
    "parametrizations.spectral_norm": (parametrizations.spectral_norm, _SPECTRAL, 0),
}


@dataclass(frozen=True)
class Norm:
    """One recorded norm, its values type-checked (ranges against the module are checked on apply)."""

    kind: str
    name: str
    dim: int
    n_power_iterations: int = 1
    eps: float = 1e-12

    def arguments(self) -> dict[str, Any]:
        if _KINDS[self.kind][1] is _WEIGHT:
            return {"name": self.name, "dim": self.dim}
        return {"name": self.name, "dim": self.dim, "n_power_iterations": self.n_power_iterations, "eps": self.eps}


def _is_int(value: object) -> bool:
    return type(value) is int


def _parse_one(raw: object, where: str) -> Norm:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if not isinstance(raw, Mapping) or kind not in _KINDS:
        raise ReconstructRefused(
            f"{where}: a recorded norm must be one of {sorted(_KINDS)}, found {str(kind)[:80]!r}; only torch's "
            "weight_norm and spectral_norm are re-applied"
        )
    keys = _KINDS[str(kind)][1]
    if set(raw) != set(keys):
        raise ReconstructRefused(f"{where}: norm {kind} must have exactly the keys {list(keys)}, found {sorted(raw)}")
    name, dim = raw["name"], raw["dim"]
    if not (isinstance(name, str) and name.isidentifier() and not name.startswith("_")) or not _is_int(dim):
        raise ReconstructRefused(f"{where}: norm {kind} needs a public parameter name and an integer dim")
    if keys is _WEIGHT:
        return Norm(str(kind), name, dim)
    iterations, eps = raw["n_power_iterations"], raw["eps"]
    if not (_is_int(iterations) and 1 <= iterations <= MAX_POWER_ITERATIONS):
        raise ReconstructRefused(
            f"{where}: norm {kind} n_power_iterations must be an integer from 1 to {MAX_POWER_ITERATIONS}"
        )
    if not (type(eps) in (int, float) and math.isfinite(eps) and 0.0 < eps <= 1.0):
        raise ReconstructRefused(f"{where}: norm {kind} eps must be a finite number in (0, 1]")
    return Norm(str(kind), name, dim, iterations, float(eps))


def parse_norms(node: Mapping[str, Any], where: str) -> list[Norm]:
    """The node's recorded norms (``[]`` when none); malformed or unknown ones are refused."""
    raw = node.get("norms")
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ReconstructRefused(f"{where}: norms must be a non-empty list; the config is malformed")
    norms = [_parse_one(item, where) for item in raw]
    names = [n.name for n in norms]
    if len(set(names)) != len(names):
        raise ReconstructRefused(f"{where}: norms name a parameter twice ({names}); the config is malformed")
    return norms


def _check_against(module: nn.Module, norm: Norm, where: str) -> None:
    tensor = module._parameters.get(norm.name)
    if tensor is None:
        raise ReconstructMismatch(
            f"{where}: the config records {norm.kind} on {norm.name!r}, which is not a parameter of the rebuilt "
            f"{type(module).__qualname__}; the config is inconsistent with the module tree"
        )
    lowest = _KINDS[norm.kind][2]
    if not lowest <= norm.dim < max(tensor.dim(), 1):
        raise ReconstructRefused(
            f"{where}: norm {norm.kind} on {norm.name!r} has dim {norm.dim}, outside the parameter's "
            f"{tensor.dim()} dimensions"
        )


def apply_norms(module: nn.Module, norms: list[Norm], where: str) -> None:
    """Apply ``norms`` to ``module`` (built on ``meta``) with torch's own functions, in recorded order."""
    for norm in norms:
        _check_against(module, norm, where)
        fn = _KINDS[norm.kind][0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
                fn(module, **norm.arguments())
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ReconstructMismatch(
                f"{where}: applying {norm.kind} to {norm.name!r} failed: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None


def refresh_norm_weights(module: nn.Module) -> None:
    """Recompute the ``weight`` attribute the hook-based functions derive, from the assigned state."""
    with torch.no_grad():
        for hook in module._forward_pre_hooks.values():
            if type(hook) is WeightNorm:
                setattr(module, hook.name, hook.compute_weight(module))
            elif type(hook) is SpectralNorm:
                setattr(module, hook.name, hook.compute_weight(module, do_power_iteration=False))


def norm_modes(module: nn.Module) -> None:
    """A parametrization's own modules (spectral norm's power iteration) follow their module's mode."""
    table = module._modules.get("parametrizations")
    if parametrize.is_parametrized(module) and table is not None:
        table.train(module.training)
