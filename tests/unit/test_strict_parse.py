"""parse_strict: the one strict JSON parser behind frames, cached results, hub.lock and safetensors headers."""

from __future__ import annotations

import pytest

from securehub._util.strict_json import JsonRefusedError, parse_strict
from securehub.errors import LockInvalid
from securehub.verify.safetensors_check import MalformedSafetensors, _validate


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_constants_refused_with_kind(constant: str) -> None:
    with pytest.raises(JsonRefusedError) as info:
        parse_strict('{"a": [' + constant + "]}")
    assert info.value.kind == "syntax" and info.value.key is None and constant.lstrip("-") in str(info.value)


def test_duplicate_key_refused_with_kind_and_key() -> None:
    with pytest.raises(JsonRefusedError) as info:
        parse_strict('{"x": {"k": 1, "k": 2}}')
    assert info.value.kind == "syntax" and info.value.key == "k"


def test_plain_json_parses() -> None:
    assert parse_strict('{"a": [1, 2.5, null, true, "s"]}') == {"a": [1, 2.5, None, True, "s"]}


def test_safetensors_header_uses_it() -> None:
    raw = b'{"__metadata__": {"a": "1", "a": "2"}}'
    with pytest.raises(MalformedSafetensors, match="repeats the key 'a'"):
        _validate(raw, 8 + len(raw), 1 << 20)


def test_lockfile_constant_message_is_consistent(tmp_path) -> None:
    from securehub.config.lockfile import Lockfile

    path = tmp_path / "hub.lock"
    path.write_text('{"version": NaN}')
    with pytest.raises(LockInvalid, match="the constant NaN"):
        Lockfile.load(path)
