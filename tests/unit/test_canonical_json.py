"""canonical_json: one function, the exact bytes every former spelling produced (digests are pinned)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pytest

from securehub._util.canonical import canonical_json
from securehub._util.digest import args_sha256

_SAMPLE: dict[str, Any] = {
    "z": [1, 2.5, None, True, 'é\u202e\n"q"'],
    "a": {"nested": {"b": 1, "a": [{"y": 0, "x": -1}]}},
    "ünï": "snowman ☃",
}


def test_compact_utf8_matches_the_former_spelling() -> None:
    legacy = json.dumps(_SAMPLE, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert canonical_json(_SAMPLE) == legacy.encode("utf-8")


def test_ascii_only_matches_the_former_spelling() -> None:
    legacy = json.dumps(_SAMPLE, sort_keys=True, separators=(",", ":"))
    out = canonical_json(_SAMPLE, ascii_only=True)
    assert out == legacy.encode("utf-8")
    assert out.isascii()


def test_indent_matches_the_former_hub_lock_spelling() -> None:
    legacy = json.dumps(_SAMPLE, sort_keys=True, indent=2, ensure_ascii=False).encode("utf-8")
    assert canonical_json(_SAMPLE, indent=2) == legacy


def test_key_order_does_not_change_the_bytes() -> None:
    reordered = {"ünï": _SAMPLE["ünï"], "a": _SAMPLE["a"], "z": _SAMPLE["z"]}
    assert canonical_json(reordered) == canonical_json(_SAMPLE)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": [bad]})


def test_values_json_cannot_represent_are_refused_without_default() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": object()})


def test_args_sha256_is_unchanged() -> None:
    args, kwargs = (1, "two", [3.0]), {"pretrained": True, "name": "ü", "nan": math.nan, "obj": b"x"}
    legacy = json.dumps({"args": list(args), "kwargs": kwargs}, sort_keys=True, separators=(",", ":"), default=repr)
    assert args_sha256(args, kwargs) == hashlib.sha256(legacy.encode("utf-8")).hexdigest()
