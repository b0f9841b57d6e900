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
  checked to be an identifier path (after one ``<torch_package_N>.`` prefix,
  torch.package's name for the modules an archive ships), and only ever
  displayed -- never imported or resolved. ``repr()`` shows it;
- parameters the config lists as frozen keep ``requires_grad=False``; a tie
  the config records (``aliases``) between two entries that already hold the
  very same tensor view is restored as one parameter object, as in the
  original model;
- ``state_dict()`` and ``named_parameters()`` keep the original module's
  names, so the state dict of the directly built model loads into it and
  vice versa;
- plain data attributes the entrypoint set after construction
  (``model.names = [...]``, ``model.cfg = {...}``; the config's ``replay``
  ``attrs``) are carried onto the module at the same path under the same
  rules as the ``trusted`` strategy's replay (JSON values, at most
  :data:`~securehub.reconstruct.build.MAX_REPLAY_ATTR_BYTES` each, public
  non-dunder names) and one more: a name may not shadow anything the rebuilt
  module already has -- a method, property or attribute of its class
  (``forward``, ``eval``, ``graph``, ``code``) or of the instance
  (``meta``, ``securehub_source_class``, a parameter, buffer or child). An
  attribute that cannot be carried -- refused by these rules, on a submodule
  the program does not have, or recorded by the child as set without a
  plain-data form -- makes the whole rebuild ``reconstruct-refused``
  (SPEC section 7: never dropped silently).

Nothing here runs code from the repository or from the child: the graph is the
one :mod:`securehub.reconstruct.export` admitted; only Python attributes and
flags of the module are changed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Final, Self

import torch
from torch import nn

from securehub.errors import ReconstructRefused
from securehub.reconstruct.build import (
    apply_frozen,
    check_replay_attr,
    decode_plain_data,
    iter_nodes,
    replay_parts,
)

__all__ = ["ExportedModule", "adopt_exported", "describe_shapes", "input_shapes"]

_MAX_CLASS_PATH_CHARS: Final = 512
_LOCALS: Final = "<locals>"
_INSTANCE_MARK: Final = "_securehub_instance_class"
#: Instance attribute listing the root's carried data attributes, so a deepcopy keeps them.
_CARRIED: Final = "_securehub_carried_attrs"


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

    def __getattr__(self, name: str) -> Any:
        # nn.Module.__getattr__ finds parameters, buffers and submodules; anything else of the original
        # class (methods such as forward_features, attributes set in __init__) is not in the program.
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("__") or "securehub_source_class" not in self.__dict__:
                raise
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}: this model stands for "
                f"{self.__dict__['securehub_source_class']}, rebuilt by securehub's export strategy, which keeps "
                "the exported forward, the parameters and buffers (and the submodules holding them) and data "
                "attributes set after construction; not the class's other methods, attributes or parameter-free "
                "submodules. To use them, load it under a policy whose reconstruct.strategies lists trusted or "
                "source, which rebuild the model's own class"
            ) from None

    def __deepcopy__(self, memo: dict[int, Any]) -> ExportedModule:
        # GraphModule.__deepcopy__ rebuilds from the graph and keeps only attributes torch knows about.
        copied: ExportedModule = super().__deepcopy__(memo)  # type: ignore[assignment] # same class family
        copied.securehub_source_class = self.securehub_source_class
        copied.securehub_exported_training = self.securehub_exported_training
        carried: tuple[str, ...] = self.__dict__.get(_CARRIED, ())
        for name in carried:  # submodules' attributes travel with their __dict__; the root's are rebuilt
            object.__setattr__(copied, name, copy.deepcopy(self.__dict__[name], memo))
        object.__setattr__(copied, _CARRIED, carried)
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
    not a parameter of the module, and ``ReconstructRefused`` when a data attribute
    set after construction cannot be carried (see the module docstring).
    Guarantees on return: every submodule has ``training == False``; the
    graph and its forward are untouched; every recorded post-construction
    data attribute is set, with its decoded value, at its recorded path.
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
    _explain_input_checks(adopted)
    _retie_shared(adopted, config.get("aliases", {}))
    apply_frozen(adopted, config.get("frozen", []))
    _carry_attributes(adopted, config["root"])
    return adopted


