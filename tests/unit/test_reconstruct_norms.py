"""Weight/spectral norm under the ``trusted`` strategy: the parent re-applies torch's own function.

Vocoders (HiFi-GAN, WaveGlow, MelGAN) and GAN discriminators ship layers wrapped in
``torch.nn.utils.weight_norm``/``spectral_norm`` or their ``parametrizations`` successors. The child records
the norm as data (``norms``), the parent rebuilds the plain layer and calls the same torch function with
checked arguments; a forged norm is refused, a norm the recorder does not recognise stays refused by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

from securehub.errors import ReconstructMismatch, ReconstructRefused
from securehub.reconstruct.rebuild import reconstruct
from tests._reconstruct_helpers import record

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

NORMS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "weight_norm": lambda m: nn.utils.weight_norm(m),
    "weight_norm_whole": lambda m: nn.utils.weight_norm(m, dim=None),
    "spectral_norm": lambda m: nn.utils.spectral_norm(m, n_power_iterations=2),
    "parametrizations.weight_norm": lambda m: parametrizations.weight_norm(m),
    "parametrizations.spectral_norm": lambda m: parametrizations.spectral_norm(m, eps=1e-10),
}


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, strategy = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted"], tree=None, trusted_modules=["torch.nn"]
    )
    assert strategy == "trusted"
    return model


def _vocoder(norm: Callable[[nn.Module], nn.Module]) -> Callable[[], nn.Module]:
    """HiFi-GAN style: a normed transposed conv upsampler and normed convs, in torch.nn containers."""

    def build() -> nn.Module:
        return nn.Sequential(
            norm(nn.Conv1d(4, 8, 7, padding=3)),
            nn.LeakyReLU(0.1),
            norm(nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1)),
            nn.LeakyReLU(0.1),
            norm(nn.Conv1d(4, 1, 7, padding=3)),
            nn.Tanh(),
        )

    return build


def _same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("kind", NORMS)
def test_normed_layers_are_rebuilt_with_the_same_norm_and_outputs(kind: str, tmp_path: Path) -> None:
    orig, config, state = record(_vocoder(NORMS[kind]), tmp_path, seed=0)
    rng = torch.get_rng_state()
    model = _rebuild(config, state)
    assert torch.equal(torch.get_rng_state(), rng)  # applied on meta: the parent's RNG is not drawn
    _same_state(orig, model)
    x = torch.randn(2, 4, 16)
    for mode in (False, True):  # train mode: spectral norm's power iteration runs the same on both
        orig.train(mode)
        model.train(mode)
        with torch.no_grad():
            assert torch.equal(model(x), orig(x))
    assert all(t.device.type == "cpu" for t in model.state_dict().values())
    if kind.startswith("parametrizations."):
        assert parametrize.is_parametrized(model[0], "weight")
        assert isinstance(model[0], nn.Conv1d)
    else:
        assert {"weight_g", "weight_v"} <= set(model[0].state_dict()) or "weight_orig" in model[0].state_dict()


def test_user_removes_weight_norm_after_loading_and_fine_tunes(tmp_path: Path) -> None:
    """What vocoder inference scripts do after loading: remove_weight_norm, then run; training still works."""
    orig, config, state = record(_vocoder(NORMS["weight_norm"]), tmp_path, seed=0)
    model = _rebuild(config, state)
    tuned = copy.deepcopy(model)
    x = torch.randn(2, 4, 16)
    for layer in (0, 2, 4):
        nn.utils.remove_weight_norm(model[layer])
        nn.utils.remove_weight_norm(orig[layer])
    with torch.no_grad():
        torch.testing.assert_close(model(x), orig(x))
    opt = torch.optim.SGD(tuned.parameters(), lr=0.1)
    tuned.train()
    tuned(x).square().mean().backward()
    opt.step()
    assert tuned[0].weight_g.grad is not None
    assert not torch.equal(tuned[0].weight_v, model[0].weight)


def test_recurrent_layer_with_a_weight_norm_parametrization(tmp_path: Path) -> None:
    def build() -> nn.Module:
        return parametrizations.weight_norm(nn.LSTM(4, 6, batch_first=True), "weight_ih_l0")

    orig, config, state = record(build, tmp_path, seed=0)
    model = _rebuild(config, state)
    _same_state(orig, model)
    x = torch.randn(2, 3, 4)
    with torch.no_grad():
        assert torch.equal(model(x)[0], orig(x)[0])


def test_hook_weight_norm_on_a_recurrent_layer_is_refused_by_name(tmp_path: Path) -> None:
    """The old hook also rewrites an LSTM's private ``_flat_weights`` cache: not replayed, named (known gap)."""
    _, config, state = record(lambda: nn.utils.weight_norm(nn.LSTM(4, 6), "weight_hh_l0"), tmp_path, seed=0)
    with pytest.raises(ReconstructRefused, match="_flat_weights"):
        _rebuild(config, state)


