"""Malformed safetensors headers, each refused before any load, with a precise reason."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub
from securehub.errors import FormatNotAllowed, SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.verify.fast_safetensors import load_verified
from securehub.verify.safetensors_check import (
    MAX_HEADER_VALUES,
    MalformedSafetensors,
    check_safetensors,
    check_safetensors_artifact,
)
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer
from tests.attacks.test_malicious_checkpoints_e2e import HUBCONF as FETCH_HUBCONF


def _file(header: bytes | str | dict[str, object], data: bytes = b"") -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header)
    raw = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(raw)) + raw + data


def _t(dtype: str = "F32", shape: list[int] | None = None, offsets: list[int] | None = None) -> dict[str, object]:
    return {"dtype": dtype, "shape": [2] if shape is None else shape, "data_offsets": offsets or [0, 8]}


def _refused(data: bytes, match: str, tmp_path: Path | None = None) -> None:
    with pytest.raises(MalformedSafetensors, match=match):
        check_safetensors(data)
    with pytest.raises(FormatNotAllowed) as err:
        check_safetensors_artifact(data)
    assert err.value.code == "format-not-allowed"
    if tmp_path is not None:
        path = tmp_path / "x.safetensors"
        path.write_bytes(data)
        with pytest.raises(MalformedSafetensors, match=match):
            check_safetensors(path)


def test_file_shorter_than_length_prefix() -> None:
    _refused(b"\x01\x00", "at least the 8-byte header length")


def test_header_length_beyond_file(tmp_path: Path) -> None:
    _refused(struct.pack("<Q", 1000) + b"{}", "past the end", tmp_path)


def test_header_length_over_100_mb(tmp_path: Path) -> None:
    _refused(struct.pack("<Q", 100 * 1024 * 1024 + 1) + b"{}", "exceeds the", tmp_path)


def test_header_length_u64_max() -> None:
    _refused(struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds the")


def test_invalid_utf8() -> None:
    _refused(_file(b'{"a\xff": 1}'), "UTF-8")


def test_non_object_json() -> None:
    _refused(_file("[1, 2]"), "does not start with")
    _refused(_file('{"a": 1} trailing'), "not valid JSON")


def test_duplicate_keys() -> None:
    t = json.dumps(_t())
    _refused(_file('{"w": ' + t + ', "w": ' + t + "}", b"\0" * 8), "repeats the key 'w'")


def test_duplicate_keys_nested() -> None:
    _refused(
        _file('{"w": {"dtype": "F32", "dtype": "I32", "shape": [2], "data_offsets": [0, 8]}}', b"\0" * 8),
        "repeats the key 'dtype'",
    )


def test_nan_constant() -> None:
    _refused(_file('{"__metadata__": {"a": NaN}}'), "the constant NaN")


def test_unknown_dtype() -> None:
    _refused(_file({"w": _t(dtype="PICKLE")}, b"\0" * 8), "unknown dtype")


def test_negative_shape() -> None:
    _refused(_file({"w": _t(shape=[-2])}, b"\0" * 8), "non-negative integers")


def test_float_or_bool_shape() -> None:
    _refused(_file({"w": _t(shape=[2.0])}, b"\0" * 8), "non-negative integers")  # type: ignore[list-item]
    _refused(_file({"w": _t(shape=[True, 8])}, b"\0" * 8), "non-negative integers")


def test_shape_times_dtype_overflow() -> None:
    # 2**32 * 2**32 elements overflow 64 bits; a wrapping implementation sees 0 == 0 bytes.
    _refused(_file({"w": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}), "overflows")


def test_shape_times_dtype_size_overflow() -> None:
    # 2**62 elements fit 64 bits, the byte count 2**64 does not (wraps to 0).
    _refused(_file({"w": {"dtype": "F32", "shape": [2**62], "data_offsets": [0, 0]}}), "overflows")


def test_size_mismatch() -> None:
    _refused(_file({"w": _t(shape=[3])}, b"\0" * 8), "12 bytes, data_offsets span 8")


def test_offsets_out_of_range() -> None:
    _refused(_file({"w": _t(offsets=[0, 8])}, b"\0" * 4), "past the 4-byte data section")


def test_overlapping_offsets() -> None:
    _refused(_file({"a": _t(offsets=[0, 8]), "b": _t(offsets=[4, 12])}, b"\0" * 12), "overlaps")


def test_same_offsets_twice() -> None:
    _refused(_file({"a": _t(offsets=[0, 8]), "b": _t(offsets=[0, 8])}, b"\0" * 8), "overlaps")


def test_gap_between_tensors() -> None:
    _refused(_file({"a": _t(offsets=[0, 8]), "b": _t(offsets=[12, 20])}, b"\0" * 20), "gap of 4 bytes")


def test_trailing_bytes() -> None:
    _refused(_file({"a": _t()}, b"\0" * 9), "1 trailing bytes")


def test_end_before_begin() -> None:
    _refused(_file({"a": _t(offsets=[8, 0])}, b"\0" * 8), "before begin")


def test_offsets_not_a_pair() -> None:
    _refused(
        _file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 16]}}, b"\0" * 8),
        "two non-negative",
    )


def test_extra_or_missing_tensor_keys() -> None:
    _refused(_file({"a": {**_t(), "exec": "x"}}, b"\0" * 8), "expected exactly")
    _refused(_file({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "expected exactly")


def test_metadata_non_string() -> None:
    _refused(_file({"__metadata__": {"epoch": 3}}), "expected a string")
    _refused(_file({"__metadata__": ["a"]}), "expected an object of strings")


def test_deeply_nested_header() -> None:
    _refused(_file('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"), "refused before parsing: nesting deeper than 3")


def test_header_nested_one_level_too_deep_is_refused_before_parsing() -> None:
    _refused(_file({"a": {"dtype": "F32", "shape": [[2]], "data_offsets": [0, 8]}}), "nesting deeper than 3")


def test_header_of_millions_of_tiny_values_is_refused_before_parsing(tmp_path: Path) -> None:
    """A 6 MB header holding three million zeros: json would build a three-million-item list (and
    a 100 MiB one fifty million, gigabytes of objects). The value count is bounded in one scan of
    the raw bytes, before anything is parsed."""
    zeros = ",".join(["0"] * (MAX_HEADER_VALUES + 1))
    data = _file('{"a": {"dtype": "F32", "shape": [' + zeros + '], "data_offsets": [0, 0]}}')
    _refused(data, f"refused before parsing: more than {MAX_HEADER_VALUES} values", tmp_path)


def test_header_just_under_the_value_cap_is_parsed(tmp_path: Path) -> None:
    # The same header with fewer values gets past the bound and is judged on its merits (a
    # zero-element tensor is well-formed): the cap is the one named, not a smaller one.
    zeros = ",".join(["0"] * (MAX_HEADER_VALUES - 10))
    data = _file('{"a": {"dtype": "F32", "shape": [' + zeros + '], "data_offsets": [0, 0]}}')
    assert len(check_safetensors(data).tensors[0].shape) == MAX_HEADER_VALUES - 10


# ---------------------------------------------------------------- shapes torch cannot build


@pytest.mark.parametrize("shape", [[0, 2**63], [0, 2**64 - 1], [0, 2**62, 4], [2**62, 0, 2**62], [0] + [2**8] * 8])
def test_zero_element_tensor_with_a_shape_torch_cannot_build(tmp_path: Path, shape: list[int]) -> None:
    """A zero-element tensor declares no bytes, so the size check let any dimensions through; every
    loader then raised ``TypeError``/``RuntimeError`` building it (found by
    tests/fuzz/test_fuzz_safetensors.py). It is malformed, and the verified loader refuses it too."""
    data = _file({"w": _t(shape=shape, offsets=[0, 0])})
    _refused(data, "torch cannot represent it", tmp_path)
    path = tmp_path / "x.safetensors"
    with pytest.raises(FormatNotAllowed):
        load_verified(path, expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))


def test_largest_buildable_zero_element_shape_is_accepted() -> None:
    check_safetensors(_file({"w": _t(shape=[0, 2**63 - 1], offsets=[0, 0])}))


HUBCONF = """
import json
import struct
import sys

