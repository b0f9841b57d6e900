"""Op ``convert``: unpickle one checkpoint with ``weights_only=True`` and flatten it (runs in the child).

The parent hands the child a verified checkpoint (a read-only path in the
call's hand-off directory). :func:`convert` loads it with
``torch.load(path, map_location="cpu", weights_only=True)`` -- ``torch.load``
is the child's forced-``weights_only`` wrapper (:mod:`.fetch`) -- and
turns the result into what may cross back (see
:mod:`securehub.sandbox.wire.messages`, "converted"):

- tensors -> one safetensors file, named by their ``'.'``-joined key path
  (``state_dict.layer.weight``), written with
  :func:`.result.write_state` (shared or partial storage is copied);
  a tensor object (or an identical view) met twice is stored once and
  referenced twice; subclasses (``nn.Parameter``) travel as plain tensors;
- ``None``/bool/int/float/str leaves -> the JSON ``extras`` mapping under
  the same kind of names;
- dicts (``OrderedDict`` kept apart), lists and tuples -> a flat container
  list in post-order, so a shared container is described once and a cycle is
  refused.

Anything else (a ``torch.dtype``, ``bytes``, a set, a sparse or quantized
tensor, a non-str/int dict key, a checkpoint that is not a mapping) raises
:class:`ConvertRefused` with code ``format-not-allowed``, as do the caps of
:mod:`.messages` (containers, entries, name length, extras bytes, depth).
This module is a convenience next to untrusted data, not a boundary: the
parent re-checks everything it receives.
"""

from __future__ import annotations

import collections
import json
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from securehub.sandbox.child.audit import Watch
from securehub.sandbox.child.bootstrap import _is_memory_error
from securehub.sandbox.child.result import ResultRefused, _plain, _view_key, write_state
from securehub.sandbox.wire import messages as m

__all__ = ["MAX_DEPTH", "ConvertRefused", "convert"]

#: Deepest container nesting a converted checkpoint may have (real ones use < 10).
MAX_DEPTH = 100
_REASON_CHARS = 800


class ConvertRefused(Exception):  # noqa: N818
    """The checkpoint cannot be converted; ``code`` is what the child reports, ``message`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = m.sanitize_text(message)


def _refuse(message: str) -> ConvertRefused:
    return ConvertRefused("format-not-allowed", message)


def torch_reason(exc: BaseException) -> str:
    """torch's reason for refusing a load, without its boilerplate (and its advice to use weights_only=False)."""
    text = str(exc)
    parts = [p.strip() for p in text.split("\n\n") if p.strip()]
    keep = [
        p for p in parts if not p.startswith("Weights only load failed") and not p.startswith("Check the documentation")
    ]
    return m.sanitize_text(" ".join(keep) or text or type(exc).__name__, limit=_REASON_CHARS)


