"""Constructor recording for the ``trusted`` reconstruction strategy (runs in the child).

While :func:`recording` is active, every ``torch.nn.Module`` created remembers
the positional and keyword arguments its class was called with, and what its
tree looked like when the outermost ``__init__`` returned. :func:`describe`
then turns a module into a JSON-safe config::

    {"format": "securehub-config/1", "root": NODE, "frozen": [str...]}

    # "frozen": names of parameters with requires_grad == False (sorted; every
    # name of a tied parameter), applied by the parent after loading the state

    NODE = {
      "class": "torch.nn.modules.linear:Linear",     # type(m).__module__ ":" __qualname__
      "origin": {"kind": "site"|"stdlib"|"tree"|"other"|"unknown", "path": str,
                 "resolves": bool},                  # see below
      "reconstructible": bool, "reason": str,        # reason only when not reconstructible
      "args": [ARG...], "kwargs": {name: ARG},       # present when reconstructible
      "children": {name: NODE},                      # the tree after construction AND mutation
      "training": bool,
      "attrs": {name: ARG},                          # public JSON-safe hyper-parameters (final)
      "mutated": [str...],                           # changes the parent may NOT replay, named
      "replay": {"children": [name...],              # optional: children added/replaced after
                 "attrs": {name: ARG},               # __init__, public plain-data attributes set after,
                 "tensors": {name: TENSOR_KIND},     # optional: parameters/buffers registered (or set
                                                     # to None) after __init__; values are in the state
                 "removed": {name: "deleted"|"none"}},  # optional: children deleted / set to None
      "dtype": "float32",                            # when all floating tensors share one dtype
      "norms": [NORM...],                            # optional: weight/spectral norm applied after
    }                                                # __init__ (securehub/sandbox/child/record_norms.py)

    ARG = null | bool | int | str | float (finite) | [ARG...]
        | {"$float": "inf"|"-inf"|"nan"} | {"$tuple": [ARG...]} | {"$dict": {str: ARG}}
        | {"$odict": [[str, ARG]...]}          (a collections.OrderedDict, its items in order)
        | {k: ARG} (a dict whose keys are str and none starts with "$")
        | {"$module": {"ref": "dotted.path"}}  (a module of the final tree; "" is the root)
        | {"$module": {"node": NODE}}          (a module that is not in the final tree)
        | {"$class": "mod:Qual"} | {"$function": "mod:qual"} | {"$dtype": "float32"}
        | {"$device": "cpu"} | {"$enum": {"class": "mod:Qual", "name": "MEMBER"}}
        | {"$partial": {"func": {"$class"|"$function": ...}, "args": [ARG...], "kwargs": {name: ARG}}}

    TENSOR_KIND = "parameter" | "buffer" | "nonpersistent" | "none"

``origin`` is evidence for the parent, not a guarantee (the child is
untrusted): ``path`` is where the class's own methods were compiled
(``co_filename``), not ``sys.modules[__module__].__file__``, so a class that
merely sets ``__module__ = "torch.nn"`` shows up with ``kind == "tree"``;
``resolves`` says whether ``__module__:__qualname__`` (looked up in modules
already imported) is this very class. ``path`` is relative to the root it
lies under (the tree, site-packages, the stdlib or another ``sys.path``
directory, see ``_roots``) and a pseudo file name (``"<string>"``) is kept as
it is, so the config, pinned by ``config_sha256``, names no directory of the
machine or of the child's temp dir.

Nothing here raises because a module is unusual: what cannot be described
is marked ``"reconstructible": false`` with the reason, and the parent moves
on to its next strategy.
"""

from __future__ import annotations

import collections
import enum
import functools
import inspect
import math
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from securehub.sandbox.child.record_norms import HOOK_DICTS, Norms, explains, recognised_norms

__all__ = ["CONFIG_FORMAT", "describe", "frozen_parameters", "recording"]

CONFIG_FORMAT = "securehub-config/1"

#: Private attribute set with object.__setattr__ (bypassing Module.__setattr__).
_ATTR = "_securehub_ctor_record"

_MAX_DEPTH = 32
_MAX_ITEMS = 10_000
_MAX_STR = 65_536


