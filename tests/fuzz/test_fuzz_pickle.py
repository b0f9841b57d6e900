"""Fuzz the static pickle scanner (securehub/verify/pickle/scan.py, ops.py): opcode streams,
legacy streams and zip/tar containers.

Property: ``scan_bytes`` always returns a ``ScanResult`` -- every problem is a finding, never an
exception -- within the time and memory bounds, whatever the bytes; ``check`` raises only
``unsafe-pickle``. Plain data pickled at any protocol scans clean, and a stream that calls a
non-allowlisted global is never clean, wherever it is hidden (mutations included).
"""

from __future__ import annotations

import io
import pickle
import pickletools
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from hypothesis import example, given
from hypothesis import strategies as st

from securehub.errors import UnsafePickle
from securehub.verify.pickle.scan import ScanResult, check, scan_bytes
from tests._pickle_fixtures import Member, ZipSpec, billion_laughs, reduce_call, torch_members, write_zip
from tests.fuzz._harness import run_parser

_OPCODES = [op.code.encode("latin-1") for op in pickletools.opcodes]

_PLAIN: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False),
        st.text(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
    ),
    max_leaves=15,
)


def _scan(data: bytes) -> ScanResult:
    result = run_parser("pickle_scan", lambda: scan_bytes(data), ())
    assert isinstance(result, ScanResult)
    return result


def _mutate(data: bytes, draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["keep", "truncate", "flip", "insert", "splice"]))
    if not data or how == "keep":
        return data
    i = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        return data[:i]
    if how == "flip":
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    if how == "insert":
        return data[:i] + draw(st.sampled_from(_OPCODES)) + draw(st.binary(max_size=9)) + data[i:]
    return data[:i] + data[i:] * draw(st.integers(1, 20))


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["plain", "opcodes", "evil", "laughs"]))
    if kind == "plain":
        data = pickle.dumps(draw(_PLAIN), protocol=draw(st.integers(0, 5)))
    elif kind == "opcodes":
        parts = draw(st.lists(st.tuples(st.sampled_from(_OPCODES), st.binary(max_size=9)), max_size=40))
        data = b"".join(op + arg for op, arg in parts) + b"."
    elif kind == "evil":
        data = reduce_call("os", "system", "id", protocol=draw(st.integers(0, 5)))
    else:
        data = billion_laughs(draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    return _mutate(data, draw)


@given(_PLAIN, st.integers(0, 5))
def test_fuzz_pickle_plain_data_scans_clean(value: Any, protocol: int) -> None:
    result = _scan(pickle.dumps(value, protocol=protocol))
    assert result.clean, result.lines()


@given(_streams())
@example(b"\x80\x05" + b"(" * 100_000 + b".")
@example(b"\x80\x02]q\xff\xff\xff\xff\x7f.")
@example(b"\x80\x04\x95" + b"\xff" * 8 + b".")
@example(b"\x80\x02" + b"\x8a\xff" + b"\x01" * 255 + b".")
@example(b"\x80\x02" + b"\x8b\xff\xff\xff\x7f" + b".")
def test_fuzz_pickle_streams(data: bytes) -> None:
    _scan(data)


@given(st.integers(0, 5), st.sampled_from(["prefix", "suffix", "middle"]), _PLAIN)
def test_fuzz_pickle_hidden_global_is_never_clean(protocol: int, where: str, value: Any) -> None:
    evil = reduce_call("os", "system", "id", protocol=protocol)
    plain = pickle.dumps(value, protocol=protocol)
    data = {"prefix": evil + plain, "suffix": plain + evil, "middle": plain[:-1] + evil}[where]
    assert not _scan(data).clean


@st.composite
def _containers(draw: st.DrawFn) -> bytes:
    value = {"w": torch.zeros(draw(st.integers(0, 3))), "n": draw(_PLAIN)}
    buf = io.BytesIO()
    torch.save(value, buf)
    members = torch_members(buf.getvalue())
    kind = draw(st.sampled_from(["zip", "zip-mutated", "zip-hidden", "tar", "raw-mutated"]))
    if kind == "zip":
        return write_zip(ZipSpec(members))
    if kind == "zip-hidden":
        evil = Member("archive/data.pkl", reduce_call("os", "system", "id"), in_central=False)
        return write_zip(ZipSpec([evil, *members]))
    if kind == "zip-mutated":
        i = draw(st.integers(0, len(members) - 1))
        m = members[i]
        members[i] = Member(
            draw(st.sampled_from([m.name, "../x", "/abs", m.name + "\x00", "archive/data.pkl"])),
            _mutate(m.data, draw),
            method=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, 99])),
            flags=draw(st.sampled_from([0, 1, 8])),
            declared_size=draw(st.sampled_from([None, 0, 2**32 - 1])),
            crc=draw(st.sampled_from([None, 0])),
        )
        return write_zip(ZipSpec(members, prefix=draw(st.sampled_from([b"", b"\x80\x02N.", b"junk"]))))
    if kind == "tar":
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for m in members[: draw(st.integers(1, len(members)))]:
                info = tarfile.TarInfo(m.name)
                info.size = len(m.data)
                tar.addfile(info, io.BytesIO(m.data))
        return _mutate(out.getvalue(), draw)
    return _mutate(buf.getvalue(), draw)


@given(_containers())
def test_fuzz_pickle_containers(data: bytes) -> None:
    result = _scan(data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pt"
        path.write_bytes(data)
        checked = run_parser("pickle_scan.check", lambda: check(path), (UnsafePickle,))
    assert (checked is not None) == result.clean


@given(st.binary(max_size=512))
def test_fuzz_pickle_random_bytes(data: bytes) -> None:
    _scan(data)
