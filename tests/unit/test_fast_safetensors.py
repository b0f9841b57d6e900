"""securehub.verify.fast_safetensors.load_verified: one read, digest first, one storage per tensor.

Equality is always checked against ``safetensors.torch.load_file`` on the same file, byte for
byte (``torch.equal`` is not defined for every float8 type, and NaN payloads must survive).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from securehub._util.identity import FileIdentity
from securehub.errors import FormatNotAllowed, HashMismatch
from securehub.pipeline.state_digest import state_sha256
from securehub.verify.fast_safetensors import TORCH_DTYPES, load_verified, read_hashed
from securehub.verify.tensor_digest import file_lines, lines_digest

SHAPES = [(), (0,), (3, 0, 2), (1,), (7,), (2, 3, 4)]


def _digest(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def _load(path: Path) -> dict[str, torch.Tensor]:
    sha, size = _digest(path)
    return load_verified(path, expected_sha256=sha, expected_size=size)


def _bytes_of(t: torch.Tensor) -> bytes:
    c = t.contiguous()
    return bytes(c.reshape(-1).view(torch.uint8).tolist()) if c.numel() else b""


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, name
        assert g.shape == w.shape, name
        assert _bytes_of(g) == _bytes_of(w), name


def _random(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    itemsize = torch.empty((), dtype=dtype).element_size()
    n = 1
    for d in shape:
        n *= d
    data = torch.randint(0, 256, (n * itemsize,), generator=gen, dtype=torch.uint8)
    if dtype == torch.bool:
        data = data % 2
    return data.view(dtype).reshape(shape) if n else torch.empty(shape, dtype=dtype)


def _raw_file(path: Path, header: dict[str, object], data: bytes, *, pad_to: int | None = 8) -> None:
    """Write a safetensors file by hand (offsets exactly as given), header padded with spaces."""
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad_to:
        text += b" " * (-len(text) % pad_to)
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("name", sorted(TORCH_DTYPES))
def test_every_supported_dtype_and_shape_equals_safetensors(tmp_path: Path, name: str) -> None:
    dtype = TORCH_DTYPES[name]
    tensors = {f"t{i}": _random(dtype, shape, i) for i, shape in enumerate(SHAPES)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, path)
    _assert_same(_load(path), load_file(path))


def test_mixed_dtypes_each_own_their_storage_and_keep_values(tmp_path: Path) -> None:
    tensors = {
        "w": torch.randn(64, 32),
        "h": torch.randn(5, 3).to(torch.bfloat16),
        "b": torch.tensor([True, False, True]),
        "s": torch.tensor(3.5, dtype=torch.float64),
        "c": torch.randn(4, dtype=torch.complex64),
        "e": torch.empty(0, 4),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, path)
    got = _load(path)
    _assert_same(got, load_file(path))
    # Issue 10: views into one shared buffer broke torch.save and save_model; each tensor owns exactly its bytes.
    storages = {got[k].untyped_storage().data_ptr() for k in ("w", "h", "b", "s", "c")}
    assert len(storages) == 5
    for t in got.values():
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
        assert t.is_contiguous()
    got["w"].add_(1)  # writable, like load_file's tensors
    assert torch.equal(got["w"], tensors["w"] + 1)


def test_loaded_state_can_be_saved_again_by_safetensors_and_torch(tmp_path: Path) -> None:
    """Issue 10: mixed dtypes, small and large (own mapping) tensors save with both savers."""
    tensors = {
        "a": torch.randn(10, 10),
        "b": torch.arange(7, dtype=torch.int64),
        "c": torch.randn(3).to(torch.bfloat16),
        "big": torch.randn(1 << 19),  # 2 MiB: above the own-mapping threshold
        "s": torch.tensor(2.5),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, path)
    got = _load(path)
    again = tmp_path / "again.safetensors"
    save_file(got, again)
    _assert_same(load_file(again), tensors)
    buf = io.BytesIO()
    torch.save(got, buf)
    buf.seek(0)
    _assert_same(torch.load(buf, weights_only=True), tensors)
    del got, buf  # the mappings are freed with their tensors (no crash, no leak of a closed mmap)


def test_many_small_tensors_are_read_in_batches(tmp_path: Path) -> None:
    """More tensors than one readv can take (IOV_MAX) and more bytes than one chunk."""
    tensors = {f"t{i:04d}": torch.full((i % 7 + 1,), float(i)) for i in range(1500)}
    tensors["big"] = (torch.arange(3 << 20) % 251).to(torch.uint8)  # 3 MiB: its own mapping
    tensors["huge"] = torch.ones(5 << 20, dtype=torch.int16)  # 10 MiB: two chunks
    path = tmp_path / "m.safetensors"
    save_file(tensors, path)
    got = _load(path)
    _assert_same(got, load_file(path))
    assert list(got) == list(load_file(path))


def test_tampered_header_is_hash_mismatch_not_format_error(tmp_path: Path) -> None:
    """The header is parsed before the digest is known; a tampered one must still be reported as tampering."""
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(100)}, path)
    sha, size = _digest(path)
    data = bytearray(path.read_bytes())
    data[9] = ord("[")  # the header no longer starts with '{'
    path.write_bytes(bytes(data))
    with pytest.raises(HashMismatch) as info:
        load_verified(path, expected_sha256=sha, expected_size=size)
    assert info.value.code == "hash-mismatch"


def test_misaligned_tensor_offsets_are_copied_not_viewed(tmp_path: Path) -> None:
    f32 = torch.tensor([1.5, -2.0], dtype=torch.float32)
    i64 = torch.tensor([7], dtype=torch.int64)
    u8 = b"\x01\x02\x03"
    data = u8 + _bytes_of(f32) + _bytes_of(i64)
    header = {
        "u": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "f": {"dtype": "F32", "shape": [2], "data_offsets": [3, 11]},
        "i": {"dtype": "I64", "shape": [], "data_offsets": [11, 19]},
    }
    path = tmp_path / "m.safetensors"
    _raw_file(path, header, data)
    got = _load(path)
    _assert_same(got, load_file(path))
    assert torch.equal(got["f"], f32)
    assert got["i"].item() == 7
    assert got["u"].tolist() == [1, 2, 3]


def test_misaligned_data_section_is_handled(tmp_path: Path) -> None:
    """A header length that is not a multiple of 8 puts every tensor off its alignment."""
    f64 = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    header = {"x": {"dtype": "F64", "shape": [2, 2], "data_offsets": [0, 32]}}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((-len(text) % 8) + 3)  # 8 + len(text) is now 3 mod 8
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + _bytes_of(f64))
    got = _load(path)
    assert torch.equal(got["x"], f64)
    _assert_same(got, load_file(path))


def test_wrong_digest_raises_hash_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.ones(4)}, path)
    _, size = _digest(path)
    with pytest.raises(HashMismatch) as info:
        load_verified(path, expected_sha256="0" * 64, expected_size=size)
    assert info.value.code == "hash-mismatch"
    assert "0" * 64 in info.value.message


def test_one_flipped_data_byte_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(1000)}, path)
    sha, size = _digest(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(HashMismatch):
        load_verified(path, expected_sha256=sha, expected_size=size)


def test_truncated_file_raises_hash_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_file({"a": torch.zeros(100)}, path)
    sha, size = _digest(path)
    with path.open("r+b") as fh:
        fh.truncate(size - 4)
    with pytest.raises(HashMismatch) as info:
        load_verified(path, expected_sha256=sha, expected_size=size)
    assert f"expected {size} bytes" in info.value.message


def test_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.safetensors"
    save_file({"a": torch.zeros(3)}, real)
    sha, size = _digest(real)
    link = tmp_path / "link.safetensors"
    link.symlink_to(real)
    with pytest.raises(HashMismatch, match="symbolic link"):
        load_verified(link, expected_sha256=sha, expected_size=size)


def test_dir_fd_resolves_relative_names(tmp_path: Path) -> None:
    save_file({"a": torch.arange(5)}, tmp_path / "m.safetensors")
    sha, size = _digest(tmp_path / "m.safetensors")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        got = load_verified("m.safetensors", expected_sha256=sha, expected_size=size, dir_fd=fd)
    finally:
        os.close(fd)
    assert got["a"].tolist() == [0, 1, 2, 3, 4]


def test_malformed_file_with_matching_digest_is_format_not_allowed(tmp_path: Path) -> None:
    """The digest only proves the bytes are the recorded ones; they must still be safetensors."""
    path = tmp_path / "m.safetensors"
    _raw_file(path, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(FormatNotAllowed) as info:
        _load(path)
    assert info.value.code == "format-not-allowed"


def test_dtype_torch_cannot_represent_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _raw_file(path, {"a": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}}, b"\0" * 3)
    with pytest.raises(FormatNotAllowed, match="F6_E2M3"):
        _load(path)


# ----------------------------------------------------------------------------- read_hashed (the cold path's one read)


def test_read_hashed_returns_the_tensors_and_the_digests_of_exactly_their_bytes(tmp_path: Path) -> None:
    state = {"w": torch.arange(3 * 1024 * 1024, dtype=torch.float32).reshape(1024, -1), "b": torch.ones(3)}
    path = tmp_path / "s.safetensors"
    save_file(state, path)

    read = read_hashed(path, digest=True)

    assert read.tensor_sha256 == {k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in state.items()}
    assert read.state_digest == lines_digest(file_lines(path)) == state_sha256(state)
    assert read.identity == FileIdentity.of(os.stat(path))
    assert set(read.tensors) == set(state)
    assert all(torch.equal(read.tensors[k], v) for k, v in state.items())
    plain = read_hashed(path, digest=False)  # read only: nothing hashed when no one needs it
    assert plain.tensor_sha256 is None and plain.state_digest is None


def test_read_hashed_refuses_a_symlink_and_a_malformed_file(tmp_path: Path) -> None:
    target = tmp_path / "s.safetensors"
    save_file({"w": torch.ones(2)}, target)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(HashMismatch, match="symbolic link"):
        read_hashed(tmp_path / "link", digest=True)
    (tmp_path / "bad").write_bytes(b"\xff" * 64)
    with pytest.raises(FormatNotAllowed):
        read_hashed(tmp_path / "bad", digest=True)
