"""Validate a safetensors file's header and layout before anything loads it.

Checks, in order (each failure is a :class:`MalformedSafetensors` naming what
was expected and what was found):

1. the file holds at least the 8-byte header length ``N``;
2. ``N`` is at most ``max_header_bytes`` (default 100 MiB) and ``8 + N`` is
   within the file;
3. the header is UTF-8, starts with ``{`` and is one JSON object, with no
   duplicate keys at any level and no NaN/Infinity; before it is parsed, one
   scan of the raw bytes bounds its nesting (:data:`MAX_HEADER_DEPTH`) and its
   number of values (:data:`MAX_HEADER_VALUES`), so a 100 MiB header of tiny
   values cannot make the parser build gigabytes of Python objects;
4. ``__metadata__``, if present, maps strings to strings;
   every name and string is Unicode text (no lone surrogate from a ``\\udXXX`` escape);
5. every other entry is a tensor with exactly ``dtype``, ``shape`` and
   ``data_offsets``: a known dtype, a shape of non-negative integers, two
   non-negative integer offsets with ``begin <= end``, and
   ``product(shape) * dtype size == end - begin`` (computed exactly, with
   every intermediate capped at 2**64 - 1 as safetensors' checked
   arithmetic does), and torch can build the shape: the product of its
   dimensions, zeros counted as one, is at most 2**63 - 1;
6. sorted by offset, the tensors tile the data section exactly: no overlap,
   no gap, no trailing bytes (safetensors itself requires the same).

The data section itself is never read. :func:`check_safetensors_artifact`
wraps failures as ``format-not-allowed`` (a downloaded artifact),
:func:`check_safetensors_result` as ``sandbox-protocol`` (the child's output).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

from securehub._util.strict_json import JsonLimits, JsonRefusedError, check_bounds, parse_strict
from securehub.errors import FormatNotAllowed, SandboxProtocol, SecureHubError

__all__ = [
    "DTYPE_BITS",
    "MAX_HEADER_DEPTH",
    "MAX_HEADER_VALUES",
    "MalformedSafetensors",
    "SafetensorsHeader",
    "TensorInfo",
    "check_safetensors",
    "check_safetensors_artifact",
    "check_safetensors_head",
    "check_safetensors_result",
    "header_length",
    "malformed_result",
]

DEFAULT_MAX_HEADER_BYTES: Final = 100 * 1024 * 1024
#: The deepest well-formed header: the object, a tensor entry, its shape (or offsets) list.
MAX_HEADER_DEPTH: Final = 3
#: JSON values (containers, keys' values, list items) a header may hold: a tensor entry takes
#: about ten, so this admits some 200,000 tensors (large checkpoints hold thousands) while
#: bounding the parsed header to some hundred MB of Python objects.
MAX_HEADER_VALUES: Final = 2_000_000
_HEADER_BOUNDS: Final = JsonLimits(
    max_bytes=DEFAULT_MAX_HEADER_BYTES,  # the length check (step 2) already bounds the size
    max_depth=MAX_HEADER_DEPTH,
    max_items=MAX_HEADER_VALUES,
    max_str_bytes=DEFAULT_MAX_HEADER_BYTES,  # a string costs what its bytes cost
)
_I64_MAX: Final = 2**63 - 1
_U64_MAX: Final = 2**64 - 1

#: Element size in bits of every dtype safetensors 0.8 defines.
DTYPE_BITS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "BOOL": 8,
        "F4": 4,
        "F6_E2M3": 6,
        "F6_E3M2": 6,
        "U8": 8,
        "I8": 8,
        "F8_E5M2": 8,
        "F8_E4M3": 8,
        "F8_E4M3FNUZ": 8,
        "F8_E5M2FNUZ": 8,
        "F8_E8M0": 8,
        "I16": 16,
        "U16": 16,
        "F16": 16,
        "BF16": 16,
        "I32": 32,
        "U32": 32,
        "F32": 32,
        "C64": 64,
        "F64": 64,
        "I64": 64,
        "U64": 64,
    }
)


class MalformedSafetensors(ValueError):  # noqa: N818 - name fixed by the design brief
    """The bytes are not a well-formed safetensors file; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A validated header. Offsets in ``tensors`` are relative to ``data_offset``."""

    header_bytes: int
    data_offset: int
    data_bytes: int
    metadata: Mapping[str, str]
    tensors: tuple[TensorInfo, ...]


Source = str | Path | bytes | bytearray | memoryview | mmap.mmap


def check_safetensors(path_or_bytes: Source, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> SafetensorsHeader:
    """Validate ``path_or_bytes`` (a path, or the whole file's bytes); see the module docstring."""
    if isinstance(path_or_bytes, (str, Path)):
        p = Path(path_or_bytes)
        with p.open("rb") as fh:
            size = p.stat().st_size
            prefix = fh.read(8)
            n = _header_length(prefix, size, max_header_bytes)
            raw = fh.read(n)
        return _validate(raw, size, max_header_bytes)
    return check_safetensors_head(path_or_bytes, len(path_or_bytes), max_header_bytes=max_header_bytes)


def header_length(prefix: bytes, file_size: int, *, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES) -> int:
    """The header length ``N`` from the file's first 8 bytes: checks 1 and 2 of the module docstring.

    Lets a reader that streams the file bound its header read before making it.
    """
    return _header_length(prefix, file_size, max_header_bytes)


def check_safetensors_head(
    head: bytes | bytearray | memoryview | mmap.mmap,
    file_size: int,
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
) -> SafetensorsHeader:
    """Validate a file of ``file_size`` bytes from its first ``8 + N`` bytes (``head``; more is ignored).

    Every check of the module docstring is made; the layout check needs only
    the file's size, so the data section need not be in memory (a streaming
    reader can validate the header, then read each tensor into its own buffer).
    """
    n = _header_length(bytes(head[:8]), file_size, max_header_bytes)
    if len(head) < 8 + n:
        raise MalformedSafetensors(f"expected the {n}-byte header after the length, found {len(head) - 8} bytes")
    return _validate(bytes(head[8 : 8 + n]), file_size, max_header_bytes)


def check_safetensors_artifact(
    path_or_bytes: Source, *, name: str = "artifact", max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> SafetensorsHeader:
    """:func:`check_safetensors` for a downloaded artifact; raises ``format-not-allowed``."""
    return _check_or_raise(
        path_or_bytes,
        max_header_bytes,
        lambda exc: FormatNotAllowed(
            f"{name} is not a well-formed safetensors file: {exc}. It was not loaded; obtain an intact "
            "copy from the publisher"
        ),
    )


def check_safetensors_result(
    path_or_bytes: Source, *, name: str = "sandbox result", max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
) -> SafetensorsHeader:
    """:func:`check_safetensors` for the sandbox child's output; raises ``sandbox-protocol``."""
    return _check_or_raise(path_or_bytes, max_header_bytes, lambda exc: malformed_result(exc, name))


def malformed_result(exc: MalformedSafetensors, name: str = "sandbox result") -> SandboxProtocol:
    """The ``sandbox-protocol`` error for a malformed safetensors output of the sandbox child."""
    return SandboxProtocol(
        f"{name} from the sandbox is not a well-formed safetensors file: {exc}. The child's output "
        "was discarded; the entrypoint may be hostile or broken"
    )


def _check_or_raise(
    path_or_bytes: Source, max_header_bytes: int, error: Callable[[MalformedSafetensors], SecureHubError]
) -> SafetensorsHeader:
    """:func:`check_safetensors`, a malformed file raised as ``error(exc)`` (the caller's code and advice)."""
    try:
        return check_safetensors(path_or_bytes, max_header_bytes=max_header_bytes)
    except MalformedSafetensors as exc:
        raise error(exc) from exc


def _header_length(prefix: bytes, size: int, cap: int) -> int:
    if size < 8 or len(prefix) < 8:
        raise MalformedSafetensors(f"file is {size} bytes; expected at least the 8-byte header length")
    (n,) = struct.unpack("<Q", prefix)
    if n > cap:
        raise MalformedSafetensors(f"header length {n} exceeds the {cap}-byte limit")
    if 8 + n > size:
        raise MalformedSafetensors(f"header length {n} runs past the end of the {size}-byte file")
    return int(n)


def _validate(raw: bytes, size: int, cap: int) -> SafetensorsHeader:
    n = len(raw)
    try:
        check_bounds(raw, _HEADER_BOUNDS)
    except JsonRefusedError as exc:
        raise MalformedSafetensors(f"header refused before parsing: {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedSafetensors(f"header is not valid UTF-8 (byte {exc.start})") from None
    if not text.startswith("{"):
        raise MalformedSafetensors("header does not start with '{'; expected a JSON object")
    try:
        header = parse_strict(text)
    except JsonRefusedError as exc:
        raise MalformedSafetensors(f"header is not strict JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise MalformedSafetensors(f"header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise MalformedSafetensors(f"header is a JSON {type(header).__name__}; expected an object")
    metadata: dict[str, str] = {}
    tensors: list[TensorInfo] = []
    for key, entry in header.items():
        if key == "__metadata__":
            metadata = _metadata(entry)
        else:
            tensors.append(_tensor(key, entry))
    data_bytes = size - 8 - n
    _check_layout(tensors, data_bytes)
    return SafetensorsHeader(n, 8 + n, data_bytes, MappingProxyType(metadata), tuple(tensors))


def _metadata(entry: object) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise MalformedSafetensors(f"__metadata__ is a {type(entry).__name__}; expected an object of strings")
    for k, v in entry.items():
        if not isinstance(v, str):
            raise MalformedSafetensors(f"__metadata__[{k!r}] is a {type(v).__name__}; expected a string")
        _check_text(f"__metadata__ key {k!r}", k)
        _check_text(f"__metadata__[{k!r}]", v)
    return dict(entry)


def _check_text(what: str, text: str) -> None:
    """``text`` is Unicode text (encodable as UTF-8): a JSON ``\\ud800`` escape decodes to a lone surrogate.

    Every name is later encoded (the state digest's canonical lines, messages); a lone surrogate made
    that raise ``UnicodeEncodeError`` in the parent instead of a refusal (red team 10). The
    safetensors library refuses such a header too.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedSafetensors(
            f"{what} holds a lone surrogate escape; expected Unicode text (a header is UTF-8)"
        ) from None


def _is_uint(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _U64_MAX


def _tensor(name: str, entry: object) -> TensorInfo:
    _check_text(f"tensor name {name!r}", name)
    if not isinstance(entry, dict):
        raise MalformedSafetensors(f"tensor {name!r} is a {type(entry).__name__}; expected an object")
    keys = set(entry)
    if keys != {"dtype", "shape", "data_offsets"}:
        raise MalformedSafetensors(
            f"tensor {name!r} has keys {sorted(keys)}; expected exactly dtype, shape, data_offsets"
        )
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise MalformedSafetensors(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_uint(d) for d in shape):
        raise MalformedSafetensors(f"tensor {name!r} shape {shape!r} is not a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_uint(o) for o in offsets):
        raise MalformedSafetensors(f"tensor {name!r} data_offsets {offsets!r} is not two non-negative integers")
    begin, end = offsets
    if end < begin:
        raise MalformedSafetensors(f"tensor {name!r} data_offsets end {end} is before begin {begin}")
    count = 1
    for d in shape:
        count *= d
        if count > _U64_MAX:
            raise MalformedSafetensors(f"tensor {name!r} shape {shape} overflows 64-bit element count")
    bits = count * DTYPE_BITS[dtype]
    if bits > _U64_MAX or bits % 8:
        raise MalformedSafetensors(
            f"tensor {name!r} size in bytes of shape {shape} x {dtype} overflows or is fractional"
        )
    if bits // 8 != end - begin:
        raise MalformedSafetensors(
            f"tensor {name!r}: shape {shape} x {dtype} is {bits // 8} bytes, data_offsets span {end - begin}"
        )
    _check_torch_shape(name, shape)
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def _check_torch_shape(name: str, shape: list[int]) -> None:
    """Check 5, last part: torch can build a tensor of ``shape`` (what every loader of the file does next).

    torch computes contiguous strides as products of the trailing dimensions with zeros
    counted as one, in signed 64-bit arithmetic. A zero-element tensor declares no bytes, so
    the size check alone let ``[0, 2**63]`` or ``[0, 2**62, 4]`` through, and the loader then
    raised ``TypeError``/``RuntimeError`` instead of a refusal (found by
    tests/fuzz/test_fuzz_safetensors.py).
    """
    span = 1
    for d in shape:
        span *= max(d, 1)
        if span > _I64_MAX:
            raise MalformedSafetensors(
                f"tensor {name!r} shape {shape[:8]}{'...' if len(shape) > 8 else ''} spans more than 2**63 - 1 "
                "elements (zero-sized dimensions counted as 1); torch cannot represent it"
            )


def _check_layout(tensors: list[TensorInfo], data_bytes: int) -> None:
    pos = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin < pos:
            raise MalformedSafetensors(f"tensor {t.name!r} [{t.begin}, {t.end}) overlaps the previous tensor")
        if t.begin > pos:
            raise MalformedSafetensors(f"gap of {t.begin - pos} bytes before tensor {t.name!r}")
        pos = t.end
    if pos > data_bytes:
        raise MalformedSafetensors(f"tensor data ends at {pos}, past the {data_bytes}-byte data section")
    if pos < data_bytes:
        raise MalformedSafetensors(f"{data_bytes - pos} trailing bytes after the last tensor")
