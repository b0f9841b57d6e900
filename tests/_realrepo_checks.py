"""What every real-hub-repo load must survive, shared by tests/integration/test_real_hub_zoo*.py.

:func:`assert_used_like_the_direct_model`: the loaded model computes what the model built directly
computes (eval mode), then survives what users do next -- ``eval()``, ``state_dict()`` saved with
torch and safetensors (cloned when two names share a tensor) and reloaded into a directly built
model, ``copy.deepcopy``, and either
``train()`` refused (``export``: ``reconstruct-refused``) or a replaced head and one optimizer step
that moves it (``source``).

:func:`pickled` and :func:`jittered` build the checkpoints the generated repos serve.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import securehub
from tests._hub_helpers import error_of

__all__ = ["assert_used_like_the_direct_model", "expected_strategy", "jittered", "loss", "pickled", "saves"]


def pickled(obj: Any) -> bytes:
    """``obj`` as ``torch.save`` writes it (a checkpoint a repo's weights URL serves)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def jittered(state: Mapping[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A 'pretrained' state: the seeded init moved a little (integers such as num_batches_tracked kept)."""
    return {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v for k, v in state.items()}


def expected_strategy(policy: str) -> str:
    """Repo classes rebuild by ``export`` under strict and default, by ``source`` under permissive."""
    return "source" if policy == "permissive" else "export"


def saves(model: nn.Module, tmp_path: Path) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` saved and reloaded with torch and with safetensors; the torch copy."""
    state = model.state_dict()
    torch.save(state, tmp_path / "state.pt")
    again = torch.load(tmp_path / "state.pt", weights_only=True)
    assert set(again) == set(state) and all(torch.equal(again[k], v) for k, v in state.items())
    storages = [v.untyped_storage().data_ptr() for v in state.values()]
    if len(set(storages)) < len(storages):
        # one module under two names (open-unmix's STFT is model.stft and model.transform[0]): save_file
        # refuses shared tensors by design, and save_model a tensor that does not cover its storage
        # (torch.hann_window(n) is a view of n + 1 values), for the model built directly too; users clone
        state = {k: v.clone() for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "state.safetensors")
    saved = load_file(tmp_path / "state.safetensors")
    assert set(saved) == set(state) and all(torch.equal(saved[k], v) for k, v in state.items())
    return again


def loss(out: Any) -> torch.Tensor:
    """A scalar from every tensor in a model's output (tensors, tuples, dicts)."""
    leaves = [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
    return torch.stack([t.float().square().mean() for t in leaves]).sum()


def assert_used_like_the_direct_model(
    model: nn.Module,
    strategy: str,
    direct: Callable[[], nn.Module],
    x: torch.Tensor,
    tmp_path: Path,
    *,
    head: Callable[[nn.Module], None],
    extra: Callable[[nn.Module], None] | None = None,
) -> None:
    """See the module docstring. ``direct`` builds the model directly; ``head`` replaces its head;
    ``extra`` checks what the repository's users rely on beyond ``forward``."""
    reference = direct().eval()
    assert model.eval() is model and not model.training
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    # what users do next: save the weights, reload them into the model they build themselves
    fresh = direct()
    fresh.load_state_dict(saves(model, tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), expected, rtol=1e-5, atol=1e-5)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), expected, rtol=1e-5, atol=1e-5)
    if extra is not None:
        extra(model)
    if strategy == "export":
        with pytest.raises(securehub.SecureHubError) as excinfo:
            clone.train()
        assert error_of(excinfo)[0] == "reconstruct-refused"
        return
    # fine-tune: a new head, train mode, one step that moves the new head
    head(clone)
    clone.train()
    assert clone.training
    params = [p for p in clone.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    loss(clone(x)).backward()
    opt.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
