"""The model the ``export`` strategy returns: ``ExportedProgram.module()`` made to behave like a model.

torch's ``ExportedProgram.module()`` returns a per-instance ``GraphModule``
subclass (``GraphModule.__new__.<locals>.GraphModuleImpl``) whose ``eval()``
and ``train()`` raise ``NotImplementedError``, whose ``training`` flag reads
``True`` although securehub exports in eval mode, whose parameters all have
``requires_grad=True`` and whose tied weights are separate parameters, and
that says nothing about the class it stands for (issue 10). Every tutorial
calls ``model.eval()`` right after loading.

:func:`adopt_exported` turns that module, in place, into an
:class:`ExportedModule`:

- ``eval()`` works and ``training`` is ``False`` everywhere: the program was
  exported in eval mode (the sandbox child calls ``module.eval()`` before
  ``torch.export``), so dropout and batch-norm statistics are already fixed in
  the graph. ``train()`` cannot switch the graph's behaviour and raises
  :class:`~securehub.errors.ReconstructRefused` saying so and what to do
  (SPEC section 2 allows exactly this);
- ``securehub_source_class`` names the class the program was exported from,
  ``"package.module:QualName"``, as the child's config recorded it: bounded,
  checked to be an identifier path, and only ever displayed -- never imported
  or resolved. ``repr()`` shows it;
- parameters the config lists as frozen keep ``requires_grad=False``; a tie
  the config records (``aliases``) between two entries that already hold the
  very same tensor view is restored as one parameter object, as in the
  original model;
- ``state_dict()`` and ``named_parameters()`` keep the original module's
  names, so the state dict of the directly built model loads into it and
  vice versa.

Nothing here runs code from the repository or from the child: the graph is the
one :mod:`securehub.reconstruct.export` admitted; only Python attributes and
flags of the module are changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Self

import torch
from torch import nn

from securehub.errors import ReconstructRefused
from securehub.reconstruct.build import apply_frozen

__all__ = ["ExportedModule", "adopt_exported"]

_MAX_CLASS_PATH_CHARS: Final = 512
_LOCALS: Final = "<locals>"
_INSTANCE_MARK: Final = "_securehub_instance_class"


class ExportedModule(torch.fx.GraphModule):
    """A model rebuilt by the ``export`` strategy (an ``ExportedProgram.module()`` that behaves like a model).

    Attributes (documented, stable):

    ``securehub_source_class``
        ``"package.module:QualName"`` of the class the program was exported
        from, as recorded in the sandbox; informational, never imported.
    ``securehub_exported_training``
        The mode the program was exported in (``False``: eval mode).

    ``eval()`` (and ``train(False)``) work; ``train(True)`` raises
    :class:`~securehub.errors.ReconstructRefused` because a program exported
    in eval mode cannot switch to training behaviour.
    """

    securehub_source_class: str
    securehub_exported_training: bool

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # torch.fx gives every GraphModule its own class (recompile() installs forward and __call__ on
        # type(self)) and finds the shared base again by the name "GraphModuleImpl"; ours are marked
        # instead, so a deepcopy gets a fresh class of its own rather than one stacked on ours (whose
        # inherited __call__ would recurse).
        base = next(t for t in cls.__mro__ if _INSTANCE_MARK not in t.__dict__)
        return object.__new__(_instance_class(base))

    def train(self, mode: bool = True) -> Self:
        """Set the mode flags; only the mode the program was exported in is possible."""
        if bool(mode) != self.securehub_exported_training:
            exported = "train" if self.securehub_exported_training else "eval"
            raise ReconstructRefused(
                f"{self.securehub_source_class} was rebuilt by the export strategy from a program exported in "
                f"{exported} mode, so train({mode}) cannot change its behaviour (dropout and batch-norm are fixed "
                f"in the exported graph); expected train({self.securehub_exported_training}) or eval(). To "
                "fine-tune, load it under a policy whose reconstruct.strategies lists trusted or source, which "
                "rebuild the model's own class"
            )
        return super().train(mode)

    def __deepcopy__(self, memo: dict[int, Any]) -> ExportedModule:
        # GraphModule.__deepcopy__ rebuilds from the graph and keeps only attributes torch knows about.
        copied: ExportedModule = super().__deepcopy__(memo)  # type: ignore[assignment] # same class family
        copied.securehub_source_class = self.securehub_source_class
        copied.securehub_exported_training = self.securehub_exported_training
        return copied

    def _get_name(self) -> str:
        return "ExportedModule"

    def extra_repr(self) -> str:
        mode = "train" if self.securehub_exported_training else "eval"
        return f"source_class={self.securehub_source_class!r}, exported_mode={mode!r}"


def adopt_exported(module: nn.Module, config: Mapping[str, Any]) -> ExportedModule:
    """Make ``ExportedProgram.module()``'s result an :class:`ExportedModule` (in place) and return it.

    ``config`` is the child's result config (``securehub-config/1``): its root
    node's ``class``, its ``frozen`` list and its ``aliases`` are used.
    Raises :class:`ReconstructRefused` when the recorded class path is not a
    bounded identifier path (a malformed or hostile config) or ``module`` is
    not a ``GraphModule``, and ``ReconstructMismatch`` when a frozen name is
    not a parameter of the module. Guarantees on return: every submodule has
    ``training == False``; the graph and its forward are untouched.
    """
    if not isinstance(module, torch.fx.GraphModule):
        raise ReconstructRefused(
            f"expected ExportedProgram.module() to return a GraphModule, found {type(module).__name__}"
        )
    source = _source_class(config)
    # ExportedProgram.module() pins train/eval stubs raising NotImplementedError on the instance.
    for stub in ("train", "eval"):
        module.__dict__.pop(stub, None)
    # A class of its own, as torch.fx gives every GraphModule; recompile() installs this graph's forward
    # on it (the same code generation ExportedProgram.module() just ran on the same admitted graph).
    module.__class__ = _instance_class(ExportedModule)
    adopted: ExportedModule = module  # type: ignore[assignment] # __class__ was just set
    adopted.recompile()
    adopted.securehub_source_class = source
    adopted.securehub_exported_training = False
    nn.Module.train(adopted, False)
    _retie_shared(adopted, config.get("aliases", {}))
    apply_frozen(adopted, config.get("frozen", []))
    return adopted


def _instance_class(base: type) -> type:
    namespace = {"__module__": __name__, "__qualname__": "ExportedModule", _INSTANCE_MARK: True}
    return type("ExportedModule", (base,), namespace)


def _source_class(config: Mapping[str, Any]) -> str:
    """The root node's ``module:qualname``, checked to be an identifier path (``<locals>`` allowed)."""
    root = config.get("root")
    text = root.get("class") if isinstance(root, Mapping) else None
    if not isinstance(text, str) or not 0 < len(text) <= _MAX_CLASS_PATH_CHARS or text.count(":") != 1:
        raise ReconstructRefused(
            f"export: expected the config's root class as 'package.module:QualName' (at most "
            f"{_MAX_CLASS_PATH_CHARS} characters), found {str(text)[:120]!r}; the sandbox child's config is "
            "malformed or hostile"
        )
    module, qualname = text.split(":")
    if not _dotted(module, locals_ok=False) or not _dotted(qualname, locals_ok=True):
        raise ReconstructRefused(
            f"export: the config's root class {text[:120]!r} is not a dotted identifier path; the sandbox "
            "child's config is malformed or hostile"
        )
    return text