@dataclass
class _CtorRecord:
    """What a module's class was called with; copied along by deepcopy/pickle of the module."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    problem: str | None = None
    init_depth: int = 0
    init_done: bool = False
    children_at_init: dict[str, Any] = field(default_factory=dict)
    attrs_at_init: dict[str, Any] = field(default_factory=dict)
    dict_at_init: dict[str, Any] = field(default_factory=dict)


class _Unencodable(Exception):  # noqa: N818 - internal signal, never escapes describe()
    """An argument that has no JSON form; the message says which and why."""


def _freeze(value: Any, depth: int = 0) -> Any:
    """Copy containers so later mutation of a list argument does not rewrite history."""
    if depth > _MAX_DEPTH:
        return value
    if type(value) is list:
        return [_freeze(v, depth + 1) for v in value]
    if type(value) is dict:
        return {k: _freeze(v, depth + 1) for k, v in value.items()}
    if type(value) is tuple:
        return tuple(_freeze(v, depth + 1) for v in value)
    return value


def _init_wrapper(orig: Callable[..., None]) -> Callable[..., None]:
    def __init__(self: nn.Module, *args: Any, **kwargs: Any) -> None:  # noqa: N807
        rec = self.__dict__.get(_ATTR)
        if not isinstance(rec, _CtorRecord):
            orig(self, *args, **kwargs)
            return
        rec.init_depth += 1
        try:
            orig(self, *args, **kwargs)
        finally:
            rec.init_depth -= 1
        if rec.init_depth == 0:
            rec.init_done = True
            rec.children_at_init = dict(self._modules)
            rec.attrs_at_init = _public_attrs(self)
            rec.dict_at_init = _snapshot(self.__dict__)

    __init__.__wrapped__ = orig  # type: ignore[attr-defined]
    __init__.__doc__ = orig.__doc__
    return __init__


def _init_owner(cls: type) -> type | None:
    for klass in cls.__mro__:
        if "__init__" in klass.__dict__:
            return klass
    return None


class _State:
    """Process-wide recorder state (the hook stays installed; see :func:`_install`)."""

    active = 0
    wrapped: dict[type, Any] = {}  # noqa: RUF012 - deliberate process-wide registry


def _hooked_new(cls: type[nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    base_new = super(nn.Module, cls).__new__
    # object.__new__ refuses extra arguments; an exotic C base's __new__ may need them.
    obj: nn.Module = object.__new__(cls) if base_new is object.__new__ else base_new(cls, *args, **kwargs)
    if _State.active <= 0:
        return obj
    rec = _CtorRecord(args=(), kwargs={})
    try:
        rec.args = _freeze(args)
        rec.kwargs = _freeze(dict(kwargs))
    except RecursionError:
        rec.problem = "constructor arguments nest too deeply to record"
    if any("__new__" in k.__dict__ for k in cls.__mro__ if k is not nn.Module and k is not object):
        rec.problem = f"class {cls.__qualname__} overrides __new__"
    owner = _init_owner(cls)
    if owner is not None and owner not in _State.wrapped:
        _State.wrapped[owner] = owner.__dict__["__init__"]
        type.__setattr__(owner, "__init__", _init_wrapper(_State.wrapped[owner]))
    object.__setattr__(obj, _ATTR, rec)
    return obj


#: The hook as installed: a static method, as ``def __new__`` in a class body becomes. A plain
#: function would bind to an instance in ``self.__new__(self.__class__)``, which torch's
#: parametrized classes use to deep-copy themselves (``copy.deepcopy`` of a weight-normed layer).
_HOOK = staticmethod(_hooked_new)


def _install() -> None:
    """Install the ``__new__`` hook once per process.

    It is never removed: CPython does not restore ``object.__new__``'s
    argument check after ``del Module.__new__`` (``Linear(4, 3)`` then raises
    "object.__new__() takes exactly one argument"), so the hook stays and
    does nothing while no :func:`recording` block is active.
    """
    if nn.Module.__dict__.get("__new__") is not _HOOK:
        if "__new__" in nn.Module.__dict__:
            raise RuntimeError("torch.nn.Module already defines __new__; constructor recording would clobber it")
        type.__setattr__(nn.Module, "__new__", _HOOK)


@contextmanager
def recording() -> Iterator[None]:
    """Record constructor calls of every ``nn.Module`` created inside the block.

    On exit every ``__init__`` that was wrapped is put back and the ``__new__``
    hook goes inactive. Not thread-safe; the child runtime is
    single-threaded while this is active.
    """
    _install()
    _State.active += 1
    try:
        yield
    finally:
        _State.active -= 1
        if _State.active == 0:
            for owner, orig in _State.wrapped.items():
                type.__setattr__(owner, "__init__", orig)
            _State.wrapped.clear()


# --------------------------------------------------------------------------- describe


def _import_path(obj: Any) -> str | None:
    """``mod:qual`` when that path, looked up in already-imported modules, is ``obj`` itself."""
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if not isinstance(mod, str) or not isinstance(qual, str) or "<" in qual:
        return None
    target: Any = sys.modules.get(mod)
    if target is None:
        return None
    for part in qual.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    if target is obj:
        return f"{mod}:{qual}"
    # A functools.wraps wrapper put in the original's place (torch replaces ``torch.manual_seed`` with a
    # dynamo-disabling wrapper once ``torch._dynamo`` is imported, e.g. by a hubconf that uses ``torch.compile``;
    # the child's own determinism set-up avoids importing it): the path names the wrapped original, which is what the
    # parent will import and check. Only one level, and only when the path resolves to exactly that object.
    if getattr(obj, "__wrapped__", None) is target:
        return f"{mod}:{qual}"
    return None


#: Public modules searched (in order) for a built-in function's import path.
_PUBLIC_BUILTIN_HOMES = ("torch.nn.functional", "torch")


def _public_builtin_path(obj: Any) -> str | None:
    """For a built-in function, ``home:name`` when a public module exposes this very object.

    ``torch.nn.functional.gelu`` is a C function whose ``__module__`` is
    ``torch._C._nn``; recording that private path would put it outside any
    allowlist (``torch.nn``). The parent still checks that the recorded path
    resolves, inside an allowlisted installed module, to a built-in function.
    """
    if not isinstance(obj, types.BuiltinFunctionType):
        return None
    name = getattr(obj, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        return None
    for home in _PUBLIC_BUILTIN_HOMES:
        mod = sys.modules.get(home)
        if mod is not None and getattr(mod, name, None) is obj:
            return f"{home}:{name}"
    return None


_SITE_DIRS = ("site-packages", "dist-packages")


def _roots(tree: Path | None) -> list[tuple[str, Path]]:
    """Where a class's file may lie, checked in this order: the repo tree, site-packages, the stdlib,
    then every other ``sys.path`` directory, deepest first (``site`` when it is a site-packages or
    dist-packages directory, such as Debian's ``/usr/lib/python3/dist-packages``, ``other`` otherwise:
    an editable install's source directory).

    An origin's ``path`` is relative to its root, so the config (pinned in hub.lock by
    ``config_sha256``) names no machine's directories: an absolute path of a class in an editable
    install or in dist-packages differed between a CI runner and a laptop (red team 13).
    """
    paths = sysconfig.get_paths()
    site = {Path(paths[k]).resolve() for k in ("purelib", "platlib") if k in paths}
    std = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib") if k in paths}
    tree_root = [] if tree is None else [("tree", tree.resolve())]
    known = site | std | {p for _, p in tree_root}
    others = {Path(p).resolve() for p in sys.path if p and Path(p).is_dir()} - known
    extra = [("site" if p.name in _SITE_DIRS else "other", p) for p in sorted(others, key=lambda p: (-len(p.parts), p))]
    return tree_root + [("site", p) for p in sorted(site)] + [("stdlib", p) for p in sorted(std)] + extra


def _class_file(cls: type) -> str | None:
    """Where the class body's own functions were compiled; None for C classes."""
    for value in vars(cls).values():
        func = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if isinstance(func, property):
            func = func.fget
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            return code.co_filename
    return None


