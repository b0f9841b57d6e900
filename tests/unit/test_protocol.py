"""Wire framing between parent and sandbox child: every frame from the child is hostile."""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from securehub.errors import SandboxProtocol, SandboxTimeout
from securehub.sandbox import config
from securehub.sandbox._isolation import seccomp
from securehub.sandbox.child import bootstrap as _bootstrap
from securehub.sandbox.child import forkserver as _forkserver_program
from securehub.sandbox.config import IsolationReport, SandboxConfig
from securehub.sandbox.wire.protocol import (
    MAX_JSON_DEPTH,
    ChannelClosed,
    Frame,
    expect,
    recv_frame,
    recv_frame_to_file,
    send_frame,
    send_frame_file,
)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _raw(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">QI", 4 + len(header) + len(body), len(header)) + header + body


def _recv_raw(data: bytes, *, close: bool = True, **kw: object) -> Frame:
    a, b = socket.socketpair()
    try:
        a.sendall(data)
        if close:
            a.close()
        kw.setdefault("max_body_bytes", 1 << 20)
        return recv_frame(b, **kw)  # type: ignore[arg-type]
    finally:
        a.close()
        b.close()


def test_roundtrip_with_binary_body(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_frame(a, "state.dict", {"n": 3, "names": ["w", "b"], "ok": True}, b"\x00\xffbody")
    frame = recv_frame(b, max_body_bytes=100)
    assert frame == Frame("state.dict", {"n": 3, "names": ["w", "b"], "ok": True}, b"\x00\xffbody", 6)


def test_bootstrap_ready_frame_matches_the_protocol(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    _bootstrap._send(a, "ready", {"isolation": {}, "problems": []})
    assert recv_frame(b, max_body_bytes=0) == Frame("ready", {"isolation": {}, "problems": []}, b"", 0)


def test_bootstrap_exit_codes_match_config() -> None:
    assert _bootstrap.EXIT_CONFINE_FAILED == config.EXIT_CONFINE_FAILED
    assert _bootstrap.EXIT_MEMORY == config.EXIT_MEMORY
    assert _bootstrap.EXIT_ENTRY_FAILED == config.EXIT_ENTRY_FAILED
    # the fork server's program reports a failed start or a broken request with the same status
    assert _forkserver_program.EXIT_CONFINE_FAILED == config.EXIT_CONFINE_FAILED


def test_body_streams_to_sink_and_file(pair: tuple[socket.socket, socket.socket], tmp_path: Path) -> None:
    a, b = pair
    body = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    src = tmp_path / "src.bin"
    src.write_bytes(body)
    t = threading.Thread(target=send_frame_file, args=(a, "weights", {"k": 1}, src))
    t.start()
    sink = io.BytesIO()
    frame = recv_frame(b, max_body_bytes=len(body), body_sink=sink)
    t.join()
    assert (frame.type, frame.body, frame.body_size) == ("weights", b"", len(body))
    assert sink.getvalue() == body

    t = threading.Thread(target=send_frame, args=(a, "weights", {}, body))
    t.start()
    dst = tmp_path / "dst.bin"
    frame = recv_frame_to_file(b, dst, max_body_bytes=len(body))
    t.join()
    assert frame.body_path == dst and dst.read_bytes() == body
    assert dst.stat().st_mode & 0o777 == 0o600


def test_over_cap_body_is_refused_before_reading() -> None:
    data = struct.pack(">QI", 4 + 2 + (1 << 40), 2) + b"{}"
    with pytest.raises(SandboxProtocol, match="exceeds the cap of 1024 bytes") as exc_info:
        _recv_raw(data, close=False, max_body_bytes=1024)
    assert exc_info.value.code == "sandbox-protocol"


def test_over_cap_header_is_refused() -> None:
    data = struct.pack(">QI", 4 + 5000, 5000)
    with pytest.raises(SandboxProtocol, match="header of 5000 bytes exceeds the cap of 4096"):
        _recv_raw(data, close=False, max_header_bytes=4096)


def test_header_longer_than_frame_is_refused() -> None:
    with pytest.raises(SandboxProtocol, match="exceeds the frame length"):
        _recv_raw(struct.pack(">QI", 10, 100), close=False)


def test_truncated_frame_failed_to_file_leaves_nothing(tmp_path: Path) -> None:
    data = _raw(b'{"type":"w","meta":{}}', b"x" * 1000)[:-10]
    a, b = socket.socketpair()
    a.sendall(data)
    a.close()
    dst = tmp_path / "out.bin"
    with pytest.raises(ChannelClosed) as exc_info:
        recv_frame_to_file(b, dst, max_body_bytes=1 << 20)
    b.close()
    assert exc_info.value.mid_frame is True
    assert "child exited early" in exc_info.value.message
    assert not dst.exists()


def test_eof_between_frames_is_channel_closed_not_mid_frame() -> None:
    with pytest.raises(ChannelClosed) as exc_info:
        _recv_raw(b"")
    assert exc_info.value.mid_frame is False
    assert exc_info.value.code == "sandbox-protocol"


def test_eof_inside_length_prefix_is_mid_frame() -> None:
    with pytest.raises(ChannelClosed) as exc_info:
        _recv_raw(b"\x00\x00\x00")
    assert exc_info.value.mid_frame is True


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (b"[1, 2]", "must be a JSON object"),
        (b'"ready"', "must be a JSON object"),
        (b'{"type": 5, "meta": {}}', "frame type must be a string"),
        (b'{"type": "Ready!", "meta": {}}', "frame type must be a string"),
        (b'{"type": "ready"}', "keys must be exactly"),
        (b'{"type": "ready", "meta": {}, "x": 1}', "keys must be exactly"),
        (b'{"type": "ready", "meta": []}', "meta must be a JSON object"),
        (b'{"type": "ready", "meta": {"a": NaN}}', "NaN"),
        (b'{"type": "ready", "meta": {"a": Infinity}}', "Infinity"),
        (b'{"type": "ready", "meta": {"a": 1, "a": 2}}', "repeats the key 'a'"),
        (b'{"type": "ready", "meta": {"a": "\xff"}}', "not valid UTF-8 JSON"),
        (b'{"type": "ready", "meta": {', "not valid UTF-8 JSON"),
        (b'{"type": "ready", "meta": {"n": 1' + b"0" * 5000 + b"}}", "not valid UTF-8 JSON"),
    ],
)
def test_hostile_header_is_refused(header: bytes, fragment: str) -> None:
    with pytest.raises(SandboxProtocol, match=None) as exc_info:
        _recv_raw(_raw(header))
    assert fragment in exc_info.value.message
    assert not isinstance(exc_info.value, ChannelClosed)


