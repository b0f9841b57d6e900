"""Fuzz the sandbox channel: frame streams (securehub/sandbox/wire/protocol.py) and every message schema
the parent reads from the child (securehub/sandbox/wire/messages.py), including the child's config JSON.

A hostile child controls every byte on the channel. Property: ``recv_frame`` yields frames or raises
``SandboxProtocol`` (``ChannelClosed`` is one) -- never reads past its caps, never allocates from a
length prefix (a declared 60 MB header with 100 bytes behind it costs 100 bytes) -- and each
schema parser returns its value or raises ``SandboxProtocol``. ``CallRequest.from_meta`` is the
child's parser of the parent's request: documented to raise ``ValueError``.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from securehub._util.strict_json import JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.errors import HashMismatch, SandboxProtocol, SecureHubError
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import encode_frame_header, recv_frame
from tests.fuzz._harness import json_values, mutated, run_parser

_NODE: dict[str, Any] = {
    "class": "torch.nn.modules.linear:Linear",
    "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
    "training": False,
    "reconstructible": True,
    "args": [1, 1],
    "kwargs": {"bias": True},
    "children": {},
    "attrs": {"x": 1},
    "mutated": ["x"],
    "replay": {"children": [], "attrs": {}},
}
_CONFIG: dict[str, Any] = {
    "format": m.CONFIG_FORMAT,
    "root": {**_NODE, "class": "torch.nn.modules.container:Sequential", "children": {"0": _NODE, "1": _NODE}},
    "aliases": {"a.weight": "0.weight"},
    "frozen": ["0.bias"],
}
_EXPORT = {
    "format": m.EXPORT_FORMAT,
    "state": {"w": "w", "b": "__export_state__.b"},
    "constants": {},
    "parameters": ["w"],
}
_CONVERT = {
    "format": m.CONVERT_FORMAT,
    "containers": [
        {"kind": "list", "items": [["t", "a"], ["x", "n"]]},
        {"kind": "dict", "keys": ["state", 3], "items": [["c", 0], ["t", "b"]]},
    ],
    "root": ["c", 1],
    "extras": {"n": {"float": "nan"}, "i": 7},
}
_FETCH = {"url": "https://weights.example.com/m.pth", "kind": "load_state_dict", "file_name": None,
          "hash_prefix": None, "check_hash": False}  # fmt: skip
_NESTED = {"repo_or_dir": "owner/repo:v1", "model": "net", "args": [1], "kwargs": {"k": [1, 2]}, "source": "github",
           "force_reload": False}  # fmt: skip
_CALL = m.CallRequest(op="load", tree="/t", entrypoint="e", args=(1,), kwargs={"a": [2]}, want_export=True).to_meta()

_RELAYED = {0: HashMismatch("the parent refused fetch 0")}

#: parser name -> (valid meta, parse function). Each must return a value or raise SandboxProtocol.
_PARSERS: dict[str, tuple[dict[str, Any], Any]] = {
    "messages.error": (
        {"code": "hash-mismatch", "message": "boom", "fetch_error": 0},
        lambda meta: m.parse_error(meta, _RELAYED),
    ),  # fmt: skip
    "messages.names": ({"names": ["a", "b"]}, m.parse_names),
    "messages.doc": ({"doc": "line\n\x1b[31mred"}, m.parse_doc),
    "messages.result_config": ({"config": _CONFIG}, m.parse_result_config),
    "messages.export": (_EXPORT, lambda meta: m.parse_export(meta, b"{}")),
    "messages.convert": (_CONVERT, m.parse_convert),
    "messages.fetch": (_FETCH, m.FetchRequest.from_meta),
    "messages.nested_load": (_NESTED, lambda meta: m.NestedRequest.from_meta(meta, depth=1)),
}


def _check_meta(name: str, meta: Any) -> None:
    _, parse = _PARSERS[name]
    if not isinstance(meta, dict):  # the frame parser only ever hands over an object
        meta = {"value": meta}
    run_parser(name, lambda: parse(meta), (SandboxProtocol,))


#: Regression and boundary cases (explicit examples run before the generated ones).
_KNOWN: list[tuple[str, Any]] = [
    ("messages.error", {"code": "entrypoint-error", "message": "x", "fetch_error": True}),
    ("messages.result_config", {"config": {**_CONFIG, "root": {**_NODE, "children": {"": _NODE}}}}),
    ("messages.convert", {**_CONVERT, "root": ["c", True]}),
    ("messages.convert", {**_CONVERT, "extras": {"n": 2**64}}),
    ("messages.nested_load", {**_NESTED, "kwargs": {"force_reload": 1}}),
    # TypeError (unhashable marker) escaped decode_extra; fixed in messages.decode_extra.
    ("messages.convert", {**_CONVERT, "extras": {"n": {"float": [[0], "nan"]}, "i": 7}}),
]


@pytest.mark.parametrize("case", _KNOWN, ids=[f"{n}-{i}" for i, (n, _) in enumerate(_KNOWN)])
def test_fuzz_message_schemas_known_cases(case: tuple[str, Any]) -> None:
    _check_meta(*case)


@pytest.mark.parametrize("name", sorted(_PARSERS))
@given(data=st.data())
def test_fuzz_message_schemas(name: str, data: st.DataObject) -> None:
    _check_meta(name, data.draw(mutated(_PARSERS[name][0], max_mutations=4)))


@given(json_values)
def test_fuzz_call_request_child_side(meta: Any) -> None:
    doc = meta if isinstance(meta, dict) else {"op": "load", "tree": "/t", "args": meta, "kwargs": {}}
    run_parser("messages.call", lambda: m.CallRequest.from_meta(doc), (ValueError,))


@given(mutated(_CALL, max_mutations=4))
def test_fuzz_call_request_mutated(meta: Any) -> None:
    doc = meta if isinstance(meta, dict) else {"value": meta}
    run_parser("messages.call", lambda: m.CallRequest.from_meta(doc), (ValueError,))


@given(mutated({"config": _CONFIG}, max_mutations=5).map(lambda d: json.dumps(d).encode()))
@example(b'{"config": ' + b"[" * 70 + b"]" * 70 + b"}")
def test_fuzz_cached_config_json(data: bytes) -> None:
    """A cached result's config.json: the bounded reader, then the same schema as the result frame."""

    def parse() -> object:
        try:
            meta = strict_loads(data, m.CONFIG_JSON_LIMITS)
        except JsonRefusedError as exc:
            raise SandboxProtocol(str(exc)) from None  # what the result cache does with it
        if not isinstance(meta, dict):
            raise SandboxProtocol("not an object")
        return m.parse_result_config(meta)

    run_parser("config_json", parse, (SandboxProtocol,))