def _dotted(text: str, *, locals_ok: bool) -> bool:
    # str.isidentifier() admits no spaces, punctuation, control or bidi-format characters, so the
    # name is safe to show in repr() and messages.
    return all(p.isidentifier() or (locals_ok and p == _LOCALS) for p in text.split("."))


def _retie_shared(module: nn.Module, aliases: object) -> None:
    """Make each recorded alias the very parameter (or buffer) object of its kept name.

    Only where both entries already hold the same tensor view (same storage,
    offset, shape, stride, dtype): then the program cannot tell the difference,
    so a hostile ``aliases`` map can at most leave weights untied. Restores
    what the original model had (one parameter under two names), so
    ``named_parameters()`` deduplicates it like the original and
    ``safetensors.torch.save_model`` keeps the tie.
    """
    if not isinstance(aliases, Mapping):
        raise ReconstructRefused("config aliases must be an object; the config is malformed")
    for alias, kept in aliases.items():
        if not isinstance(alias, str) or not isinstance(kept, str):
            continue
        a_owner, a_name = _owner(module, alias)
        k_owner, k_name = _owner(module, kept)
        if a_owner is None or k_owner is None:
            continue
        for table in ("_parameters", "_buffers"):
            a_table: dict[str, Any] = getattr(a_owner, table)
            k_table: dict[str, Any] = getattr(k_owner, table)
            a_value, k_value = a_table.get(a_name), k_table.get(k_name)
            if a_value is not None and k_value is not None and a_value is not k_value and _same_view(a_value, k_value):
                a_table[a_name] = k_value


def _owner(module: nn.Module, name: str) -> tuple[nn.Module | None, str]:
    prefix, _, leaf = name.rpartition(".")
    try:
        return module.get_submodule(prefix), leaf
    except AttributeError:
        return None, leaf


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.device == b.device
        and a.dtype == b.dtype
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and a.numel() > 0
    )
