"""The sandbox result as a stream: the child's serializer and the parent's receiver (issue 11, cold path).

``sandbox/child/result.py``'s ``state_parts`` sends the state straight from tensor memory;
``fast_safetensors.receive_state`` takes it straight into tensors, hashing it and
copying it to a file on two threads; ``protocol.recv_frame`` hands a frame's body to
a receiver only for the types it takes. Checked here against ``safetensors`` itself
(the parts form a file it loads; the receiver's tensors equal what it reads) and
against hostile streams (short, malformed, unrepresentable, over-declared).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import socket
import struct
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file

from securehub.errors import FormatNotAllowed
from securehub.pipeline.state_digest import output_digests, state_sha256
from securehub.sandbox.child.result import state_parts
from securehub.sandbox.wire.protocol import ChannelClosed, Fill, recv_frame, send_frame, send_frame_parts
from securehub.verify.fast_safetensors import receive_state
from securehub.verify.safetensors_check import MalformedSafetensors
from securehub.verify.tensor_digest import file_lines, lines_digest


def _state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    big = torch.randn(600, 600, generator=gen)  # >= 1 MiB: its own mapping on the receiving side
    return {
        "big": big,
        "b.half": torch.randn(5, generator=gen).half(),
        "a.int": torch.arange(7, dtype=torch.int64),
        "flag": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 3),
        "scalar": torch.tensor(2.5, dtype=torch.float64),
        "bf": torch.randn(3, 2, generator=gen).to(torch.bfloat16),
        "transposed": big[:4, :3].t(),  # a non-contiguous view sharing storage with "big"
    }


def _body(tensors: dict[str, torch.Tensor]) -> bytes:
    parts, _keep = state_parts(tensors)
    return b"".join(bytes(p) for p in parts)


def _same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert (g.dtype, g.shape) == (w.dtype, w.shape), name
        assert torch.equal(g.contiguous().view(-1).view(torch.uint8), w.contiguous().view(-1).view(torch.uint8)), name


def _fill_from(data: bytes) -> Fill:
    """A Fill over ``data`` that raises ChannelClosed past its end (what the socket filler does at EOF)."""
    pos = [0]

    def fill(views: list[memoryview]) -> None:
        for v in views:
            n = len(v)
            if pos[0] + n > len(data):
                raise ChannelClosed("closed in the middle of a frame", mid_frame=True)
            v[:] = data[pos[0] : pos[0] + n]
            pos[0] += n

    return fill


def _receive(tmp_path: Path, sent: bytes, declared: int | None = None) -> object:
    """``receive_state`` of ``sent`` (a body of ``declared`` bytes, default its length), copied to a new file."""
    fd = os.open(tmp_path / "copy", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        return receive_state(_fill_from(sent), len(sent) if declared is None else declared, copy_fd=fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------ the child's serializer


def test_state_parts_form_a_safetensors_file_safetensors_loads_with_the_same_values() -> None:
    state = _state()
    body = _body(state)
    _same(load(body), {k: v.contiguous() for k, v in state.items()})
    (n,) = struct.unpack("<Q", body[:8])
    assert n % 8 == 0  # header padded like safetensors' own, so every offset is aligned to its element size
    header = json.loads(body[8 : 8 + n])
    assert header["__metadata__"] == {"format": "pt"}
    for name, entry in header.items():
        if name != "__metadata__":
            assert entry["data_offsets"][0] % state[name].element_size() == 0, name


def test_state_parts_point_into_the_tensors_without_copying() -> None:
    t = torch.randn(1000)
    parts, keep = state_parts({"t": t})
    assert keep[0].data_ptr() == t.data_ptr()
    assert len(parts) == 2 and bytes(parts[1]) == t.numpy().tobytes()


# ------------------------------------------------------------------ the parent's receiver


def test_received_tensors_digest_and_copy_are_exactly_the_bytes_sent(tmp_path: Path) -> None:
    state = _state()
    body = _body(state)
    copy = tmp_path / "copy.safetensors"
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        got = receive_state(_fill_from(body), len(body), copy_fd=fd)
    finally:
        os.close(fd)
    assert got.state_digest == lines_digest(file_lines(copy)) == state_sha256(state)
    assert copy.read_bytes() == body
    _same(got.tensors, load_file(str(copy)))
    assert {t.name for t in got.header.tensors} == set(state)
    storages = {t.untyped_storage().data_ptr() for t in got.tensors.values() if t.numel()}
    assert len(storages) == sum(1 for t in got.tensors.values() if t.numel())  # each owns its storage
    got.tensors["big"].add_(1)  # writable, like load_file's


def test_tensor_digests_taken_on_the_way_in_are_each_tensors_bytes_and_give_the_canonical_digest(
    tmp_path: Path,
) -> None:
    state = _state()
    body = _body(state)
    fd = os.open(tmp_path / "copy", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        got = receive_state(_fill_from(body), len(body), copy_fd=fd)
    finally:
        os.close(fd)
    assert set(got.tensor_sha256) == set(state)
    for name, t in state.items():
        raw = t.contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        assert got.tensor_sha256[name] == hashlib.sha256(raw).hexdigest(), name
    # The canonical output digest from the digests taken on the way in equals the one hashed afterwards.
    assert output_digests(got.tensors, {"a": 1}, None, tree=None, data_sha256=got.tensor_sha256) == output_digests(
        got.tensors, {"a": 1}, None, tree=None
    )
    with pytest.raises(ValueError, match="exactly the tensors"):
        partial = {k: v for k, v in got.tensor_sha256.items() if k != "big"}
        output_digests(got.tensors, {}, None, tree=None, data_sha256=partial)


def test_received_over_a_real_socket_through_recv_frame(tmp_path: Path) -> None:
    a, b = socket.socketpair()
    state = _state()
    parts, keep = state_parts(state)

    def send() -> None:
        send_frame(a, "ping", {})
        send_frame_parts(a, "result", {"k": 1}, parts)

    sender = threading.Thread(target=send)
    sender.start()

    class Receiver:
        def __init__(self, fd: int) -> None:
            self.fd = fd
            self.got: object = None

        def takes(self, ftype: str, body_len: int) -> bool:
            return ftype == "result"

        def receive(self, ftype: str, body_len: int, fill: Fill) -> None:
            self.got = receive_state(fill, body_len, copy_fd=self.fd)

    fd = os.open(tmp_path / "c", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    receiver = Receiver(fd)
    try:
        first = recv_frame(b, max_body_bytes=1 << 30, receiver=receiver)
        assert (first.type, receiver.got) == ("ping", None)  # a type it does not take is not given to it
        second = recv_frame(b, max_body_bytes=1 << 30, receiver=receiver)
    finally:
        os.close(fd)
        sender.join()
        a.close()
        b.close()
    assert second.type == "result" and second.meta == {"k": 1} and second.body == b""
    _same(receiver.got.tensors, {k: v.contiguous() for k, v in state.items()})  # type: ignore[attr-defined]
    del keep


def test_a_stream_that_ends_mid_body_raises_and_returns_nothing(tmp_path: Path) -> None:
    body = _body(_state())
    with pytest.raises(ChannelClosed):
        _receive(tmp_path, body[: len(body) // 2], len(body))


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}', id="offsets-past-the-body"),
        pytest.param(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]', id="not-json"),
        pytest.param(b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}', id="shape-size-mismatch"),
    ],
)
def test_a_malformed_header_is_refused_before_any_tensor_is_allocated(tmp_path: Path, header: bytes) -> None:
    with pytest.raises(MalformedSafetensors):
        _receive(tmp_path, struct.pack("<Q", len(header)) + header + b"\0" * 16)


def test_a_dtype_torch_cannot_represent_is_format_not_allowed(tmp_path: Path) -> None:
    header = b'{"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}'
    with pytest.raises(FormatNotAllowed):
        _receive(tmp_path, struct.pack("<Q", len(header)) + header + b"\0")


def test_memory_grows_with_bytes_received_not_with_the_size_the_header_declares(tmp_path: Path) -> None:
    # A hostile child declares a 6 GiB tensor and sends 4 MiB of it: the parent must not commit 6 GiB.
    size = 6 << 30
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    head = struct.pack("<Q", len(header)) + header
    sent = head + b"\1" * (4 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, a high-water mark
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        with pytest.raises(ChannelClosed):
            receive_state(_fill_from(sent), len(head) + size, copy_fd=fd)
    finally:
        os.close(fd)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < (1 << 20), f"peak RSS grew by {grown} KiB for 4 MiB received"


# ------------------------------------------------------------------ the session's hand-over to the store


def _received(tmp_path: Path) -> tuple[Path, object, object]:
    from securehub._util.identity import FileIdentity

    body = _body({"w": torch.arange(6, dtype=torch.float32)})
    staged = tmp_path / "frame-1"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        received = receive_state(_fill_from(body), len(body), copy_fd=fd)
        written = FileIdentity.of(os.fstat(fd))
    finally:
        os.close(fd)
    return staged, received, written


def test_the_moved_state_carries_the_identity_the_file_has_after_the_rename(tmp_path: Path) -> None:
    from securehub._util.identity import FileIdentity
    from securehub.sandbox.parent.session import _moved_state

    staged, received, written = _received(tmp_path)
    final = tmp_path / "state.safetensors"
    staged.replace(final)
    state = _moved_state(final, received, written)  # type: ignore[arg-type]
    assert state.identity == FileIdentity.of(os.lstat(final))
    assert state.state_digest == received.state_digest == lines_digest(file_lines(final))  # type: ignore[attr-defined]
    assert state.tensor_sha256 == received.tensor_sha256  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", ["replaced", "rewritten"])
def test_a_state_file_replaced_or_rewritten_before_the_rename_is_hash_mismatch(tmp_path: Path, change: str) -> None:
    from securehub.errors import HashMismatch
    from securehub.sandbox.parent.session import _moved_state

    staged, received, written = _received(tmp_path)
    data = staged.read_bytes()
    if change == "replaced":  # another inode with the same bytes
        (tmp_path / "other").write_bytes(data)
        (tmp_path / "other").replace(staged)
    else:  # same inode, other bytes, a later mtime
        os.utime(staged, ns=(0, 0))
    final = tmp_path / "state.safetensors"
    staged.replace(final)
    with pytest.raises(HashMismatch):
        _moved_state(final, received, written)  # type: ignore[arg-type]


def test_transfer_all_continues_short_transfers_and_reports_an_early_end() -> None:
    from securehub._util.buffers import transfer_all

    src = bytes(range(20))
    pos = [0]

    def read3(views: list[memoryview]) -> int:  # at most 3 bytes per call, into the first buffer only
        n = min(3, len(views[0]), len(src) - pos[0])
        views[0][:n] = src[pos[0] : pos[0] + n]
        pos[0] += n
        return n

    bufs = [bytearray(7), bytearray(0), bytearray(13)]
    assert transfer_all(read3, [memoryview(b) for b in bufs])
    assert bytes(bufs[0] + bufs[2]) == src
    assert not transfer_all(read3, [memoryview(bytearray(1))])  # the source is exhausted: 0 -> False
