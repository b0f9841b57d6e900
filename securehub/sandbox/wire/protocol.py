"""Wire framing on the parent <-> child channel (a UNIX stream socketpair).

Frame layout (all integers big-endian)::

    u64 frame_len                 # bytes that follow: 4 + header_len + body_len
    u32 header_len
    header_len bytes of UTF-8 JSON: {"type": "<name>", "meta": {...}}
    body: frame_len - 4 - header_len raw bytes (may be empty)

The frame length is 64-bit (not 32) because a body may be a multi-GB
safetensors state dict. ``type`` matches ``[a-z][a-z0-9_.-]{0,63}``;
``meta`` is a JSON object.

The parent treats every frame as hostile. :func:`recv_frame` guarantees, or
raises :class:`~securehub.errors.SandboxProtocol`:

- the header is at most ``max_header_bytes`` and the body at most
  ``max_body_bytes`` (checked from the length prefix before reading);
- with ``limits`` (a :class:`FrameLimits` per accepted frame type): the
  type is read from the first :data:`_PEEK_BYTES` of the header (which must
  begin ``{"type": "<name>"``), must be one of ``limits``, and the declared
  header and body lengths must fit *that type's* caps -- all before the rest
  of the header is read. Reads are in chunks of at most 1 MiB, so memory
  grows only with bytes that passed those checks;
- the header is valid UTF-8 JSON, an object with exactly ``type`` (str, the
  pattern above) and ``meta`` (object); no NaN/Infinity, no duplicate keys,
  nesting at most :data:`MAX_JSON_DEPTH` (or the type's ``max_depth``), and
  item counts and string sizes bounded -- all checked by
  :mod:`securehub._util.strict_json` with a linear scan *before* anything is
  parsed or built;
- EOF before a complete frame raises :class:`ChannelClosed` (a
  ``SandboxProtocol``), with ``mid_frame`` telling whether bytes were lost.

A body goes to a ``body_sink`` (written chunk by chunk) or, for the frame
types a :class:`BodyReceiver` takes, straight into the receiver's own buffers
(the sandbox result's tensors: no intermediate copy or file to read back).

Passing ``deadline`` (a :func:`time.monotonic` value) bounds the whole call;
when it passes, :class:`~securehub.errors.SandboxTimeout` is raised. Frame
*types* and meta *contents* are the caller's to validate: use :func:`expect`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from securehub._util import strict_json
from securehub._util.buffers import transfer_all
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub.errors import SandboxProtocol, SandboxTimeout

__all__ = [
    "DEFAULT_MAX_HEADER_BYTES",
    "MAX_JSON_DEPTH",
    "BodyReceiver",
    "ChannelClosed",
    "Fill",
    "Frame",
    "FrameLimits",
    "SEND_FLAGS",
    "encode_frame_header",
    "expect",
    "recv_frame",
    "recv_frame_to_file",
    "send_frame",
    "send_frame_file",
    "send_frame_parts",
]

DEFAULT_MAX_HEADER_BYTES = 1 << 20
MAX_JSON_DEPTH = 64
_CHUNK = 1 << 20
_TYPE_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
_FRAME_LEN = struct.Struct(">Q")
_HEADER_LEN = struct.Struct(">I")
_DEFAULT_MAX_ITEMS = 1_000_000
#: Enough for '{"type": "<64-char name>", ' with a little whitespace.
_PEEK_BYTES = 128
_PEEK_RE = re.compile(rb'\{\s{0,8}"type"\s{0,8}:\s{0,8}"([a-z][a-z0-9_.-]{0,63})"\s{0,8}[,}]')

_T = TypeVar("_T")

#: Fills the given buffers, in order, with the next bytes of the frame body (``ChannelClosed`` on EOF,
#: ``SandboxTimeout`` past the deadline); a receiver never reads beyond the body through it.
Fill = Callable[[list[memoryview]], None]


class BodyReceiver(Protocol):
    """Takes the body of some frame types into its own buffers instead of a ``body_sink``."""

    def takes(self, ftype: str, body_len: int) -> bool:
        """Whether to :meth:`receive` this frame's body (called once its type and lengths passed every cap)."""
        ...

    def receive(self, ftype: str, body_len: int, fill: Fill) -> None:
        """Read exactly ``body_len`` bytes through ``fill``; an exception leaves the channel unusable."""
        ...


