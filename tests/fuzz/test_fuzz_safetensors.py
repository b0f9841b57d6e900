"""Fuzz safetensors headers: the checker (securehub/verify/safetensors_check.py) and the verified
loader (securehub/verify/fast_safetensors.py).

Property: ``check_safetensors`` returns a header or raises ``MalformedSafetensors`` (its callers turn
it into ``format-not-allowed`` or ``sandbox-protocol``); ``load_verified`` on a file whose digest and
size are the expected ones returns tensors or raises ``format-not-allowed`` -- and what it returns is
exactly what the reference ``safetensors`` library reads (a differential check). No header makes
either allocate from the sizes it declares.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from securehub.errors import FormatNotAllowed
from securehub.verify.fast_safetensors import load_verified
from securehub.verify.safetensors_check import DTYPE_BITS, MalformedSafetensors, check_safetensors
from tests.fuzz._harness import mutated, run_parser

_DTYPES = sorted(DTYPE_BITS) + ["F128", "f32", ""]


@st.composite
def _header(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    """A well-formed header and its data section, from drawn tensor dtypes and shapes."""
    header: dict[str, Any] = {}
    data = b""
    for i in range(draw(st.integers(0, 4))):
        dtype = draw(st.sampled_from(["F32", "I64", "U8", "BOOL", "F16", "BF16", "I8", "F64"]))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        count = 1
        for d in shape:
            count *= d
        nbytes = count * DTYPE_BITS[dtype] // 8
        header[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
        data += bytes([0] * nbytes) if dtype == "BOOL" else draw(st.binary(min_size=nbytes, max_size=nbytes))
    if draw(st.booleans()):
        header["__metadata__"] = {"format": "pt"}
    return header, data


def _file(header: Any, data: bytes, *, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


@st.composite
def _files(draw: st.DrawFn) -> bytes:
    header, data = draw(_header())
    how = draw(st.sampled_from(["keep", "mutate", "mutate", "length", "truncate", "extend", "flip"]))
    if how == "mutate":
        extra = {"__x__": {"dtype": draw(st.sampled_from(_DTYPES)), "shape": [1], "data_offsets": [0, 4]}}
        return _file(draw(mutated({**header, **extra} if draw(st.booleans()) else header, max_mutations=3)), data)
    blob = _file(header, data)
    if how == "length":
        length = draw(st.sampled_from([0, 1, 2, 60 << 20, (100 << 20) + 1, 2**63, 2**64 - 1]))
        return struct.pack("<Q", length) + blob[8:]
    if how == "truncate":
        return blob[: draw(st.integers(0, len(blob)))]
    if how == "extend":
        return blob + draw(st.binary(min_size=1, max_size=16))
    if how == "flip" and blob:
        i = draw(st.integers(0, len(blob) - 1))
        return blob[:i] + bytes([draw(st.integers(0, 255))]) + blob[i + 1 :]
    return blob


def _reference(blob: bytes) -> dict[str, torch.Tensor] | None:
    try:
        return safetensors.torch.load(blob)
    except Exception:  # noqa: BLE001 - the reference's refusal, whatever its type, is just "refused"
        return None


def _bytes_of(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1).view(torch.uint8)  # bytes, so NaN payloads compare equal


def _check_and_load(blob: bytes) -> None:
    header = run_parser("safetensors.check", lambda: check_safetensors(blob), (MalformedSafetensors,))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.safetensors"
        path.write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        tensors = run_parser(
            "safetensors.load_verified",
            lambda: load_verified(path, expected_sha256=digest, expected_size=len(blob)),
            (FormatNotAllowed,),
        )
    if header is None:
        assert tensors is None, "load_verified accepted what check_safetensors refuses"
        return
    if tensors is not None:
        reference = _reference(blob)
        assert reference is not None, "accepted a file the reference safetensors library refuses"
        assert set(reference) == set(tensors)
        for name, tensor in tensors.items():
            assert tensor.dtype == reference[name].dtype and tensor.shape == reference[name].shape
            assert torch.equal(_bytes_of(tensor), _bytes_of(reference[name]))


@given(_files())
@example(_file({"a": {"dtype": "F32", "shape": [0, 2**64 - 1], "data_offsets": [0, 0]}}, b""))
@example(_file({"a": {"dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]}}, b""))
@example(_file({"a": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}, b""))
@example(_file({"a": {"dtype": "F4", "shape": [1], "data_offsets": [0, 0]}}, b""))
@example(struct.pack("<Q", 60 << 20) + b"{}")
@example(_file({}, b"", length=2) + b"[" * 100_000)
def test_fuzz_safetensors_structured(blob: bytes) -> None:
    _check_and_load(blob)


@given(st.binary(max_size=256))
def test_fuzz_safetensors_random_bytes(blob: bytes) -> None:
    _check_and_load(blob)
