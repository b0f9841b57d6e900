"""Attacks: a hostile sandbox child makes the parent pay for what it sends (finding 4c).

Every frame type has its own header and body caps, checked on the length prefix before the
header is read; every header is scanned for depth, item count and string size before it is
parsed (:mod:`securehub._util.strict_json`). Protocol-level cases use a fake child on a socketpair;
one case goes through the real sandbox with a probe child, one through ``securehub.load`` with a
malicious hubconf that forges a frame on its own channel.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.errors import SandboxProtocol, SecureHubError
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import Frame, recv_frame
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._sandbox_helpers import (  # noqa: F401 - pytest fixtures by name
    PROBE_CONFIG,
    PROBE_FRAMING,
    out_dir_fixture,
    refused_by_parent,
    tree_fixture,
    write_probe,
)
from tests._servers import GitServer

_MiB = 1 << 20
_PREFIX = struct.Struct(">QI")


def _frame_bytes(header: bytes, body: bytes = b"") -> bytes:
    return _PREFIX.pack(4 + len(header) + len(body), len(header)) + header + body


def _header(ftype: str, meta: object, size: int | None = None) -> bytes:
    """A compact ``{"type", "meta"}`` header, padded with JSON whitespace to exactly ``size`` bytes."""
    raw = json.dumps({"type": ftype, "meta": meta}, separators=(",", ":")).encode()
    if size is None:
        return raw
    assert len(raw) <= size, (ftype, len(raw), size)
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def _receive(data: bytes, op: m.Op, *, close: bool = True, deadline_s: float = 20.0) -> Frame:
    """What the parent's receiver makes of ``data`` sent by a fake child during ``op``."""
    child, parent = socket.socketpair()

    def send() -> None:
        try:
            child.sendall(data)
            if close:
                child.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the parent stopped reading: that is the point of most cases

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        return recv_frame(
            parent,
            max_body_bytes=1 << 62,
            max_header_bytes=1 << 62,
            deadline=time.monotonic() + deadline_s,
            limits=m.frame_limits_for(op),
        )
    finally:
        parent.close()
        sender.join(timeout=10)
        child.close()


def _refused(data: bytes, op: m.Op, fragment: str, **kw: object) -> SandboxProtocol:
    with pytest.raises(SandboxProtocol) as info:
        _receive(data, op, **kw)  # type: ignore[arg-type]
    assert info.value.code == "sandbox-protocol"
    assert fragment in info.value.message, info.value.message
    return info.value


FETCH_META = {
    "url": "https://x.example/a.pth",
    "kind": "download",
    "file_name": None,
    "hash_prefix": None,
    "check_hash": False,
}
NODE = {
    "class": "torch.nn.modules.linear:Linear",
    "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
    "training": False,
    "reconstructible": True,
    "args": [1, 1],
    "kwargs": {},
    "children": {},
    "attrs": {},
}
CONFIG = {"format": "securehub-config/1", "root": NODE, "aliases": {}}

# (op, frame type, a valid meta for it)
PER_TYPE = [
    ("load", m.FETCH, FETCH_META),
    (
        "load",
        m.NESTED_LOAD,
        {"repo_or_dir": "o/r:v1", "model": "m", "args": [], "kwargs": {}, "source": "github", "force_reload": False},
    ),
    ("load", m.ERROR, {"code": "entrypoint-error", "message": "x"}),
    ("load", m.EXPORT, {"format": m.EXPORT_FORMAT, "state": {}, "constants": {}, "parameters": []}),
    ("load", m.RESULT, {"config": CONFIG}),
    ("list", m.NAMES, {"names": ["a"]}),
    ("help", m.DOC, {"doc": "d"}),
    ("convert", m.CONVERTED, {"format": m.CONVERT_FORMAT, "containers": [], "root": ["c", 0], "extras": {}}),
]


# --------------------------------------------------------------------------- the 60 MB fetch header

_BOMB_SCRIPT = r"""
import json, resource, socket, struct, sys, threading, time
from securehub.errors import SandboxProtocol
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import recv_frame

N = 60 * 1024 * 1024
head = b'{"type":"fetch","meta":{"url":"'
chunk = b"a" * (1 << 20)
child, parent = socket.socketpair()

def send():
    try:
        child.sendall(struct.pack(">QI", 4 + N, N) + head)
        left = N - len(head)
        while left > 0:
            child.sendall(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    except OSError:
        pass

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
threading.Thread(target=send, daemon=True).start()
code = None
try:
    recv_frame(parent, max_body_bytes=1 << 62, max_header_bytes=1 << 62, deadline=time.monotonic() + 60,
               limits=m.frame_limits_for("load"))
except SandboxProtocol as exc:
    code = exc.code
parent.close()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "delta_kib": after - before}))
"""


def test_fetch_header_bomb_is_refused_on_its_length_and_costs_no_memory() -> None:
    """A 60 MB ``fetch`` header (it used to cost the parent 1.5 GiB) is refused after a 128-byte peek."""
    proc = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["code"] == "sandbox-protocol"
    assert out["delta_kib"] < 16 * 1024, f"the parent's peak memory grew by {out['delta_kib']} KiB"