# --------------------------------------------------------------------------- frame streams

_TYPES = ["fetch", "nested_load", "export", "result", "error", "names", "doc", "converted", "call", "Result", ""]


@st.composite
def _frame(draw: st.DrawFn) -> bytes:
    ftype = draw(st.sampled_from(_TYPES))
    meta = draw(st.one_of(st.sampled_from([v[0] for v in _PARSERS.values()]), json_values))
    body = draw(st.binary(max_size=64))
    try:
        header = encode_frame_header(ftype, meta if isinstance(meta, dict) else {"v": meta}, len(body))
    except (ValueError, SecureHubError):
        header = struct.pack(">QI", 4 + 2 + len(body), 2) + b"{}"
    frame = header + body
    how = draw(st.sampled_from(["keep", "keep", "frame_len", "header_len", "truncate", "flip", "raw_header"]))
    if how == "frame_len":
        frame = struct.pack(">Q", draw(st.sampled_from([0, 3, 4, 60 << 20, 2**63, 2**64 - 1]))) + frame[8:]
    elif how == "header_len":
        frame = frame[:8] + struct.pack(">I", draw(st.sampled_from([0, 1, 60 << 20, 2**32 - 1]))) + frame[12:]
    elif how == "truncate":
        frame = frame[: draw(st.integers(0, len(frame)))]
    elif how == "flip":
        i = draw(st.integers(0, len(frame) - 1))
        frame = frame[:i] + bytes([draw(st.integers(0, 255))]) + frame[i + 1 :]
    elif how == "raw_header":
        raw = draw(st.binary(max_size=200))
        frame = struct.pack(">QI", 4 + len(raw), len(raw)) + raw
    return frame


def _receive_all(stream: bytes, op: m.Op) -> None:
    a, b = socket.socketpair()
    try:
        a.sendall(stream)
        a.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 10
        limits = m.frame_limits_for(op)
        for _ in range(8):
            frame = recv_frame(b, max_body_bytes=1 << 20, deadline=deadline, limits=limits)
            name = {"error": "messages.error", "names": "messages.names", "doc": "messages.doc",
                    "result": "messages.result_config", "export": "messages.export", "converted": "messages.convert",
                    "fetch": "messages.fetch", "nested_load": "messages.nested_load"}[frame.type]  # fmt: skip
            _check_meta(name, frame.meta)
    finally:
        a.close()
        b.close()


@given(st.lists(_frame(), min_size=1, max_size=4).map(b"".join), st.sampled_from(["load", "list", "help", "convert"]))
@example(struct.pack(">QI", 4 + (60 << 20), 60 << 20) + b'{"type": "fetch", "meta": {}}', "load")
@example(struct.pack(">QI", 4 + 100, 100) + b"[" * 100, "load")
def test_fuzz_frame_stream(stream: bytes, op: m.Op) -> None:
    run_parser("protocol.frames", lambda: _receive_all(stream, op), (SandboxProtocol,))


@given(st.binary(max_size=300))
def test_fuzz_frame_random_bytes(stream: bytes) -> None:
    run_parser("protocol.frames", lambda: _receive_all(stream, "load"), (SandboxProtocol,))
