"""The ``trusted`` strategy: classes from allowlisted, installed packages only (SPEC section 7)."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from securehub.errors import ReconstructRefused
from securehub.reconstruct.allow import is_public_qualname, refused_class_module
from securehub.reconstruct.build import NotApplicable, build_and_load
from securehub.reconstruct.paths import NotTrusted, parse_path, resolve_installed

__all__ = ["TrustedResolver", "reconstruct_trusted"]


class TrustedResolver:
    """Two allowlists, imported from stdlib/site-packages only.

    Classes: public ``nn.Module`` subclasses inside ``trusted_modules``; a class
    outside the allowlist raises :class:`NotApplicable` (the next strategy is
    tried). Functions: only the enumerated pure functions of
    :data:`~securehub.reconstruct.allow.TRUSTED_CALLABLES`, whatever
    ``trusted_modules`` says. Everything else wrong with a path (not a Module,
    a private name, a function off the list, a spoofed name, a missing
    attribute, a shadowed package) raises ``ReconstructRefused``.

    One resolver serves one rebuild (one load). A class path that passed every
    check is resolved once per resolver and reused for its other references
    (89 ``torch.nn:Conv2d`` layers: one resolution, not 89, each re-resolving
    every ``sys.path`` root -- issue 11 item 6). No repository code runs
    during a trusted rebuild, so nothing can change the import scope between
    two references of the same rebuild; the next load resolves afresh.
    """

    def __init__(self, trusted_modules: Sequence[str], tree: Path | None) -> None:
        self.trusted_modules = tuple(trusted_modules)
        self.tree = tree
        self._classes: dict[str, type[nn.Module]] = {}

    def module_class(self, path: object, where: str) -> type[nn.Module]:
        if isinstance(path, str) and path in self._classes:
            return self._classes[path]
        cls = self._module_class(path, where)
        if isinstance(path, str):
            self._classes[path] = cls
        return cls

    def _module_class(self, path: object, where: str) -> type[nn.Module]:
        parsed = parse_path(path, what=where)
        if not is_public_qualname(parsed.qualname):
            # _ConvNd, _BatchNorm: abstract bases and helpers with no stable constructor contract
            raise ReconstructRefused(
                f"{where}: class {parsed} has a private name; the trusted strategy instantiates only public "
                "nn.Module classes of reconstruct.trusted_modules"
            )
        if refused_class_module(parsed.module):
            raise ReconstructRefused(
                f"{where}: class {parsed} is a parallel/distributed wrapper whose constructor acts outside the model "
                "(collectives over your process group, GPU replicas); the trusted strategy does not build it. "
                "Return the wrapped model from the entrypoint (model.module) instead"
            )
        try:
            cls: type[nn.Module] = resolve_installed(
                path, kind="module", trusted_modules=self.trusted_modules, tree=self.tree, what=where
            )
        except NotTrusted as exc:
            raise NotApplicable(str(exc)) from None
        if issubclass(cls, LazyModuleMixin):
            # Lazy layers create their parameters at the first forward(), outside meta and the budget, with
            # UninitializedParameter placeholders no state can fill (a forged LazyLinear escaped as a RuntimeError)
            raise ReconstructRefused(
                f"{where}: {parsed} is a lazy module (parameters are created at the first call); a loaded model "
                "holds the materialised class (LazyLinear becomes Linear after its first forward), refusing"
            )
        if refused_class_module(cls.__module__):
            raise ReconstructRefused(
                f"{where}: {parsed} resolves to {cls.__module__}:{cls.__qualname__}, a parallel/distributed "
                "wrapper the trusted strategy does not build; return the wrapped model (model.module) instead"
            )
        return cls

    def function(self, path: object, where: str) -> Callable[..., Any]:
        # A function outside the allowlist is refused outright (os:system inside args), not skipped.
        fn: Callable[..., Any] = resolve_installed(
            path, kind="function", trusted_modules=self.trusted_modules, tree=self.tree, what=where
        )
        return fn

    def enum_class(self, path: object, where: str) -> type[enum.Enum]:
        # The refused modules hold no enum a model needs (red team 9: a private enum of
        # torch.nn.parallel.distributed resolved); refused before and after resolution, like classes.
        parsed = parse_path(path, what=where)
        if refused_class_module(parsed.module):
            raise ReconstructRefused(
                f"{where}: enum {parsed} belongs to a parallel/distributed wrapper module the trusted strategy "
                "takes nothing from; return the wrapped model from the entrypoint (model.module) instead"
            )
        cls: type[enum.Enum] = resolve_installed(
            path, kind="enum", trusted_modules=self.trusted_modules, tree=self.tree, what=where
        )
        if refused_class_module(cls.__module__):
            raise ReconstructRefused(
                f"{where}: enum {parsed} resolves to {cls.__module__}:{cls.__qualname__}, in a parallel/distributed "
                "wrapper module the trusted strategy takes nothing from; refusing"
            )
        return cls

    def recorded_name(self, cls: type) -> str:
        return f"{cls.__module__}:{cls.__qualname__}"


def reconstruct_trusted(
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    trusted_modules: Sequence[str],
    tree: Path | None,
) -> nn.Module:
    """Rebuild from allowlisted installed classes; raises NotApplicable / ReconstructRefused / ReconstructMismatch."""
    if not trusted_modules:
        raise NotApplicable("reconstruct.trusted_modules is empty")
    return build_and_load(config, TrustedResolver(trusted_modules, tree), state)