class ChannelClosed(SandboxProtocol):
    """The peer closed the channel. ``mid_frame``: it did so inside a frame."""

    def __init__(self, message: str, *, mid_frame: bool) -> None:
        super().__init__(message)
        self.mid_frame = mid_frame


@dataclass(frozen=True)
class FrameLimits:
    """What one frame type may cost the receiver; every bound is checked before it is spent.

    ``header_bytes``/``body_bytes``: caps on the declared lengths (checked on
    the length prefix). ``max_depth``: nesting of ``meta`` (the header object
    adds one level). ``max_items``/``max_str_bytes``: JSON values in the
    header, and raw bytes of any one string literal in it (see
    :mod:`securehub._util.strict_json`).
    """

    header_bytes: int
    body_bytes: int = 0
    max_items: int = 10_000
    max_str_bytes: int = 64 * 1024
    max_depth: int = MAX_JSON_DEPTH

    def json_limits(self) -> JsonLimits:
        """The header's JSON bounds (depth + 1 for the ``{"type", "meta"}`` wrapper)."""
        return JsonLimits(self.header_bytes, self.max_depth + 1, self.max_items, self.max_str_bytes)


@dataclass(frozen=True)
class Frame:
    """One received frame.

    ``body`` holds the body bytes, unless the body was streamed to a sink or
    file (then ``body`` is empty and ``body_path``, if a file, names it).
    ``body_size`` is always the body's length.
    """

    type: str
    meta: dict[str, Any]
    body: bytes = b""
    body_size: int = 0
    body_path: Path | None = field(default=None)


# --------------------------------------------------------------------------- sending