class _Scale(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * 2


def _custom_parametrization() -> nn.Module:
    return parametrize.register_parametrization(nn.Linear(4, 4), "weight", _Scale())


def _weight_norm_and_user_hook() -> nn.Module:
    layer = nn.utils.weight_norm(nn.Linear(4, 4))
    layer.register_forward_pre_hook(lambda m, inputs: None)
    return nn.Sequential(layer)


@pytest.mark.parametrize("build", [_custom_parametrization, _weight_norm_and_user_hook])
def test_anything_besides_torchs_norms_is_still_refused(build: Callable[[], nn.Module], tmp_path: Path) -> None:
    _, config, state = record(build, tmp_path, seed=0)
    with pytest.raises(ReconstructRefused):
        _rebuild(config, state)


def _normed_config(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    _, config, state = record(_vocoder(NORMS["spectral_norm"]), tmp_path, seed=0)
    return config, state


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"kind": "os.system"}, "one of"),
        ({"kind": "torch.nn.utils:register_module_forward_hook"}, "one of"),
        ({"n_power_iterations": 10**9}, "n_power_iterations"),
        ({"n_power_iterations": True}, "n_power_iterations"),
        ({"eps": float("inf")}, "eps"),
        ({"dim": 7}, "outside"),
        ({"dim": "0"}, "integer dim"),
        ({"name": "__class__"}, "public parameter name"),
        ({"extra": 1}, "exactly the keys"),
    ],
)
def test_forged_norm_is_refused_before_any_call(change: dict[str, Any], says: str, tmp_path: Path) -> None:
    config, state = _normed_config(tmp_path)
    config["root"]["children"]["0"]["norms"][0].update(change)
    with pytest.raises(ReconstructRefused, match=says):
        _rebuild(config, state)


def test_norm_on_a_tensor_the_layer_lacks_is_mismatch(tmp_path: Path) -> None:
    config, state = _normed_config(tmp_path)
    config["root"]["children"]["1"]["norms"] = [dict(config["root"]["children"]["0"]["norms"][0])]  # LeakyReLU
    with pytest.raises(ReconstructMismatch, match="not a parameter"):
        _rebuild(config, state)


def test_norm_inside_a_module_passed_as_an_argument_does_not_apply(tmp_path: Path) -> None:
    """TransformerEncoder deep-copies its ``encoder_layer`` argument: a weight-normed layer inside that
    argument (not itself in the tree) is not re-applied; trusted says so instead of failing with a traceback."""

    def build() -> nn.Module:
        layer = nn.TransformerEncoderLayer(4, 1, 8, dropout=0.0, batch_first=True)
        layer.linear1 = parametrizations.weight_norm(layer.linear1)
        return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    _, config, state = record(build, tmp_path, seed=0)
    with pytest.raises(ReconstructRefused, match="passed as an argument"):
        _rebuild(config, state)
