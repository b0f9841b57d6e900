"""``securehub load --save``'s writer: complete file or nothing, and a coded error instead of a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from securehub.cli.commands import _save_state
from securehub.errors import ReconstructRefused


def test_saves_atomically_and_replaces_an_existing_file(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"old")
    _save_state(model, target)
    saved = load_file(target)
    assert sorted(saved) == sorted(model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.safetensors"]


def test_state_safetensors_cannot_store_is_reconstruct_refused_and_leaves_nothing(tmp_path: Path) -> None:
    model = nn.Linear(3, 4)
    model.register_buffer("view", model.weight.detach().t())  # non-contiguous: save_model refuses it
    target = tmp_path / "out.safetensors"
    with pytest.raises(ReconstructRefused) as info:
        _save_state(model, target)
    assert info.value.code == "reconstruct-refused"
    assert "--save" in info.value.message and "torch.save" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.safetensors"
    with pytest.raises(ValueError, match="--save .*choose another path"):
        _save_state(nn.Linear(2, 2), target)
    assert not target.parent.exists()