def encode_frame_header(type: str, meta: Mapping[str, Any], body_len: int) -> bytes:
    """Bytes preceding a body of ``body_len`` bytes. Raises ``ValueError`` on a bad type/meta."""
    if not isinstance(type, str) or not _TYPE_RE.fullmatch(type):
        raise ValueError(f"frame type must match {_TYPE_RE.pattern}, got {type!r}")
    if not isinstance(meta, Mapping):
        raise TypeError(f"frame meta must be a mapping, got {meta.__class__.__name__}")
    header = json.dumps(
        {"type": type, "meta": dict(meta)}, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode("utf-8")
    return _FRAME_LEN.pack(_HEADER_LEN.size + len(header) + body_len) + _HEADER_LEN.pack(len(header)) + header


def _set_timeout(sock: socket.socket, deadline: float | None) -> None:
    if deadline is None:
        sock.settimeout(None)
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise SandboxTimeout(
            "the sandbox deadline passed while talking to the child; "
            "raise sandbox.timeout_s in the policy if the entrypoint legitimately needs longer"
        )
    sock.settimeout(remaining)


#: Every send to the child: a child that stops reading (``shutdown(SHUT_RD)``, or exits) makes the send
#: fail with ``EPIPE``, which must be an error here, never ``SIGPIPE``: a host application that restored
#: SIGPIPE's default action would be killed by its sandboxed child (red team 5).
SEND_FLAGS = socket.MSG_NOSIGNAL


def _sendall(sock: socket.socket, data: bytes | memoryview, deadline: float | None) -> None:
    _set_timeout(sock, deadline)
    try:
        sock.sendall(data, SEND_FLAGS)
    except TimeoutError as exc:
        raise SandboxTimeout(
            "the sandbox deadline passed while sending to the child (it stopped reading); "
            "raise sandbox.timeout_s in the policy if needed"
        ) from exc
    except (BrokenPipeError, ConnectionResetError) as exc:
        raise ChannelClosed(
            "the sandbox child closed the channel while a frame was being sent (child exited early)",
            mid_frame=True,
        ) from exc


def send_frame(
    sock: socket.socket,
    type: str,
    meta: Mapping[str, Any],
    body: bytes = b"",
    *,
    deadline: float | None = None,
) -> None:
    """Send one frame. ``meta`` must be JSON-serialisable (no NaN)."""
    _sendall(sock, encode_frame_header(type, meta, len(body)) + body, deadline)


def send_frame_parts(
    sock: socket.socket,
    type: str,
    meta: Mapping[str, Any],
    parts: Sequence[bytes | memoryview],
    *,
    deadline: float | None = None,
) -> None:
    """Send one frame whose body is ``parts`` one after the other (each sent from its own memory, no join)."""
    size = sum(len(p) for p in parts)
    _sendall(sock, encode_frame_header(type, meta, size), deadline)
    for part in parts:
        if len(part):
            _sendall(sock, part, deadline)


def send_frame_file(
    sock: socket.socket,
    type: str,
    meta: Mapping[str, Any],
    path: Path,
    *,
    deadline: float | None = None,
) -> None:
    """Send one frame whose body is the content of ``path``, streamed (never held in memory).

    The size is taken from the open file; a file that changes size while
    being sent raises ``OSError`` (the frame is then broken: close the channel).
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        _sendall(sock, encode_frame_header(type, meta, size), deadline)
        sent = 0
        while sent < size:
            chunk = fh.read(min(_CHUNK, size - sent))
            if not chunk:
                raise OSError(f"{path} shrank while being sent ({sent} of {size} bytes)")
            _sendall(sock, chunk, deadline)
            sent += len(chunk)


# --------------------------------------------------------------------------- receiving


def _received(sock: socket.socket, deadline: float | None, read: Callable[[], _T], closed: _T) -> _T:
    """``read()`` under the deadline (``SandboxTimeout``); a reset connection reads as ``closed`` (EOF)."""
    _set_timeout(sock, deadline)
    try:
        return read()
    except TimeoutError as exc:
        raise SandboxTimeout(
            "the sandbox child did not answer before the deadline; "
            "raise sandbox.timeout_s in the policy if the entrypoint legitimately needs longer"
        ) from exc
    except ConnectionResetError:
        return closed


def _recv_exact(sock: socket.socket, n: int, deadline: float | None, *, started: bool) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = _received(sock, deadline, partial(sock.recv, min(n - len(buf), _CHUNK)), b"")
        if not chunk:
            mid = started or bool(buf)
            where = "in the middle of a frame" if mid else "between frames"
            raise ChannelClosed(
                f"the sandbox child closed the channel {where} (child exited early); expected a complete frame",
                mid_frame=mid,
            )
        buf += chunk
    return bytes(buf)


def _recv_into(sock: socket.socket, views: list[memoryview]) -> int:
    return sock.recvmsg_into(views)[0]


def _filler(sock: socket.socket, body_len: int, deadline: float | None) -> Fill:
    """A :data:`Fill` over the next ``body_len`` bytes of ``sock``: scatter reads, no copy, never past the body."""
    left = [body_len]

    def fill(views: list[memoryview]) -> None:
        want = sum(len(v) for v in views)
        if want > left[0]:
            raise ValueError(f"asked for {want} bytes, {left[0]} left in the frame body")
        if not transfer_all(lambda batch: _received(sock, deadline, partial(_recv_into, sock, batch), 0), views):
            raise ChannelClosed(
                "the sandbox child closed the channel in the middle of a frame (child exited early); "
                "expected a complete frame",
                mid_frame=True,
            )
        left[0] -= want

    return fill


def _header_limits(max_header_bytes: int, limits: FrameLimits | None) -> JsonLimits:
    if limits is not None:
        return limits.json_limits()
    # +1: the header object itself wraps the meta.
    return JsonLimits(max_header_bytes, MAX_JSON_DEPTH + 1, _DEFAULT_MAX_ITEMS, max(max_header_bytes, 1))


def _parse_header(raw: bytes, json_limits: JsonLimits) -> tuple[str, dict[str, Any]]:
    try:
        obj = strict_json.loads(raw, json_limits)
    except JsonRefusedError as exc:
        if exc.kind == "depth":
            raise SandboxProtocol(
                f"frame header nests deeper than {json_limits.max_depth - 1} levels; the child is broken or hostile"
            ) from None
        raise SandboxProtocol(f"frame header is not valid UTF-8 JSON within its bounds: {exc}") from None
    if not isinstance(obj, dict):
        raise SandboxProtocol(f"frame header must be a JSON object, got {type(obj).__name__}")
    if set(obj) != {"type", "meta"}:
        raise SandboxProtocol(f"frame header keys must be exactly 'type' and 'meta', got {sorted(obj)}")
    ftype = obj["type"]
    if not isinstance(ftype, str) or not _TYPE_RE.fullmatch(ftype):
        raise SandboxProtocol(f"frame type must be a string matching {_TYPE_RE.pattern}, got {ftype!r}")
    meta = obj["meta"]
    if not isinstance(meta, dict):
        raise SandboxProtocol(f"frame meta must be a JSON object, got {type(meta).__name__}")
    return ftype, meta


def _check_body_len(body_len: int, cap: int, ftype: str | None) -> None:
    if body_len > cap:
        what = f"{ftype!r} frame body" if ftype is not None else "frame body"
        raise SandboxProtocol(
            f"{what} of {body_len} bytes exceeds the cap of {cap} bytes "
            "(for results: sandbox.max_output_mb in the policy)"
        )


def _peek_type(prefix: bytes, limits: Mapping[str, FrameLimits]) -> str:
    """The frame type named at the start of a header, which must be one ``limits`` knows."""
    match = _PEEK_RE.match(prefix)
    if match is None:
        raise SandboxProtocol(
            'frame header must begin with {"type": "<name>", ...} so its size can be checked against '
            "that type's cap; the sandbox child is broken or hostile"
        )
    ftype = match.group(1).decode("ascii")
    if ftype not in limits:
        raise SandboxProtocol(
            f"unexpected {ftype!r} frame from the sandbox child here (expected one of {sorted(limits)}); "
            "the child is broken or hostile"
        )
    return ftype


def _recv_prefix(
    sock: socket.socket,
    max_header_bytes: int,
    max_body_bytes: int,
    deadline: float | None,
    limits: Mapping[str, FrameLimits] | None,
) -> tuple[str, dict[str, Any], int]:
    (frame_len,) = _FRAME_LEN.unpack(_recv_exact(sock, _FRAME_LEN.size, deadline, started=False))
    if frame_len < _HEADER_LEN.size:
        raise SandboxProtocol(f"frame length {frame_len} is shorter than the 4-byte header length field")
    (header_len,) = _HEADER_LEN.unpack(_recv_exact(sock, _HEADER_LEN.size, deadline, started=True))
    if limits is not None:
        max_header_bytes = min(max_header_bytes, max(lim.header_bytes for lim in limits.values()))
    # Checked on the length prefix alone, before a single header byte is read.
    if header_len > max_header_bytes:
        raise SandboxProtocol(f"frame header of {header_len} bytes exceeds the cap of {max_header_bytes} bytes")
    body_len = frame_len - _HEADER_LEN.size - header_len
    if body_len < 0:
        raise SandboxProtocol(f"frame header length {header_len} exceeds the frame length {frame_len}")
    _check_body_len(body_len, max_body_bytes, None)
    if limits is None:
        ftype, meta = _parse_header(
            _recv_exact(sock, header_len, deadline, started=True), _header_limits(max_header_bytes, None)
        )
        return ftype, meta, body_len
    # Per-type caps: read at most _PEEK_BYTES to learn the type, then check the declared
    # lengths against THAT type's caps before reading (or allocating) the rest. A 'fetch'
    # request may not borrow the result frame's large header allowance (finding 4c).
    prefix = _recv_exact(sock, min(header_len, _PEEK_BYTES), deadline, started=True)
    peeked = _peek_type(prefix, limits)
    lim = limits[peeked]
    if header_len > lim.header_bytes:
        raise SandboxProtocol(
            f"{peeked!r} frame header of {header_len} bytes exceeds that type's cap of {lim.header_bytes} bytes"
        )
    _check_body_len(body_len, lim.body_bytes, peeked)
    rest = _recv_exact(sock, header_len - len(prefix), deadline, started=True) if header_len > len(prefix) else b""
    ftype, meta = _parse_header(prefix + rest, lim.json_limits())
    if ftype != peeked:  # unreachable for valid JSON (no duplicate keys); never trust a differential
        raise SandboxProtocol(f"frame header names the type {peeked!r} first but parses as {ftype!r}")
    return ftype, meta, body_len


def _stream_body(sock: socket.socket, n: int, sink: BinaryIO, deadline: float | None) -> None:
    left = n
    while left:
        chunk = _recv_exact(sock, min(left, _CHUNK), deadline, started=True)
        sink.write(chunk)
        left -= len(chunk)


def recv_frame(
    sock: socket.socket,
    *,
    max_body_bytes: int,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    deadline: float | None = None,
    body_sink: BinaryIO | None = None,
    limits: Mapping[str, FrameLimits] | None = None,
    receiver: BodyReceiver | None = None,
) -> Frame:
    """Receive one frame, enforcing the caps before reading (see module docstring).

    With ``limits`` only the frame types it names are accepted, each under its
    own :class:`FrameLimits` (and under ``max_header_bytes``/``max_body_bytes``
    too). A ``receiver`` that :meth:`~BodyReceiver.takes` the frame reads its
    body itself; otherwise, with ``body_sink`` the body is written to it chunk
    by chunk (bounded memory). Either way ``Frame.body`` is then empty. On any
    error the channel is out of sync: the caller must stop using it (kill the child).
    """
    ftype, meta, body_len = _recv_prefix(sock, max_header_bytes, max_body_bytes, deadline, limits)
    if receiver is not None and receiver.takes(ftype, body_len):
        receiver.receive(ftype, body_len, _filler(sock, body_len, deadline))
        return Frame(ftype, meta, b"", body_len)
    if body_sink is not None:
        _stream_body(sock, body_len, body_sink, deadline)
        return Frame(ftype, meta, b"", body_len)
    body = _recv_exact(sock, body_len, deadline, started=True) if body_len else b""
    return Frame(ftype, meta, body, body_len)


def recv_frame_to_file(
    sock: socket.socket,
    path: Path,
    *,
    max_body_bytes: int,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    deadline: float | None = None,
    limits: Mapping[str, FrameLimits] | None = None,
) -> Frame:
    """Receive one frame, streaming its body into a new file ``path`` (created 0600, must not exist).

    On any error the partial file is removed. ``Frame.body_path`` is ``path``.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            frame = recv_frame(
                sock,
                max_body_bytes=max_body_bytes,
                max_header_bytes=max_header_bytes,
                deadline=deadline,
                body_sink=fh,
                limits=limits,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Frame(frame.type, frame.meta, b"", frame.body_size, path)


# --------------------------------------------------------------------------- validation


def _type_name(spec: type | tuple[type, ...]) -> str:
    if isinstance(spec, tuple):
        return " or ".join(t.__name__ for t in spec)
    return spec.__name__


def expect(
    frame: Frame,
    type: str,
    schema: Mapping[str, type | tuple[type, ...]],
    *,
    optional: Mapping[str, type | tuple[type, ...]] | None = None,
    allow_extra: bool = False,
) -> dict[str, Any]:
    """Check ``frame`` is of ``type`` and its meta matches ``schema``; return the meta.

    Every key of ``schema`` must be present with a value of the given type(s);
    keys of ``optional`` may be present. ``bool`` is not accepted where ``int``
    or ``float`` is asked for unless ``bool`` is listed; ``int`` is accepted
    where ``float`` is. Other keys are refused unless ``allow_extra``. Only
    the top level is checked: nested containers are the caller's to validate.
    Raises ``SandboxProtocol`` naming the key, expected and found types.
    """
    if frame.type != type:
        raise SandboxProtocol(f"expected a {type!r} frame from the sandbox child, got {frame.type!r}")
    opt = optional or {}
    meta = frame.meta
    for key, spec in (*schema.items(), *opt.items()):
        if key not in meta:
            if key in schema:
                raise SandboxProtocol(f"{type!r} frame lacks the required key {key!r} ({_type_name(spec)})")
            continue
        value = meta[key]
        allowed = spec if isinstance(spec, tuple) else (spec,)
        if float in allowed and int not in allowed:
            allowed = (*allowed, int)
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            raise SandboxProtocol(f"{type!r} frame key {key!r} must be {_type_name(spec)}, got {type_of(value)}")
    if not allow_extra:
        extra = set(meta) - set(schema) - set(opt)
        if extra:
            raise SandboxProtocol(f"{type!r} frame has unexpected keys {sorted(extra)}")
    return meta


def type_of(value: object) -> str:
    """Type name of a JSON value, for messages."""
    return "null" if value is None else value.__class__.__name__
