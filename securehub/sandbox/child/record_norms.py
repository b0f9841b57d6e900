"""Weight and spectral normalisation applied to a module, described as data (runs in the child).

``torch.nn.utils.weight_norm``/``spectral_norm`` (hook based, ``weight_g``/``weight_v``,
``weight_orig``/``weight_u``/``weight_v``) and ``torch.nn.utils.parametrizations.weight_norm``/
``spectral_norm`` change a module after its constructor returned: they register private torch hooks
(or swap the class for a generated ``Parametrized<Class>`` holding a ``parametrizations`` child) and
replace the parameter. The recorder would list that as private state it may not replay. When every such
change of a module is one of these four functions with torch's own hooks and nothing else, the module is
described instead by its own class and a ``norms`` list::

    NORM = {"kind": "weight_norm" | "spectral_norm"
                    | "parametrizations.weight_norm" | "parametrizations.spectral_norm",
            "name": "weight", "dim": int | null,
            "n_power_iterations": int, "eps": float}      # the last two for the spectral kinds

and the parent applies the same torch function itself (:mod:`securehub.reconstruct.norms`). Anything
else (a custom parametrization, two parametrizations stacked on one tensor, an extra hook) is not
recognised and stays refused by name, as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.nn.utils import parametrizations, parametrize
from torch.nn.utils.spectral_norm import SpectralNorm, SpectralNormLoadStateDictPreHook, SpectralNormStateDictHook
from torch.nn.utils.weight_norm import WeightNorm

__all__ = ["HOOK_DICTS", "Norms", "explains", "recognised_norms"]

#: The private hook tables these functions write to.
HOOK_DICTS = ("_forward_pre_hooks", "_state_dict_hooks", "_load_state_dict_pre_hooks")

_SPECTRAL_HOOKS = (SpectralNormStateDictHook, SpectralNormLoadStateDictPreHook)
_COMPAT_HOOK = "weight_norm.<locals>._weight_norm_compat_hook"


@dataclass(frozen=True)
class Norms:
    """What the recorder describes for one module: the norms, and what they explain."""

    entries: list[dict[str, Any]]
    base_class: type[nn.Module]  # the class before parametrize swapped it
    hooks: frozenset[int] = field(default_factory=frozenset)  # id() of every hook object they registered
    attrs: frozenset[str] = frozenset()  # plain tensor attributes they set (hook-based: ``weight``)
    parametrized: bool = False  # the ``parametrizations`` child is theirs

    def tensor_names(self) -> frozenset[str]:
        """Parameter/buffer names these functions removed (``weight``) or registered (``weight_g``...)."""
        made = {"weight_norm": ("_g", "_v"), "spectral_norm": ("_orig", "_u", "_v")}
        return frozenset(
            str(e["name"]) + suffix for e in self.entries for suffix in ("", *made.get(str(e["kind"]), ()))
        )


def _unwrap(hook: Any) -> Any:
    return getattr(hook, "hook", hook)  # torch wraps load-state-dict pre-hooks in _WrappedHook


def _is_compat_hook(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    return getattr(fn, "__qualname__", None) == _COMPAT_HOOK and getattr(code, "co_filename", None) == inspect.getfile(
        parametrizations
    )


def _hook_norms(module: nn.Module) -> tuple[list[dict[str, Any]], set[int], set[str]]:
    entries: list[dict[str, Any]] = []
    hooks: set[int] = set()
    for hook in module._forward_pre_hooks.values():
        if type(hook) is WeightNorm:
            entries.append({"kind": "weight_norm", "name": hook.name, "dim": hook.dim})
        elif type(hook) is SpectralNorm:
            entries.append(
                {"kind": "spectral_norm", "name": hook.name, "dim": hook.dim,
                 "n_power_iterations": hook.n_power_iterations, "eps": hook.eps}
            )  # fmt: skip
        else:
            continue
        hooks.add(id(hook))
    norm_fns = {id(h) for h in module._forward_pre_hooks.values() if type(h) is SpectralNorm}
    for table in (module._state_dict_hooks, module._load_state_dict_pre_hooks):
        for hook in table.values():
            inner = _unwrap(hook)
            if type(inner) in _SPECTRAL_HOOKS and id(inner.fn) in norm_fns:
                hooks.add(id(hook))
    return entries, hooks, {str(e["name"]) for e in entries}


def _parametrization_norms(module: nn.Module) -> tuple[list[dict[str, Any]], set[int]] | None:
    """The parametrizations as norms, or None when one of them is anything else."""
    entries: list[dict[str, Any]] = []
    table = module.parametrizations
    assert isinstance(table, nn.ModuleDict)  # noqa: S101 - is_parametrized() checked it (mypy narrowing)
    for name, plist in table.items():
        if not isinstance(plist, parametrize.ParametrizationList) or len(plist) != 1:
            return None
        p = plist[0]
        if type(p) is parametrizations._WeightNorm:
            entries.append({"kind": "parametrizations.weight_norm", "name": name, "dim": p.dim})
        elif type(p) is parametrizations._SpectralNorm:
            entries.append(
                {"kind": "parametrizations.spectral_norm", "name": name, "dim": p.dim,
                 "n_power_iterations": p.n_power_iterations, "eps": p.eps}
            )  # fmt: skip
        else:
            return None
    weight_normed = any(e["kind"] == "parametrizations.weight_norm" for e in entries)
    hooks = {id(h) for h in module._load_state_dict_pre_hooks.values() if weight_normed and _is_compat_hook(_unwrap(h))}
    return entries, hooks


def recognised_norms(module: nn.Module) -> Norms | None:
    """The norms applied to ``module`` by the four torch functions; None when there are none or
    when the module was parametrized with anything else (then nothing is explained away)."""
    entries, hooks, attrs = _hook_norms(module)
    base: type[nn.Module] = type(module)
    parametrized = parametrize.is_parametrized(module)
    if parametrized:
        found = _parametrization_norms(module)
        if found is None:
            return None
        entries += found[0]
        hooks |= found[1]
        base = type(module).__bases__[0]
    if not entries:
        return None
    return Norms(entries, base, frozenset(hooks), frozenset(attrs), parametrized)


def explains(norms: Norms | None, before: Iterable[tuple[Any, Any]], after: Iterable[tuple[Any, Any]]) -> bool:
    """A hook table changed only by ``norms``: nothing removed, and every added hook is one of theirs."""
    if norms is None:
        return False
    old = {k: id(v) for k, v in before}
    new = dict(after)
    if any(k not in new or id(new[k]) != v for k, v in old.items()):
        return False
    return all(id(v) in norms.hooks for k, v in new.items() if k not in old)