#: torch's forward pre-hook that checks inputs against the exported shapes (torch/export/_unlift.py).
_INPUT_CHECK_HOOK: Final = "_check_input_constraints_pre_hook"


def input_shapes(module: torch.fx.GraphModule) -> tuple[tuple[int | None, ...], ...]:
    """The shape of each input of the (unlifted) program, in order: a fixed size, or None where it is symbolic.

    Read from the admitted graph's placeholders (torch's deserialiser attaches
    a fake tensor to each); a placeholder without a tensor has shape ``()``.
    """
    shapes: list[tuple[int | None, ...]] = []
    for node in module.graph.nodes:
        if node.op != "placeholder":
            continue
        val = node.meta.get("val")
        sizes = val.shape if isinstance(val, torch.Tensor) else ()
        shapes.append(tuple(_fixed_size(d) for d in sizes))
    return tuple(shapes)


def _fixed_size(size: Any) -> int | None:
    if isinstance(size, int):
        return size
    expr = size.node.expr
    return int(expr) if expr.is_number else None


def describe_shapes(shapes: tuple[tuple[int | None, ...], ...]) -> str:
    """``input 0 (*, 3, *, *)``, ...: ``*`` where the program takes any size (within torch's ranges)."""
    parts = [f"input {i} ({', '.join('*' if d is None else str(d) for d in shape)})" for i, shape in enumerate(shapes)]
    return ", ".join(parts) if parts else "no tensor inputs"


def _fixed_dims(shapes: tuple[tuple[int | None, ...], ...]) -> str:
    """``input 0 dim 1 = 3, input 0 dim 2 = 224``, or ``none`` (each fixed dim and its size)."""
    fixed = [f"input {i} dim {j} = {d}" for i, shape in enumerate(shapes) for j, d in enumerate(shape) if d is not None]
    return ", ".join(fixed) if fixed else "none"


def _explain_input_checks(module: ExportedModule) -> None:
    """Make torch's input-shape refusal say which dims are fixed, to what, and what to do (same error type).

    torch raises ``RuntimeError: Expected input at *args[0].shape[2] to be equal
    to 64, but got 128 ... please re-export`` -- advice a user of a rebuilt model
    cannot follow. The check itself is torch's, unchanged. The shapes come from
    the program's own graph, never from the child's export meta.
    """
    shapes = input_shapes(module)
    for key, hook in list(module._forward_pre_hooks.items()):
        if getattr(hook, "__name__", "") == _INPUT_CHECK_HOOK:
            module._forward_pre_hooks[key] = _ExplainedInputCheck(hook, shapes)


class _ExplainedInputCheck:
    """torch's input check, its refusals (``RuntimeError``, ``ValueError``) re-raised with securehub's explanation."""

    __name__ = _INPUT_CHECK_HOOK

    def __init__(self, check: Any, shapes: tuple[tuple[int | None, ...], ...]) -> None:
        self.check = check
        self.shapes = shapes

    def __call__(self, module: nn.Module, args: Any, kwargs: Any) -> Any:
        try:
            return self.check(module, args, kwargs)
        except (RuntimeError, ValueError) as exc:
            source = getattr(module, "securehub_source_class", "the model")
            text = (
                f"{exc} -- {source} was rebuilt by securehub's export strategy: its program takes inputs shaped "
                f"{describe_shapes(self.shapes)} (* may vary; a number is fixed to the size of the example "
                f"inputs it was exported from, where torch had to specialise it) and the same arguments; fixed: "
                f"{_fixed_dims(self.shapes)}. To use other sizes of a fixed dim, record example inputs of that "
                "size (securehub lock SPEC -e ENTRYPOINT --example-input ..., or example_inputs= on load), "
                "or load it under a policy whose reconstruct.strategies lists trusted or source, which rebuild "
                "the model's own class"
            )
            try:
                explained = type(exc)(text)
            except Exception:  # a subclass with another constructor: its base type, same message
                explained = RuntimeError(text) if isinstance(exc, RuntimeError) else ValueError(text)
            raise explained from exc


