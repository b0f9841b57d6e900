"""Canonical JSON: the one way securehub turns a value into bytes it hashes, signs or compares.

:func:`canonical_json` guarantees, for the same value, the same bytes on every
run and machine:

* object keys sorted, no insignificant whitespace (``","`` and ``":"``), or
  with ``indent`` one fixed pretty form (``","`` and ``": "``, the form of
  hub.lock, which people review in diffs);
* UTF-8, non-ASCII characters kept as they are unless ``ascii_only``
  (then ``\\uXXXX`` escapes: audit lines stay 7-bit);
* ``NaN``/``Infinity`` refused with ``ValueError`` -- they are not JSON, and a
  digest over them could not be recomputed by any other JSON tool -- unless
  ``allow_nan`` (kept only for :func:`securehub._util.digest.args_sha256`,
  whose caller's values are refused later, with a better message, by the
  sandbox call);
* a value JSON cannot represent raises ``TypeError`` unless ``default`` maps it.

Why one function: the same form was spelled out in five places with drifting
keyword sets; a digest written by one and recomputed by another must agree
byte for byte (tests pin the digests, hub.lock pins them on disk).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["canonical_json"]


def canonical_json(
    value: object,
    *,
    ascii_only: bool = False,
    indent: int | None = None,
    allow_nan: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> bytes:
    """``value`` as canonical JSON bytes (see the module docstring for what is guaranteed)."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(
        value,
        sort_keys=True,
        separators=separators,
        indent=indent,
        ensure_ascii=ascii_only,
        allow_nan=allow_nan,
        default=default,
    )
    return text.encode("utf-8")
