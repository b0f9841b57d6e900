"""Parameters and buffers registered (or set to None) after construction, under the ``trusted`` strategy.

Real hubconfs do this to plain ``torch.nn`` models: BERT-style ``register_buffer("position_ids", ...,
persistent=False)``, normalisation constants (``register_buffer("mean", ...)``), a learnable
``model.logit_scale = nn.Parameter(...)`` (CLIP), ``conv.bias = None`` after folding a BatchNorm. The
child records the names and kinds (``replay.tensors``), the values travel in the state; the parent
registers empty ``meta`` placeholders of the state's shape before assigning it. Before, the state did
not fit the rebuilt model and the load failed with ``reconstruct-mismatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from securehub.errors import ReconstructMismatch, ReconstructRefused
from securehub.reconstruct.rebuild import reconstruct
from tests._reconstruct_helpers import record


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, strategy = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted"], tree=None, trusted_modules=["torch.nn"]
    )
    assert strategy == "trusted"
    return model


def _bert_like() -> nn.Module:
    model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 10, bias=False))
    model[2].weight = model[0].weight  # tied decoder
    model.register_buffer("position_ids", torch.arange(8).unsqueeze(0), persistent=False)
    model.register_buffer("token_type_ids", torch.zeros(1, 8, dtype=torch.long))
    return model


def _clip_like() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    model.logit_scale = nn.Parameter(torch.tensor(2.5))
    model.register_buffer("mean", torch.tensor([0.48, 0.45, 0.40, 0.5]))
    model[0].requires_grad_(False)
    return model


def _bias_folded() -> nn.Module:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2, bias=False))
    model[0].bias = None  # folded into the next layer
    model[1].bias = nn.Parameter(torch.ones(2))  # a bias the constructor left out
    return model


PATTERNS: dict[str, Callable[[], nn.Module]] = {"bert": _bert_like, "clip": _clip_like, "bias": _bias_folded}


@pytest.mark.parametrize("name", PATTERNS)
def test_tensors_registered_after_construction_are_replayed(name: str, tmp_path: Path) -> None:
    orig, config, state = record(PATTERNS[name], tmp_path, seed=0)
    model = _rebuild(config, state)
    mine, theirs = model.state_dict(), orig.state_dict()
    assert list(mine) == list(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert dict(model.named_buffers()).keys() == dict(orig.named_buffers()).keys()
    assert all(torch.equal(b, dict(orig.named_buffers())[n]) for n, b in model.named_buffers())
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == [
        (n, p.requires_grad) for n, p in orig.named_parameters()
    ]
    x = torch.arange(8).unsqueeze(0) if name == "bert" else torch.randn(3, 4)
    with torch.no_grad():
        assert torch.equal(model(x), orig(x))


def test_replayed_tensors_keep_ties_and_persistence(tmp_path: Path) -> None:
    _, config, state = record(_bert_like, tmp_path, seed=0)
    model = _rebuild(config, state)
    assert model[2].weight is model[0].weight
    assert "position_ids" not in model.state_dict() and torch.equal(model.position_ids, torch.arange(8)[None])
    assert model.token_type_ids.dtype == torch.long


def test_deleted_parameter_is_refused_by_name(tmp_path: Path) -> None:
    def build() -> nn.Module:
        model = nn.Sequential(nn.Linear(4, 4))
        del model[0].bias
        return model

    _, config, state = record(build, tmp_path, seed=0)
    with pytest.raises(ReconstructRefused, match="parameter 'bias' deleted after construction"):
        _rebuild(config, state)


@pytest.mark.parametrize(
    ("tensors", "error", "says"),
    [
        ({"mean": "module"}, ReconstructRefused, "replay tensors must map"),
        ({"__class__": "buffer"}, ReconstructRefused, "replay tensors must map"),
        ({"forward": "none"}, ReconstructRefused, "cannot replay tensor 'forward'"),
        ({"0": "parameter"}, ReconstructRefused, "replay tensors must map"),
        ({"absent": "parameter"}, ReconstructMismatch, "no such tensor"),
    ],
)
def test_forged_tensor_replay_is_refused(
    tensors: dict[str, str], error: type[Exception], says: str, tmp_path: Path
) -> None:
    _, config, state = record(_clip_like, tmp_path, seed=0)
    config["root"]["replay"]["tensors"] = tensors
    with pytest.raises(error, match=says):
        _rebuild(config, state)


class _WithMean(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.ones(3), persistent=False)


def test_class_with_a_nonpersistent_buffer_of_its_own_records_no_change(tmp_path: Path) -> None:
    """The recorder compares the constructor's non-persistent set (a set, not a table) with the final one
    (a DINOv2-style model registering ``pixel_mean`` in ``__init__`` made the child fail before)."""
    _, config, _ = record(_WithMean, tmp_path, seed=0)
    assert "replay" not in config["root"] and config["root"]["mutated"] == []