def _carry_attributes(module: ExportedModule, root: Mapping[str, Any]) -> None:
    """Set every recorded post-construction data attribute of the final tree on ``module`` (all or none).

    Checked in full before anything is set. Nodes that only appear as constructor arguments
    (``<arg>`` paths) are not part of the final model and carry nothing.
    """
    planned: list[tuple[nn.Module, str, Any]] = []
    for path, node in iter_nodes(root):
        if "<arg>" in path:
            continue
        where = f"export: module {path or '<root>'}"
        _refuse_uncarried(node, where)
        attrs = replay_parts(node, where)[1]
        if not attrs:
            continue
        target = _submodule(module, path, where)
        for name, value in attrs.items():
            _check_free_name(target, name, where)
            planned.append((target, name, decode_plain_data(value, f"{where} attribute {name!r}")))
    for target, name, value in planned:
        object.__setattr__(target, name, value)
    object.__setattr__(module, _CARRIED, tuple(name for target, name, _ in planned if target is module))


def _refuse_uncarried(node: Mapping[str, Any], where: str) -> None:
    """Refuse when the child recorded a public attribute set after construction with no plain-data form.

    The recorder (:mod:`securehub.sandbox.child.record`) names such changes in ``mutated`` as
    ``attribute 'x' set after construction ...``; the export strategy cannot carry them, and the user's
    model has them. Private state (``private attribute ...``: hooks, caches) is the class's own business,
    which an exported program never carries (its forward is already in the graph); a removed attribute
    or child is absent from the exported module too.
    """
    mutated = node.get("mutated") or []
    lost = [m for m in mutated if isinstance(m, str) and m.startswith("attribute ") and " set after " in m]
    if lost:
        raise ReconstructRefused(
            f"{where} ({str(node.get('class'))[:120]}): {'; '.join(m[:200] for m in lost[:3])}; the export strategy "
            "carries only plain data attributes (JSON values) and refuses rather than drop one. Store plain "
            "data on the model, or use a policy whose reconstruct.strategies lists source"
        )


def _submodule(module: nn.Module, path: str, where: str) -> nn.Module:
    if not path:
        return module
    try:
        return module.get_submodule(path)
    except AttributeError:
        raise ReconstructRefused(
            f"{where}: attributes were set on this submodule after construction, but the exported program has "
            "no module at that path (it holds no parameters or buffers), so they cannot be carried; refusing "
            "rather than dropping them"
        ) from None


def _check_free_name(target: nn.Module, name: str, where: str) -> None:
    """The trusted strategy's name rules, plus: nothing the rebuilt instance already holds is overwritten."""
    check_replay_attr(type(target), name, where)  # also refuses a key that is not a str (hostile JSON)
    held = (target.__dict__, target._parameters, target._buffers, target._modules)
    if any(name in table for table in held):
        raise ReconstructRefused(
            f"{where}: attribute {name!r} set after construction would shadow {name!r} of the exported module "
            f"({type(target).__qualname__}: its own attribute, parameter, buffer or child); refusing to carry it"
        )


def _instance_class(base: type) -> type:
    namespace = {"__module__": __name__, "__qualname__": "ExportedModule", _INSTANCE_MARK: True}
    return type("ExportedModule", (base,), namespace)


#: torch.package's mangling of the modules an archive ships (``torch/package/_mangling.py``).
_TORCH_PACKAGE_PREFIX = re.compile(r"\A<torch_package_[0-9]{1,9}>\.")

#: hubconf's module name inside the sandbox child (``sandbox/child/runtime.py``), shown as ``hubconf``.
_CHILD_HUBCONF_MODULE = re.compile(r"\A_securehub_hubconf_[0-9a-f]{32}(?=:)")


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
    # A class unpickled from a torch.package archive (silero's TTS models) lives in a module torch.package
    # names ``<torch_package_N>.real.module``; that one mangling prefix is admitted (only displayed).
    module = _TORCH_PACKAGE_PREFIX.sub("", module, count=1)
    if not _dotted(module, locals_ok=False) or not _dotted(qualname, locals_ok=True):
        raise ReconstructRefused(
            f"export: the config's root class {text[:120]!r} is not a dotted identifier path; the sandbox "
            "child's config is malformed or hostile"
        )
    # The child imports hubconf.py under a private module name; users know it as ``hubconf``.
    return _CHILD_HUBCONF_MODULE.sub("hubconf", text)


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