def test_deep_nesting_is_refused_without_recursion() -> None:
    deep = b'{"type":"x","meta":{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with pytest.raises(SandboxProtocol, match=f"deeper than {MAX_JSON_DEPTH}"):
        _recv_raw(_raw(deep), max_header_bytes=1 << 20)


def test_nesting_at_the_limit_is_accepted_and_brackets_in_strings_do_not_count() -> None:
    inner = b"[" * (MAX_JSON_DEPTH - 1) + b"]" * (MAX_JSON_DEPTH - 1)
    frame = _recv_raw(_raw(b'{"type":"x","meta":{"a":' + inner + b',"s":"[[[[\\"[[[["}}'))
    assert frame.meta["s"] == '[[[["[[[['


def test_deadline_raises_sandbox_timeout(pair: tuple[socket.socket, socket.socket]) -> None:
    _, b = pair
    with pytest.raises(SandboxTimeout) as exc_info:
        recv_frame(b, max_body_bytes=0, deadline=time.monotonic() + 0.05)
    assert exc_info.value.code == "sandbox-timeout"


def test_expired_deadline_raises_before_reading(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    send_frame(a, "x", {})
    with pytest.raises(SandboxTimeout):
        recv_frame(b, max_body_bytes=0, deadline=time.monotonic() - 1)


def test_send_refuses_bad_type_and_nan(pair: tuple[socket.socket, socket.socket]) -> None:
    a, _ = pair
    with pytest.raises(ValueError, match="frame type"):
        send_frame(a, "Bad Type", {})
    with pytest.raises(ValueError, match="Out of range float"):
        send_frame(a, "x", {"v": float("nan")})


# ---------------------------------------------------------------- expect()


def _f(meta: dict[str, object], ftype: str = "result") -> Frame:
    return Frame(ftype, meta)


def test_expect_accepts_matching_meta() -> None:
    meta = {"name": "m", "n": 2, "ratio": 1, "flag": False, "args": [1]}
    got = expect(_f(meta), "result", {"name": str, "n": int, "ratio": float, "flag": bool}, optional={"args": list})
    assert got == meta


@pytest.mark.parametrize(
    ("meta", "fragment"),
    [
        ({}, "lacks the required key 'n' (int)"),
        ({"n": "2"}, "key 'n' must be int, got str"),
        ({"n": True}, "key 'n' must be int, got bool"),
        ({"n": None}, "key 'n' must be int, got null"),
        ({"n": 1, "evil": 1}, "unexpected keys ['evil']"),
    ],
)
def test_expect_refuses_wrong_meta(meta: dict[str, object], fragment: str) -> None:
    with pytest.raises(SandboxProtocol) as exc_info:
        expect(_f(meta), "result", {"n": int})
    assert fragment in exc_info.value.message


def test_expect_refuses_wrong_type() -> None:
    with pytest.raises(SandboxProtocol, match="expected a 'result' frame from the sandbox child, got 'ready'"):
        expect(_f({}, "ready"), "result", {})


# ---------------------------------------------------------------- config and report


def test_isolation_report_roundtrip_and_level() -> None:
    cfg = SandboxConfig()
    report = IsolationReport.build(
        cfg.required_mechanisms(),
        netns=True,
        userns=True,
        landlock_abi=None,
        seccomp=True,
        no_new_privs=True,
        rlimits=True,
        caps=True,
        pidns=True,
        uid=True,
    )
    assert report.level == "degraded" and report.missing == ("landlock",)
    assert IsolationReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(seccomp=1),
        lambda d: d.update(landlock_abi=True),
        lambda d: d.update(level="total"),
        lambda d: d.update(missing=["rootkit"]),
        lambda d: d.update(extra=1),
        lambda d: d.pop("caps"),
        lambda d: d.pop("pidns"),
        lambda d: d.update(uid="65534"),
    ],
)
def test_isolation_report_from_hostile_dict_is_refused(mutate: object) -> None:
    d = IsolationReport.build(
        frozenset(),
        netns=True,
        userns=True,
        landlock_abi=7,
        seccomp=True,
        no_new_privs=True,
        rlimits=True,
        caps=True,
        pidns=True,
        uid=True,
    ).to_dict()
    mutate(d)  # type: ignore[operator]
    with pytest.raises(SandboxProtocol):
        IsolationReport.from_dict(d)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="network"):
        SandboxConfig(network="open")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_mb"):
        SandboxConfig(memory_mb=0)
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxConfig(timeout_s=float("inf"))
    with pytest.raises(ValueError, match="absolute"):
        SandboxConfig(read_paths=(Path("relative"),))
    with pytest.raises(ValueError, match="unknown names"):
        SandboxConfig(disable_mechanisms=frozenset({"apparmor"}))
    assert "netns" not in SandboxConfig(network="allow").required_mechanisms()
    assert "landlock" not in SandboxConfig(filesystem="open").required_mechanisms()


def test_seccomp_program_is_well_formed() -> None:
    prog = seccomp.build_filter(1234)
    assert len(prog) % 8 == 0 and 0 < len(prog) // 8 <= 4096
    # every jump stays inside the program
    n = len(prog) // 8
    for i in range(n):
        code, jt, jf, _k = struct.unpack_from("<HBBI", prog, i * 8)
        if code & 0x07 == 0x05:  # BPF_JMP
            assert i + 1 + max(jt, jf) < n
    # last instruction: allow
    assert struct.unpack_from("<HBBI", prog, (n - 1) * 8) == (0x06, 0, 0, 0x7FFF0000)
