"""The ``securehub-state/1`` digest primitives (securehub/verify/tensor_digest.py): one hash pass, every core."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from securehub.pipeline.state_digest import state_sha256
from securehub.verify.safetensors_check import MalformedSafetensors, TensorInfo
from securehub.verify.tensor_digest import TensorHasher, file_lines, lines_digest, tensor_line

STATE = {
    "b": torch.arange(5, dtype=torch.int64),
    "a.weight": torch.randn(4, 3, generator=torch.Generator().manual_seed(1)),
    "empty": torch.zeros(0, 2),
}


def test_the_digest_of_a_file_is_that_of_its_tensors_whatever_the_layout(tmp_path: Path) -> None:
    save_file(STATE, tmp_path / "a")
    save_file(dict(reversed(list(STATE.items()))), tmp_path / "b", metadata={"note": "other layout"})
    assert (tmp_path / "a").read_bytes() != (tmp_path / "b").read_bytes()
    assert lines_digest(file_lines(tmp_path / "a")) == lines_digest(file_lines(tmp_path / "b")) == state_sha256(STATE)


def test_lines_are_sorted_by_name_bytes_not_by_insertion() -> None:
    one = {"b": b"B\n", "a": b"A\n"}
    assert lines_digest(one) == lines_digest(dict(reversed(list(one.items()))))
    expected = hashlib.sha256(b"securehub-state/1\nA\nB\n").hexdigest()
    assert lines_digest(one) == expected


def test_a_line_is_canonical_json_of_name_dtype_shape_size_and_data_digest() -> None:
    assert tensor_line('a"\n', "F32", (2, 3), 24, "0" * 64) == b'["a\\"\\n","F32",[2,3],24,"' + b"0" * 64 + b'"]\n'


def test_the_hasher_hashes_exactly_each_tensors_bytes_and_refuses_a_wrong_length() -> None:
    data = memoryview(bytearray(b"\x01" * 12))
    with TensorHasher() as hasher:
        hasher.add(TensorInfo("t", "F32", (3,), 0, 12), data)
        with pytest.raises(ValueError, match="expected 8 bytes"):
            hasher.add(TensorInfo("u", "F32", (2,), 12, 20), data)
        assert hasher.data_sha256() == {"t": hashlib.sha256(b"\x01" * 12).hexdigest()}
        assert hasher.lines() == {"t": tensor_line("t", "F32", (3,), 12, hashlib.sha256(b"\x01" * 12).hexdigest())}


@pytest.mark.parametrize("content", [b"", b"\xff" * 64], ids=["empty", "garbage"])
def test_file_lines_refuses_a_file_that_is_not_safetensors(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad").write_bytes(content)
    with pytest.raises(MalformedSafetensors):
        file_lines(tmp_path / "bad")


def test_small_tensors_hashed_in_batches_give_each_tensor_its_own_digest() -> None:
    """Small tensors share a pool task (red team 14: a task per tensor cost ~30 s for 190,000 of them); each
    still gets exactly its own digest, in the order added, across batch boundaries and around large tensors."""
    import securehub.verify.tensor_digest as td

    sizes = [1, 0, 5000, td._SMALL, 3] + [7] * (td._BATCH_COUNT + 5) + [td._BATCH_BYTES // 2] * 3 + [td._SMALL + 1, 2]
    blobs = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    infos = [TensorInfo(f"t{i}", "U8", (len(b),), 0, len(b)) for i, b in enumerate(blobs)]
    with TensorHasher() as hasher:
        for info, blob in zip(infos, blobs, strict=True):
            hasher.add(info, memoryview(blob))
        digests = hasher.data_sha256()
        with pytest.raises(ValueError, match="added twice"):
            hasher.add(infos[0], memoryview(blobs[0]))
    assert list(digests) == [info.name for info in infos]
    assert list(digests.values()) == [hashlib.sha256(b).hexdigest() for b in blobs]