from torch import nn

dependencies = ["torch"]
_runtime = sys.modules["securehub.sandbox.child.runtime"]
_honest = _runtime.state_parts


def _forged(tensors):
    # Runs in the hostile child: append a zero-byte tensor whose shape no torch can build.
    parts, keep = _honest(tensors)
    blob = b"".join(bytes(p) for p in parts)
    (n,) = struct.unpack("<Q", blob[:8])
    header, data = json.loads(blob[8:8 + n]), blob[8 + n:]
    header["evil"] = {"dtype": "F32", "shape": [0, 2**63], "data_offsets": [len(data), len(data)]}
    raw = json.dumps(header).encode()
    return [memoryview(struct.pack("<Q", len(raw)) + raw + data)], keep


_runtime.state_parts = _forged


def net():
    return nn.Linear(4, 4)
"""


@pytest.fixture(scope="module")
def git_world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("st-e2e"), git_server) as env:
        yield env


@NEEDS_FULL_SANDBOX
def test_hostile_child_state_with_an_unbuildable_shape_end_to_end(git_world: HubEnv, tmp_path: Path) -> None:
    repo = publish(git_world, "st-unbuildable-shape", {"hubconf.py": HUBCONF})
    spec = git_world.spec(repo)
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)
    before = Snapshot.take(git_world.hub, lock)
    results = git_world.hub / "results"
    results_before = sorted(results.glob("*")) if results.exists() else []
    policy = write_policy(tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"})
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "net", policy=policy, lock=lock, verbose=False)
    assert exc.value.code == "sandbox-protocol", str(exc.value)
    assert "torch cannot represent it" in str(exc.value)
    assert (sorted(results.glob("*")) if results.exists() else []) == results_before
    before.assert_unchanged(git_world.hub, lock)


@NEEDS_FULL_SANDBOX
def test_artifact_server_sends_a_deeply_nested_safetensors_header(git_world: HubEnv, tmp_path: Path) -> None:
    """A hostile artifact server's "safetensors" file whose header nests 100,000 levels deep: the
    parent's format sniffer let json's RecursionError escape (an internal error, not a refusal).
    It is ``format-not-allowed``; nothing is cached and hub.lock is byte-identical."""
    repo = publish(git_world, "st-deep-artifact", {"hubconf.py": FETCH_HUBCONF})
    spec = git_world.spec(repo)
    url = git_world.put("st/deep.safetensors", _file('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"))
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)
    before = Snapshot.take(git_world.hub, lock)
    policy = write_policy(tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"})
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "load_ckpt", url, policy=policy, lock=lock, verbose=False)
    assert exc.value.code == "format-not-allowed", str(exc.value)
    before.assert_unchanged(git_world.hub, lock)
