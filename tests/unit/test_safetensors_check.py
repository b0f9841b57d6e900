"""Valid safetensors files pass; the wrappers map failures to the right error codes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch

from securehub.verify.pickle.scan import scan_file
from securehub.verify.safetensors_check import (
    MalformedSafetensors,
    check_safetensors,
    check_safetensors_artifact,
    check_safetensors_result,
)


def _valid(tmp_path: Path) -> Path:
    path = tmp_path / "m.safetensors"
    tensors = {
        "w": torch.randn(3, 4),
        "b": torch.zeros(4, dtype=torch.float16),
        "i": torch.arange(5, dtype=torch.int64),
        "bf": torch.ones(2, 2, dtype=torch.bfloat16),
        "flag": torch.tensor([True, False]),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(1.5),
    }
    safetensors.torch.save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def test_valid_file_from_save_file_is_accepted(tmp_path: Path) -> None:
    path = _valid(tmp_path)
    header = check_safetensors(path)
    assert {t.name for t in header.tensors} == {"w", "b", "i", "bf", "flag", "empty", "scalar"}
    assert dict(header.metadata) == {"format": "pt"}
    w = next(t for t in header.tensors if t.name == "w")
    assert (w.dtype, w.shape, w.end - w.begin) == ("F32", (3, 4), 48)
    assert header.data_offset + header.data_bytes == path.stat().st_size
    assert check_safetensors(path.read_bytes()) == header
    assert check_safetensors_artifact(path) == header
    assert check_safetensors_result(path) == header


def test_valid_file_scans_clean(tmp_path: Path) -> None:
    result = scan_file(_valid(tmp_path))
    assert result.format == "safetensors" and result.clean


def test_empty_state_dict_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "e.safetensors"
    safetensors.torch.save_file({}, str(path))
    assert check_safetensors(path).tensors == ()


def test_wrappers_map_codes() -> None:
    bad = struct.pack("<Q", 2) + b"[]"
    with pytest.raises(MalformedSafetensors):
        check_safetensors(bad)
    from securehub.errors import FormatNotAllowed, SandboxProtocol

    with pytest.raises(FormatNotAllowed) as a:
        check_safetensors_artifact(bad, name="w.safetensors")
    assert a.value.code == "format-not-allowed" and "w.safetensors" in str(a.value)
    with pytest.raises(SandboxProtocol) as r:
        check_safetensors_result(bad)
    assert r.value.code == "sandbox-protocol"