class _Flattener:
    """Builds the ``converted`` meta and the tensor dict; see the module docstring."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}
        self.views: dict[tuple[Any, ...], str] = {}
        self.extras: dict[str, Any] = {}
        self.containers: list[dict[str, Any]] = []
        self.memo: dict[int, int] = {}
        self.open: set[int] = set()
        self.used: set[str] = set()
        self.refs = 0

    def _name(self, path: str) -> str:
        if len(path) > m.MAX_CONVERT_NAME_CHARS - 16:
            raise _refuse(f"key path {path[:120]!r}... is longer than {m.MAX_CONVERT_NAME_CHARS} characters")
        name, n = path, 0
        while not name or name in self.used:
            n += 1
            name = f"{path}~{n}"
        self.used.add(name)
        return name

    def visit(self, obj: Any, path: str, depth: int) -> list[Any]:
        self.refs += 1
        if self.refs > m.MAX_CONVERT_REFS:
            raise _refuse(f"the checkpoint has more than {m.MAX_CONVERT_REFS} entries")
        where = path or "<root>"
        if isinstance(obj, torch.Tensor):
            return ["t", self._tensor(obj, path)]
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return ["x", self._extra(obj, path)]
        if isinstance(obj, (dict, list, tuple)):
            return ["c", self._container(obj, path, depth)]
        raise _refuse(
            f"entry {where!r} is a {type(obj).__module__}.{type(obj).__qualname__}; only tensors, dicts, lists, "
            "tuples and None/bool/int/float/str values can be converted"
        )

    def _tensor(self, obj: torch.Tensor, path: str) -> str:
        try:
            t = _plain(path or "<root>", obj)
        except ResultRefused as exc:
            raise _refuse(str(exc)) from None
        key = _view_key(t)
        if key in self.views:
            return self.views[key]
        name = self._name(path)
        self.views[key] = name
        self.tensors[name] = t if t.is_contiguous() else t.contiguous()
        return name

    def _extra(self, obj: bool | int | float | str | None, path: str) -> str:
        value: bool | int | float | str | None
        if obj is None or isinstance(obj, bool):
            value = obj
        elif isinstance(obj, int):
            value = int(obj)
            if not m.CONVERT_INT_MIN <= value <= m.CONVERT_INT_MAX:
                raise _refuse(f"entry {path!r} is an integer outside [-2**63, 2**64 - 1]")
        elif isinstance(obj, float):
            value = float(obj)
        else:
            value = str(obj)
            _check_text(value, path)
        name = self._name(path)
        self.extras[name] = m.encode_extra(value)
        return name

    def _container(self, obj: dict[Any, Any] | list[Any] | tuple[Any, ...], path: str, depth: int) -> int:
        oid = id(obj)
        if oid in self.memo:
            return self.memo[oid]
        if oid in self.open:
            raise _refuse(f"entry {path or '<root>'!r} contains itself (a reference cycle)")
        if depth >= MAX_DEPTH:
            raise _refuse(f"the checkpoint nests containers deeper than {MAX_DEPTH} levels (at {path[:120]!r})")
        self.open.add(oid)
        entry: dict[str, Any]
        if isinstance(obj, dict):
            keys = [_check_key(k, path) for k in obj]
            items = [self.visit(v, _join(path, str(k)), depth + 1) for k, v in obj.items()]
            kind = "odict" if isinstance(obj, collections.OrderedDict) else "dict"
            entry = {"kind": kind, "keys": keys, "items": items}
        else:
            items = [self.visit(v, _join(path, str(i)), depth + 1) for i, v in enumerate(obj)]
            entry = {"kind": "tuple" if isinstance(obj, tuple) else "list", "items": items}
        self.open.discard(oid)
        if len(self.containers) >= m.MAX_CONVERT_CONTAINERS:
            raise _refuse(f"the checkpoint has more than {m.MAX_CONVERT_CONTAINERS} dicts/lists/tuples")
        self.containers.append(entry)
        self.memo[oid] = len(self.containers) - 1
        return len(self.containers) - 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(f"entry {path!r} holds a string that is not valid Unicode (lone surrogates)") from None


def _check_key(key: Any, path: str) -> str | int:
    if isinstance(key, str):
        _check_text(key, path)
        if len(key) > m.MAX_CONVERT_NAME_CHARS:
            raise _refuse(f"a key under {path or '<root>'!r} is longer than {m.MAX_CONVERT_NAME_CHARS} characters")
        return str(key)
    if isinstance(key, int) and not isinstance(key, bool) and m.CONVERT_INT_MIN <= key <= m.CONVERT_INT_MAX:
        return int(key)
    raise _refuse(
        f"a dict under {path or '<root>'!r} has a key of type {type(key).__name__}; "
        "only string and integer keys can be converted"
    )


def _load(path: Path, watch: Watch) -> Any:
    watch.allow_read(str(path))
    watch.active = True  # nothing should run during a weights_only load; if anything tries, it is recorded
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _refuse(f"torch.load(weights_only=True) refused the checkpoint: {torch_reason(exc)}") from None
    except Exception as exc:
        if _is_memory_error(exc):
            raise
        raise _refuse(
            f"torch.load(weights_only=True) could not read the checkpoint: {type(exc).__name__}: {torch_reason(exc)}"
        ) from None
    finally:
        watch.active = False


def _raise_violations(watch: Watch) -> None:
    """Fail closed: a load that attempted a forbidden action is a violation, whatever it returned."""
    if watch.violations:
        named = ", ".join(watch.violations[:8])
        raise ConvertRefused("sandbox-violation", f"loading the checkpoint attempted a forbidden action: {named}")


def convert(path: Path, watch: Watch) -> tuple[dict[str, Any], Path]:
    """Load and flatten the checkpoint at ``path``: the ``converted`` meta and the safetensors file to send.

    Raises :class:`ConvertRefused` (``format-not-allowed``, or
    ``sandbox-violation`` when loading attempted a forbidden action);
    a memory error propagates (the runtime turns it into ``sandbox-resource``).
    """
    try:
        obj = _load(path, watch)
    except ConvertRefused:
        _raise_violations(watch)
        raise
    _raise_violations(watch)
    if not isinstance(obj, dict):
        raise _refuse(
            f"the checkpoint holds a {type(obj).__module__}.{type(obj).__qualname__}; expected a mapping "
            "(a state dict or a dict of state dicts)"
        )
    flat = _Flattener()
    root = flat.visit(obj, "", 0)
    size = len(json.dumps(flat.extras, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > m.MAX_CONVERT_EXTRAS_BYTES:
        raise _refuse(
            f"the checkpoint's non-tensor values take {size} bytes as JSON; at most "
            f"{m.MAX_CONVERT_EXTRAS_BYTES} can be converted"
        )
    out = Path(tempfile.mkdtemp(prefix="convert-")) / "state.safetensors"
    try:
        write_state(flat.tensors, out)
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise _refuse(
            f"the checkpoint's tensors cannot be written as safetensors (a dtype safetensors lacks?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    meta = {"format": m.CONVERT_FORMAT, "containers": flat.containers, "root": root, "extras": flat.extras}
    return meta, out