# --------------------------------------------------------------------------- per-type caps, at the boundary


@pytest.mark.parametrize(("op", "ftype", "meta"), PER_TYPE, ids=[t for _, t, _ in PER_TYPE])
def test_per_type_header_cap_boundary(op: m.Op, ftype: str, meta: object) -> None:
    cap = m.CHILD_FRAME_LIMITS[ftype].header_bytes
    frame = _receive(_frame_bytes(_header(ftype, meta, cap)), op)
    assert frame.type == ftype and frame.meta == meta
    assert frame.body_size == 0
    frame = _receive(_frame_bytes(_header(ftype, meta, cap - 1)), op)
    assert frame.type == ftype
    # cap + 1: refused on the length prefix; only the 128-byte peek is ever read.
    _refused(_frame_bytes(_header(ftype, meta, cap + 1)), op, f"cap of {cap} bytes")


def test_request_frames_do_not_borrow_the_result_allowance() -> None:
    result_cap = m.CHILD_FRAME_LIMITS[m.RESULT].header_bytes
    assert m.CHILD_FRAME_LIMITS[m.FETCH].header_bytes <= 64 * 1024 < result_cap
    size = 1 * _MiB  # fine for a result, far too big for a fetch
    assert _receive(_frame_bytes(_header(m.RESULT, {"config": CONFIG}, size)), "load").type == m.RESULT
    _refused(_frame_bytes(_header(m.FETCH, FETCH_META, size)), "load", "'fetch' frame header of 1048576 bytes")


@pytest.mark.parametrize("ftype", [m.FETCH, m.NESTED_LOAD, m.ERROR])
def test_request_frame_with_a_body_is_refused_before_reading_it(ftype: str) -> None:
    meta = next(meta for _, t, meta in PER_TYPE if t == ftype)
    header = _header(ftype, meta)
    # Declares a 1 TiB body and sends none of it: the cap is checked on the declared length.
    data = _PREFIX.pack(4 + len(header) + (1 << 40), len(header)) + header
    _refused(data, "load", "body of 1099511627776 bytes exceeds the cap of 0", close=False)
    _refused(_frame_bytes(header, b"x"), "load", "exceeds the cap of 0")


def test_frame_type_not_allowed_in_this_op_is_refused_before_its_header() -> None:
    # A 'result' during 'list', declaring 1 MiB (within the list op's largest cap) and sending
    # only the 128 bytes of the peek: refused on them, without waiting for the rest.
    header = _header(m.RESULT, {"config": CONFIG})
    data = _PREFIX.pack(4 + _MiB, _MiB) + header[:128]
    _refused(data, "list", "unexpected 'result' frame", close=False)


def test_header_that_hides_its_type_is_refused() -> None:
    header = json.dumps({"meta": FETCH_META, "type": "fetch"}).encode()
    _refused(_frame_bytes(header), "load", "must begin with")


def test_declared_header_over_every_cap_is_refused_without_reading() -> None:
    data = _PREFIX.pack(4 + (1 << 30), 1 << 30)  # a 1 GiB header: nothing of it is ever sent
    _refused(data, "load", "exceeds the cap of", close=False)


# --------------------------------------------------------------------------- the child's config JSON


def _result_with_config_text(config_text: bytes) -> bytes:
    return _frame_bytes(b'{"type":"result","meta":{"config":' + config_text + b"}}")


def _peak_bytes_while(fn: object) -> int:
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
    except SandboxProtocol:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_deeply_nested_config_is_refused_without_recursion() -> None:
    depth = 5_000_000  # 10 MB of [[[[...]]]]: json.loads would hit RecursionError
    data = _result_with_config_text(b"[" * depth + b"]" * depth)
    err = _refused(data, "load", "deeper than")
    assert not isinstance(err.__cause__, RecursionError)


def test_config_with_a_million_items_is_refused_before_it_is_built() -> None:
    data = _result_with_config_text(b"[" + b"0," * (10**6 - 1) + b"0]")  # 2 MB, 10^6 values
    peak = _peak_bytes_while(lambda: _refused(data, "load", f"more than {m.MAX_CONFIG_ITEMS} values"))
    # A built list of 10^6 ints would be ~8 MB of list alone; what is held is the raw header bytes.
    assert peak < 3 * len(data), peak


def test_config_with_an_oversized_string_is_refused() -> None:
    text = b'"' + b"a" * (m.MAX_CONFIG_STR_BYTES + 1) + b'"'
    _refused(_result_with_config_text(text), "load", "exceeds the cap of")


def test_config_over_the_size_cap_is_refused_on_the_length_prefix() -> None:
    size = m.CHILD_FRAME_LIMITS[m.RESULT].header_bytes + 1
    data = _PREFIX.pack(4 + size, size) + b'{"type":"result","meta":{"config":'
    _refused(data, "load", f"exceeds the cap of {size - 1} bytes", close=False)


