"""The checked program JSON as torch's schema dataclasses, with each class's type hints resolved once.

torch's ``serde._dict_to_dataclass`` resolves ``typing.get_type_hints`` for every
node of the program, so a 300-node program cost about 0.8 s in the parent (most
of an export rebuild). This walks the same schema (``torch._export.serde.schema``)
the same way, with the hints of each class cached: about 0.2 s for that program.
Its input is :func:`securehub.reconstruct.export_schema.check_program`'s cleaned
JSON, never the child's raw text.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Annotated, Any


def to_program(data: dict[str, Any]) -> Any:
    """``data`` as a ``torch._export.serde.schema.ExportedProgram``."""
    from torch._export.serde.schema import ExportedProgram  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    return _convert(ExportedProgram, data)


@functools.cache
def _schema_namespace() -> dict[str, Any]:
    from torch._export.serde import schema  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    return vars(schema)


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls, globalns=_schema_namespace())
    return hints


def _resolve(hint: Any) -> Any:
    if isinstance(hint, typing.ForwardRef):
        hint = hint.__forward_arg__
    if isinstance(hint, str):
        resolved = _schema_namespace().get(hint)
        if resolved is None:
            raise TypeError(f"unknown schema type {hint!r}")
        return resolved
    return hint


@functools.cache
def _union_base() -> type:
    from torch._export.serde.union import _Union  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    return _Union


def _convert(hint: Any, data: Any) -> Any:
    cls = _resolve(hint)
    origin = typing.get_origin(cls)
    if origin is Annotated:
        return _convert(cls.__origin__, data)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(cls) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"schema union {cls!r} is not Optional[X]")
        return None if data is None else _convert(args[0], data)
    if isinstance(cls, type) and issubclass(cls, _union_base()):
        if not isinstance(data, dict) or len(data) != 1:
            raise TypeError(f"{cls.__name__} needs a one-key object")
        ((field, value),) = data.items()
        return cls.create(**{field: _convert(_hints(cls)[field], value)})  # type: ignore[attr-defined]
    if isinstance(cls, type) and dataclasses.is_dataclass(cls):
        hints = _hints(cls)
        fields = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
        return cls(**fields)
    if isinstance(data, list):
        return [_convert(typing.get_args(cls)[0], item) for item in data] if data else data
    if isinstance(data, dict):
        value_hint = typing.get_args(cls)[1]
        return {key: _convert(value_hint, value) for key, value in data.items()}
    if cls is float:
        return float(data)
    return data