def _origin(cls: type, roots: list[tuple[str, Path]]) -> dict[str, Any]:
    filename = _class_file(cls)
    resolves = _import_path(cls) is not None
    if filename is None:
        return {"kind": "unknown", "path": "", "resolves": resolves}
    if not Path(filename).is_absolute():  # "<string>" (exec, dataclass-made methods): not a file; never the cwd's
        return {"kind": "other", "path": filename, "resolves": resolves}
    path = Path(filename).resolve()
    for kind, root in roots:
        if path.is_relative_to(root):
            return {"kind": kind, "path": path.relative_to(root).as_posix(), "resolves": resolves}
    return {"kind": "other", "path": str(path), "resolves": resolves}


def _encode_float(x: float) -> Any:
    if math.isfinite(x):
        return x
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


class _Encoder:
    def __init__(self, root: nn.Module, tree: Path | None) -> None:
        self.tree = tree
        self.roots = _roots(tree)  # resolved once per describe, not once per module (hundreds of realpaths)
        self.origins: dict[type, dict[str, Any]] = {}
        self.paths: dict[int, str] = {id(m): name for name, m in root.named_modules(remove_duplicate=True)}
        self.items = 0
        self.stack: set[int] = set()

    def arg(self, value: Any, where: str, depth: int = 0) -> Any:
        self.items += 1
        if depth > _MAX_DEPTH:
            raise _Unencodable(f"{where}: nested deeper than {_MAX_DEPTH}")
        if self.items > _MAX_ITEMS:
            raise _Unencodable(f"{where}: more than {_MAX_ITEMS} argument items")
        if value is None or isinstance(value, bool):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            return _encode_float(value)
        if type(value) is str:
            if len(value) > _MAX_STR:
                raise _Unencodable(f"{where}: string longer than {_MAX_STR}")
            return value
        if type(value) is list:
            return [self.arg(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if type(value) is tuple or isinstance(value, torch.Size):
            return {"$tuple": [self.arg(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]}
        if type(value) is dict:
            out: dict[str, Any] = {}
            for k, v in value.items():
                if type(k) is not str:
                    raise _Unencodable(f"{where}: dict key of type {type(k).__name__}")
                out[k] = self.arg(v, f"{where}[{k!r}]", depth + 1)
            if any(k.startswith("$") for k in out):
                return {"$dict": out}
            return out
        if type(value) is collections.OrderedDict:
            # nn.Sequential(OrderedDict([("conv0", ...), ...])) (torchvision's densenet, brain-segmentation's
            # UNet): pairs, in order (canonical JSON sorts an object's keys, which would lose the order)
            pairs: list[list[Any]] = []
            for k, v in value.items():
                if type(k) is not str:
                    raise _Unencodable(f"{where}: OrderedDict key of type {type(k).__name__}")
                pairs.append([k, self.arg(v, f"{where}[{k!r}]", depth + 1)])
            return {"$odict": pairs}
        if isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"$device": str(value)}
        if isinstance(value, nn.Module):
            path = self.paths.get(id(value))
            if path is not None:
                return {"$module": {"ref": path}}
            if id(value) in self.stack:
                raise _Unencodable(f"{where}: module argument refers back to itself")
            return {"$module": {"node": self.node(value, depth + 1)}}
        if type(value) is functools.partial:
            return self._partial(value, where, depth)
        if isinstance(value, enum.Enum):
            cls_path = _import_path(type(value))
            if cls_path is None or not isinstance(value.name, str):
                raise _Unencodable(f"{where}: enum {type(value).__qualname__} is not importable by name")
            return {"$enum": {"class": cls_path, "name": value.name}}
        if isinstance(value, type):
            path = _import_path(value)
            if path is None:
                raise _Unencodable(f"{where}: class {value.__qualname__} is not importable by name")
            return {"$class": path}
        if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
            path = _public_builtin_path(value) or _import_path(value)
            if path is None:
                raise _Unencodable(f"{where}: function {value.__qualname__} is not importable by name")
            return {"$function": path}
        raise _Unencodable(f"{where}: value of type {type(value).__qualname__} has no JSON form")

    def _partial(self, value: functools.partial[Any], where: str, depth: int) -> Any:
        """``functools.partial(Block, attn=...)``: the callable by path, its bound arguments as values."""
        func = self.arg(value.func, f"{where}.func", depth + 1)
        if not (isinstance(func, dict) and len(func) == 1 and next(iter(func)) in ("$class", "$function")):
            raise _Unencodable(f"{where}: partial of {type(value.func).__qualname__}, not of a class or function")
        return {
            "$partial": {
                "func": func,
                "args": [self.arg(v, f"{where}.args[{i}]", depth + 1) for i, v in enumerate(value.args)],
                "kwargs": {k: self.arg(v, f"{where}.kwargs[{k!r}]", depth + 1) for k, v in value.keywords.items()},
            }
        }

    def origin(self, cls: type) -> dict[str, Any]:
        """``_origin`` of ``cls``, worked out once per class in one describe (a copy per node)."""
        if cls not in self.origins:
            self.origins[cls] = _origin(cls, self.roots)
        return dict(self.origins[cls])

    def node(self, module: nn.Module, depth: int = 0) -> dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise _Unencodable(f"module tree deeper than {_MAX_DEPTH}")
        self.stack.add(id(module))
        try:
            return self._node(module, depth)
        finally:
            self.stack.discard(id(module))

    def _node(self, module: nn.Module, depth: int) -> dict[str, Any]:
        norms = recognised_norms(module)
        cls = type(module) if norms is None else norms.base_class
        node: dict[str, Any] = {
            "class": f"{cls.__module__}:{cls.__qualname__}",
            "origin": self.origin(cls),
            "training": bool(module.training),
        }
        rec = module.__dict__.get(_ATTR)
        problem: str | None = None
        if not isinstance(rec, _CtorRecord):
            problem = "constructor call was not recorded (created before recording started)"
        elif rec.problem is not None:
            problem = rec.problem
        elif not rec.init_done:
            problem = "module was created without running __init__ (copy, unpickle or __new__)"
        if problem is None and isinstance(rec, _CtorRecord):
            try:
                node["args"] = [self.arg(v, f"args[{i}]", depth) for i, v in enumerate(rec.args)]
                node["kwargs"] = {k: self.arg(v, f"kwargs[{k!r}]", depth) for k, v in rec.kwargs.items()}
            except _Unencodable as exc:
                problem = str(exc)
                node.pop("args", None)
                node.pop("kwargs", None)
        node["reconstructible"] = problem is None
        if problem is not None:
            node["reason"] = problem
        node["children"] = {
            name: self.node(child, depth + 1)
            for name, child in module._modules.items()
            if child is not None and not _norms_child(norms, name)
        }
        node["attrs"] = self._attrs(module)
        if norms is not None:
            node["norms"] = norms.entries
        if isinstance(rec, _CtorRecord) and rec.init_done:
            mutated, replay = self._changes(module, rec, norms)
            node["mutated"] = mutated
            if replay["children"] or replay["attrs"] or replay.get("tensors") or replay.get("removed"):
                node["replay"] = replay
        dtype = _common_dtype(module)
        if dtype is not None:
            node["dtype"] = dtype
        return node

    def _attrs(self, module: nn.Module) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in _public_attrs(module).items():
            try:
                out[name] = self.arg(value, name, _MAX_DEPTH - 4)
            except _Unencodable:
                continue  # attrs are evidence only; an attribute without JSON form is left out
        return out

    def _changes(self, module: nn.Module, rec: _CtorRecord, norms: Norms | None) -> tuple[list[str], dict[str, Any]]:
        """What changed after ``__init__`` returned: what the parent may replay, and what it may not.

        Replayable: children added or replaced (``append``, ``insert``, ``add_module``, attribute
        assignment; their own constructor calls are in ``children``), children deleted or set to
        None (``del model.head``, ``model.fc = None``), and public attributes whose value is plain
        data. Everything else (a private or hook attribute, a value with no plain-data form) is
        listed in ``mutated`` by name, so the parent refuses it instead of silently dropping it.
        What ``norms`` did (its hooks, the tensor attribute it sets, the ``parametrizations``
        child) is described by the node's ``norms`` instead.
        """
        mutated: list[str] = []
        children: list[str] = []
        # a TorchScript module's ``_modules`` (``torch.jit._script.OrderedModuleDict``) maps names but cannot
        # be iterated directly (``for name in ...`` indexes it with 0, 1, ...: KeyError): copy it through items()
        now = dict(module._modules.items())
        for name, child in now.items():
            before = rec.children_at_init.get(name)
            if child is not None and before is not child and not _norms_child(norms, name):
                children.append(name)  # added or replaced; the final order is the children's order
        removed = {
            name: "deleted" if name not in now else "none"
            for name, before in rec.children_at_init.items()
            if name not in now or (now[name] is None and before is not None)
        }
        tensors = _tensor_changes(module, rec, mutated, frozenset() if norms is None else norms.tensor_names())
        attrs: dict[str, Any] = {}
        current = module.__dict__
        for name in sorted(set(current) | set(rec.dict_at_init)):
            if name in _MANAGED:
                continue
            if name in current and name in rec.dict_at_init and _unchanged(rec.dict_at_init[name], current[name]):
                continue
            if _explained_by_norms(norms, name, rec.dict_at_init.get(name), current.get(name)):
                continue
            if name not in current:
                mutated.append(f"attribute {name!r} removed after construction")
            elif name.startswith("_"):
                mutated.append(
                    f"private attribute {name!r} set after construction (hooks and other torch state are not replayed)"
                )
            elif name == "forward" and _own_method(module, current[name]):
                # yolov5's fuse(): ``m.forward = m.forward_fuse``. Behaviour, not data: an exported program
                # traces it (like a hook); the constructor replay of ``trusted`` cannot reproduce it.
                mutated.append(
                    f"forward rebound to {type(module).__qualname__}.{current[name].__func__.__name__} after "
                    "construction (behaviour only: an exported program traces it, a constructor replay cannot)"
                )
            elif _shadows_class_behaviour(type(module), name):
                mutated.append(
                    f"attribute {name!r} set after construction shadows {type(module).__qualname__}.{name} "
                    "(a method, property or descriptor)"
                )
            else:
                try:
                    attrs[name] = self.data(current[name], name)
                except _Unencodable as exc:
                    mutated.append(f"attribute {name!r} set after construction has no plain-data form ({exc})")
        replay: dict[str, Any] = {"children": children, "attrs": attrs}
        if tensors:
            replay["tensors"] = tensors
        if removed:
            replay["removed"] = removed
        return mutated, replay

    def data(self, value: Any, where: str) -> Any:
        """``value`` as plain data (JSON values, tuples, dtypes); modules, classes, functions refused."""
        encoded = self.arg(value, where, _MAX_DEPTH - 8)
        if _has_tag(encoded, ("$module", "$class", "$function", "$device")):
            raise _Unencodable(f"{where}: holds a module, class or function")
        return encoded


def _table_at_init(rec: _CtorRecord, name: str) -> dict[str, Any]:
    """A ``__dict__`` table as :func:`_snapshot` kept it when ``__init__`` returned (a set: its members)."""
    before = rec.dict_at_init.get(name)
    if not (isinstance(before, tuple) and len(before) == 2):
        return {}
    if before[0] is set:
        return dict.fromkeys(before[1])
    return dict(before[1])


def _tensor_changes(module: nn.Module, rec: _CtorRecord, mutated: list[str], normed: frozenset[str]) -> dict[str, str]:
    """Parameters and buffers registered, or set to None, after ``__init__`` (``register_buffer``,
    ``model.scale = nn.Parameter(...)``, ``conv.bias = None``): replayable, their values travel in the
    state. A parameter or buffer deleted, or a buffer's persistence changed, is named in ``mutated``.
    ``normed``: the names weight/spectral norm removed or registered (described by ``norms``)."""
    out: dict[str, str] = {}
    nonpersistent_before = set(_table_at_init(rec, "_non_persistent_buffers_set"))
    for table, kind in (("_parameters", "parameter"), ("_buffers", "buffer")):
        before, now = _table_at_init(rec, table), module.__dict__[table]
        for name in before:
            if name not in now and name not in normed:
                mutated.append(f"{kind} {name!r} deleted after construction")
        for name, value in now.items():
            if name in normed:
                continue
            if value is None:
                if before.get(name) is not None or name not in before:
                    out[name] = "none"
                continue
            persistent = name not in module._non_persistent_buffers_set
            if name in before and before[name] is not None:
                if kind == "buffer" and persistent != (name not in nonpersistent_before):
                    mutated.append(f"buffer {name!r} changed persistence after construction")
                continue
            out[name] = kind if kind == "parameter" or persistent else "nonpersistent"
    return out


def _norms_child(norms: Norms | None, name: str) -> bool:
    return norms is not None and norms.parametrized and name == "parametrizations"


def _explained_by_norms(norms: Norms | None, name: str, before: Any, after: Any) -> bool:
    """A ``__dict__`` change that the recorded norms account for (the parent's torch call redoes it)."""
    if norms is None or after is None:
        return False
    if name in norms.attrs:
        return isinstance(after, torch.Tensor)
    if name in HOOK_DICTS and isinstance(before, tuple) and isinstance(after, dict):
        return explains(norms, before[1], after.items())
    return False


#: ``__dict__`` entries whose changes the state and tree already carry (or the recorder's own).
_MANAGED = frozenset({_ATTR, "_parameters", "_buffers", "_modules", "training", "_non_persistent_buffers_set"})


def _own_method(module: nn.Module, value: Any) -> bool:
    """``value`` is a method of ``module``'s own class bound to ``module`` itself (``m.forward_fuse``)."""
    if not isinstance(value, types.MethodType) or value.__self__ is not module:
        return False
    try:
        found = inspect.getattr_static(type(module), value.__func__.__name__)
    except AttributeError:
        return False
    return found is value.__func__


def _shadows_class_behaviour(cls: type, name: str) -> bool:
    """The class defines ``name`` as something other than a plain default value (the parent's rule too)."""
    try:
        found = inspect.getattr_static(cls, name)
    except AttributeError:
        return False
    return not (found is None or type(found) in (bool, int, float, str))


def _snapshot(d: dict[str, Any]) -> dict[str, Any]:
    """Shallow copies of containers (hook dicts are mutated in place), other values as they are."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out[key] = (type(value), list(value.items()))
        elif isinstance(value, (list, set)):
            out[key] = (type(value), list(value))
        else:
            out[key] = value
    return out


def _unchanged(before: Any, after: Any) -> bool:
    if isinstance(after, (dict, list, set)):
        items = list(after.items()) if isinstance(after, dict) else list(after)
        if not (isinstance(before, tuple) and len(before) == 2 and before[0] is type(after)):
            return False
        old = before[1]
        return len(old) == len(items) and all(_same_item(a, b) for a, b in zip(old, items, strict=True))
    # plain values compare by value; anything else (a tensor, an object) only by identity
    return before is after or (type(after) in (bool, int, float, str) and _same(before, after))


def _same_item(a: Any, b: Any) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b) == 2:
        return a[0] is b[0] and a[1] is b[1]
    return a is b


def _has_tag(value: Any, tags: tuple[str, ...]) -> bool:
    if isinstance(value, list):
        return any(_has_tag(v, tags) for v in value)
    if isinstance(value, dict):
        return any(k in tags or _has_tag(v, tags) for k, v in value.items())
    return False


def _public_attrs(module: nn.Module) -> dict[str, Any]:
    """Plain public instance attributes (hyper-parameters such as ``in_features``, ``stride``)."""
    out: dict[str, Any] = {}
    for name, value in module.__dict__.items():
        if name.startswith("_") or name == "training":
            continue
        if _is_plain(value, 0):
            out[name] = value
    return out


def _is_plain(value: Any, depth: int) -> bool:
    if value is None or type(value) in (bool, int, float, str) or isinstance(value, torch.dtype):
        return True
    if type(value) is tuple and depth < 4 and len(value) <= 64:
        return all(_is_plain(v, depth + 1) for v in value)
    return False


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _common_dtype(module: nn.Module) -> str | None:
    dtypes = {t.dtype for t in module.parameters(recurse=True)}
    dtypes |= {t.dtype for t in module.buffers(recurse=True) if t.is_floating_point()}
    if len(dtypes) != 1:
        return None
    return str(next(iter(dtypes))).removeprefix("torch.")


def describe(module: nn.Module, tree: Path | None = None) -> dict[str, Any]:
    """Describe ``module`` as a JSON-safe ``securehub-config/1`` document.

    Guarantees: the result contains only dict/list/str/int/float(finite)/bool/None
    and is at most ``_MAX_DEPTH`` module levels deep (deeper trees raise
    ``ValueError``, which the runtime reports). Everything else is a claim by
    untrusted code that the parent must verify.
    """
    enc = _Encoder(module, tree)
    try:
        root = enc.node(module)
    except _Unencodable as exc:
        raise ValueError(str(exc)) from None
    return {"format": CONFIG_FORMAT, "root": root, "frozen": frozen_parameters(module)}


def frozen_parameters(module: nn.Module) -> list[str]:
    """Sorted names (every name of a tied parameter) of parameters with ``requires_grad == False``."""
    return sorted({name for name, p in module.named_parameters(remove_duplicate=False) if not p.requires_grad})