# --------------------------------------------------------------------------- the bounded reader itself

_LIMITS = JsonLimits(max_bytes=1000, max_depth=4, max_items=10, max_str_bytes=8)


@pytest.mark.parametrize(
    ("ok", "bad", "kind"),
    [
        (b"[[[[]]]]", b"[[[[[]]]]]", "depth"),
        (b"[" + b"1," * 8 + b"1]", b"[" + b"1," * 9 + b"1]", "items"),
        (b'"12345678"', b'"123456789"', "string"),
        (b'"' + b"a" * 8 + b'"' + b" " * 990, b'"' + b"a" * 8 + b'"' + b" " * 991, "size"),
        (b'{"a":1}', b'{"a":1,"a":2}', "syntax"),
        (b"[1.5]", b"[NaN]", "syntax"),
    ],
)
def test_bounded_reader_limits_at_the_boundary(ok: bytes, bad: bytes, kind: str) -> None:
    strict_loads(ok, _LIMITS)
    with pytest.raises(JsonRefusedError) as info:
        strict_loads(bad, _LIMITS)
    assert info.value.kind == kind


def test_bounded_reader_ignores_brackets_inside_strings() -> None:
    limits = JsonLimits(max_bytes=1000, max_depth=1, max_items=10, max_str_bytes=100)
    assert strict_loads(b'["[[[[[[\\"[[[["]', limits) == ['[[[[[["[[[[']


# --------------------------------------------------------------------------- through the real sandbox

PRELUDE = (
    PROBE_FRAMING
    + """
def read_call():
    (n,) = struct.unpack(">Q", recv_exact(8))
    recv_exact(n)
"""
)


def test_probe_child_sends_a_fetch_header_bomb(tmp_path: Path, tree: Path, out_dir: Path) -> None:
    probe = write_probe(
        tmp_path,
        PRELUDE,
        """
        read_call()
        n = 60 * 1024 * 1024
        try:
            raw(struct.pack(">QI", 4 + n, n) + b'{"type":"fetch","meta":{"url":"' + b"a" * (n - 31))
        except OSError:
            pass
        wait_close()
    """,
    )
    err = refused_by_parent(probe, "load", tree, out_dir, config=PROBE_CONFIG)
    assert err.code == "sandbox-protocol"
    # Over every type's cap: refused on the length prefix, before one header byte is read.
    assert "frame header of 62914560 bytes exceeds" in err.message


def test_probe_child_sends_a_deeply_nested_result(tmp_path: Path, tree: Path, out_dir: Path) -> None:
    probe = write_probe(
        tmp_path,
        PRELUDE,
        """
        read_call()
        header = b'{"type":"result","meta":{"config":' + b"[" * 4000000 + b"]" * 4000000 + b"}}"
        raw(struct.pack(">QI", 4 + len(header), len(header)) + header)
        wait_close()
    """,
    )
    err = refused_by_parent(probe, "load", tree, out_dir, config=PROBE_CONFIG)
    assert err.code == "sandbox-protocol"
    assert "deeper than" in err.message


# --------------------------------------------------------------------------- end to end: securehub.load

FORGING_HUBCONF = textwrap.dedent('''
    import gc
    import socket
    import struct

    from torch import nn

    dependencies = ["torch"]


    def _channel():
        for obj in gc.get_objects():
            if isinstance(obj, socket.socket) and obj.family == socket.AF_UNIX and obj.fileno() >= 0:
                return obj
        raise RuntimeError("no channel found")


    def forge():
        """Write a forged 8 MiB 'fetch' frame header (a result may be that big) on the child's own channel."""
        channel = _channel()
        n = 8 * 1024 * 1024
        head = b'{"type":"fetch","meta":{"url":"'
        try:
            channel.sendall(struct.pack(">QI", 4 + n, n) + head)
            chunk = b"a" * (1 << 20)
            for _ in range(8):
                channel.sendall(chunk)
        except OSError:
            pass
        return nn.Linear(1, 1)
''')


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("frames"), git_server) as e:
        yield e


@NEEDS_FULL_SANDBOX
def test_malicious_hubconf_forges_a_huge_frame_on_its_channel(env: HubEnv) -> None:
    repo = publish(env, "forger", {"hubconf.py": FORGING_HUBCONF})
    spec = env.spec(repo)
    assert securehub.list(spec, policy="default") == ["forge"]  # control; caches the tree
    before = Snapshot.take(env.hub)
    results_before = sorted(p.name for p in (env.hub / "results").glob("*")) if (env.hub / "results").exists() else []
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "forge", policy="default", verbose=False)
    assert info.value.code == "sandbox-protocol", info.value.message
    assert "'fetch' frame header of 8388608 bytes exceeds that type's cap" in info.value.message
    before.assert_unchanged(env.hub)
    results_after = sorted(p.name for p in (env.hub / "results").glob("*")) if (env.hub / "results").exists() else []
    assert results_after == results_before, "a result of the hostile child was cached"
