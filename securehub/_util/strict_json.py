"""Strict, bounded JSON reading of untrusted bytes (sandbox frames, cached results).

:func:`loads` guarantees, or raises :class:`JsonRefusedError` (a ``ValueError``;
callers turn it into their own error code):

1. the document is at most ``limits.max_bytes`` bytes -- checked first, on
   the length alone;
2. before anything is decoded or built, one linear, non-recursive scan over
   the raw bytes finds nesting deeper than ``limits.max_depth``, more than
   ``limits.max_items`` values, or a string literal longer than
   ``limits.max_str_bytes`` raw bytes, and stops at the first breach;
3. only then is the text decoded (strict UTF-8) and parsed, refusing
   ``NaN``/``Infinity`` and duplicate object keys.

Why a scan before ``json.loads`` and not a check after it: ``json.loads``
recurses once per nesting level and builds every value before a caller can
look at it. A 60 MB header of ``[[[[...`` or of a million tiny items costs
gigabytes of Python objects (red-team finding 4c) or a ``RecursionError``.
The scan allocates nothing per token that outlives the token, so the cost of
a refused document is a pass over its bytes.

What counts: ``items`` is the number of JSON values (every array element,
object member value, and the top-level value), bounded from above by
``containers + commas + 1``; a string's size is its raw length between the
quotes (escapes included), which bounds the decoded length from above.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["JsonLimits", "JsonRefusedError", "loads", "parse_strict"]


class JsonRefusedError(ValueError):
    """The document is not strict JSON, or breaks one of the limits.

    ``kind`` says which: ``size``, ``depth``, ``items``, ``string`` or ``syntax``
    (which includes ``NaN``/``Infinity`` and duplicate keys; for a duplicate key
    ``key`` names it, otherwise ``key`` is ``None``).
    """

    def __init__(self, message: str, kind: str = "syntax", *, key: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.key = key


@dataclass(frozen=True)
class JsonLimits:
    """Bounds for one kind of document; all must be positive."""

    max_bytes: int
    max_depth: int
    max_items: int
    max_str_bytes: int

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_depth", "max_items", "max_str_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"JsonLimits.{name} must be a positive int, got {value!r}")


# A whole string literal (the unrolled form never backtracks), or one structural byte.
# Numbers, literals and whitespace are skipped by finditer; they cannot open or close a level.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]', re.DOTALL)


def check_bounds(data: bytes, limits: JsonLimits) -> None:
    """Refuse ``data`` if its nesting, value count or any string exceeds ``limits`` (size not checked).

    One linear scan of the raw bytes, no recursion and nothing kept: callers that need their own
    parser (hub.lock, for its line/column messages) run it before ``json.loads``.
    """
    depth = 0
    items = 1
    for match in _TOKEN.finditer(data):
        tok = match.group()
        first = tok[0]
        if first == 0x22:  # '"'
            if len(tok) - 2 > limits.max_str_bytes:
                raise JsonRefusedError(
                    f"a string of {len(tok) - 2} bytes at byte {match.start()} exceeds the cap of "
                    f"{limits.max_str_bytes} bytes",
                    "string",
                )
        elif first in (0x5B, 0x7B):  # '[' '{'
            depth += 1
            items += 1
            if depth > limits.max_depth:
                raise JsonRefusedError(
                    f"nesting deeper than {limits.max_depth} levels at byte {match.start()}", "depth"
                )
        elif first == 0x2C:  # ','
            items += 1
        else:
            depth -= 1
        if items > limits.max_items:
            raise JsonRefusedError(f"more than {limits.max_items} values (at byte {match.start()})", "items")


def _reject_constant(name: str) -> Any:
    raise JsonRefusedError(f"the constant {name} (expected plain JSON numbers)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Reviewers (and other parsers) may see one value while json keeps the other: refuse.
            raise JsonRefusedError(f"an object repeats the key {key!r} (expected unique keys)", key=key)
        out[key] = value
    return out


def parse_strict(text: str) -> Any:
    """``json.loads(text)``, refusing ``NaN``/``Infinity`` and duplicate object keys.

    The one strict parser: :func:`loads` and the readers that need their own
    error reporting (hub.lock, safetensors headers) call it. Raises
    :class:`JsonRefusedError` (``kind`` ``syntax``; ``key`` set for a
    duplicate) for those; anything else ``json.loads`` raises (``json.JSONDecodeError``,
    ``ValueError``, ``RecursionError``) propagates unchanged. No bounds are
    checked here: run :func:`check_bounds` first on untrusted bytes.
    """
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)


def loads(data: bytes, limits: JsonLimits) -> Any:
    """Parse ``data`` under ``limits`` (see the module docstring); raises :class:`JsonRefusedError`."""
    if len(data) > limits.max_bytes:
        raise JsonRefusedError(f"a document of {len(data)} bytes exceeds the cap of {limits.max_bytes} bytes", "size")
    # The scan and json agree on where every string starts and ends; a broken (unterminated)
    # string only makes the scan over-count, and json.loads then refuses the document anyway.
    check_bounds(data, limits)
    try:
        text = data.decode("utf-8")
        return parse_strict(text)
    except JsonRefusedError:
        raise
    except UnicodeDecodeError as exc:
        raise JsonRefusedError(f"invalid UTF-8 at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise JsonRefusedError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # e.g. int too long; recursion is unreachable after check_bounds
        raise JsonRefusedError(f"invalid JSON ({exc.__class__.__name__}: {exc})") from None
