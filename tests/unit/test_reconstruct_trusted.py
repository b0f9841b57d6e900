"""The ``trusted`` reconstruction strategy: rebuild from allowlisted torch.nn classes, exact outputs."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub.reconstruct.paths as paths
import securehub.reconstruct.trusted as trusted_mod
from securehub.errors import ReconstructMismatch, ReconstructRefused
from securehub.reconstruct.rebuild import reconstruct
from tests._reconstruct_helpers import record as record_model


def record(build: Callable[[], nn.Module], tmp_path: Path) -> tuple[nn.Module, dict[str, Any], Path]:
    """What the child does (seeded, so weights are deterministic)."""
    return record_model(build, tmp_path, seed=0)


def rebuild(config: dict[str, Any], state_path: Path, **kw: Any) -> nn.Module:
    kw.setdefault("trusted_modules", ["torch.nn"])
    model, strategy = reconstruct(
        config=config, state_path=state_path, export=None, strategies=["trusted", "export"], tree=None, **kw
    )
    assert strategy == "trusted"
    return model


def assert_same(a: nn.Module, b: nn.Module, *inputs: torch.Tensor) -> None:
    with torch.no_grad():
        out_a, out_b = a(*inputs), b(*inputs)
    if isinstance(out_a, tuple):
        for x, y in zip(out_a, out_b, strict=True):
            if isinstance(x, tuple):
                for p, q in zip(x, y, strict=True):
                    assert torch.equal(p, q)
            else:
                assert torch.equal(x, y)
    else:
        assert torch.equal(out_a, out_b)


def test_linear(tmp_path: Path) -> None:
    orig, config, state = record(lambda: nn.Linear(5, 3), tmp_path)
    model = rebuild(config, state)
    assert type(model) is nn.Linear
    assert_same(orig, model, torch.randn(4, 5))
    assert model.weight.device.type == "cpu"


def test_sequential_conv_bn_relu_linear_eval(tmp_path: Path) -> None:
    def build() -> nn.Module:
        m = nn.Sequential(
            nn.Conv2d(3, 4, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(4 * 6 * 6, 5),
        )
        m.train()
        m(torch.randn(8, 3, 6, 6))  # move BatchNorm running stats away from their defaults
        return m.eval()

    orig, config, state = record(build, tmp_path)
    model = rebuild(config, state)
    bn = model[1]
    assert isinstance(bn, nn.BatchNorm2d)
    assert torch.equal(bn.running_mean, orig[1].running_mean)  # type: ignore[arg-type]
    assert int(bn.num_batches_tracked) == 1  # type: ignore[arg-type]
    assert not model.training and not any(m.training for m in model.modules())
    assert_same(orig, model, torch.randn(2, 3, 6, 6))


def test_lstm(tmp_path: Path) -> None:
    orig, config, state = record(lambda: nn.LSTM(6, 8, num_layers=2, batch_first=True).eval(), tmp_path)
    model = rebuild(config, state)
    assert_same(orig, model, torch.randn(3, 5, 6))


def test_transformer_encoder_layer(tmp_path: Path) -> None:
    def build() -> nn.Module:
        return nn.TransformerEncoderLayer(
            d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True,
            activation=nn.functional.relu,
        ).eval()  # fmt: skip

    orig, config, state = record(build, tmp_path)
    assert {"$function": "torch.nn.functional:relu"} in config["root"]["kwargs"].values()
    model = rebuild(config, state)
    assert_same(orig, model, torch.randn(2, 7, 16))


def test_transformer_encoder_with_module_argument(tmp_path: Path) -> None:
    def build() -> nn.Module:
        layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)
        return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()

    orig, config, state = record(build, tmp_path)
    model = rebuild(config, state)
    assert_same(orig, model, torch.randn(2, 5, 8))


def test_tied_weights_are_tied_again(tmp_path: Path) -> None:
    def build() -> nn.Module:
        m = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 10, bias=False))
        m[1].weight = m[0].weight  # tie after construction, as language models do
        return m.eval()

    orig, config, state = record(build, tmp_path)
    assert config["aliases"] == {"1.weight": "0.weight"}
    model = rebuild(config, state)
    assert model[1].weight is model[0].weight
    assert_same(orig, model, torch.tensor([[1, 2, 3]]))


def test_fp16_bf16_fp64_params(tmp_path: Path) -> None:
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        orig, config, state = record(lambda d=dtype: nn.Linear(4, 3).to(d), tmp_path)
        assert config["root"]["dtype"] == str(dtype).removeprefix("torch.")
        model = rebuild(config, state)
        assert model.weight.dtype == dtype and model.bias.dtype == dtype
        assert_same(orig, model, torch.randn(2, 4, dtype=dtype))


def test_submodule_in_train_mode_under_eval_root(tmp_path: Path) -> None:
    def build() -> nn.Module:
        m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        m.eval()
        m[1].train()
        return m

    orig, config, state = record(build, tmp_path)
    model = rebuild(config, state)
    assert [model.training, model[0].training, model[1].training, model[2].training] == [False, False, True, False]
    x = torch.randn(5, 4)
    assert_same(orig, model, x)  # BatchNorm in train mode: batch statistics, updates running stats
    assert torch.equal(orig[1].running_mean, model[1].running_mean)  # type: ignore[arg-type]


def test_non_persistent_buffer_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.nn has no class with a non-persistent buffer: simulate an installed package that does.
    site = tmp_path / "site"
    (site / "shpkg_np").mkdir(parents=True)
    (site / "shpkg_np" / "__init__.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Scaled(nn.Module):
                def __init__(self, n):
                    super().__init__()
                    self.lin = nn.Linear(n, n)
                    self.register_buffer("scale", torch.arange(n, dtype=torch.float32) + 1, persistent=False)

                def forward(self, x):
                    return self.lin(x) * self.scale
            """
        )
    )
    real_roots = paths.installed_roots()
    monkeypatch.setattr(paths, "installed_roots", lambda: (*real_roots, site.resolve()))
    monkeypatch.syspath_prepend(str(site))
    import shpkg_np  # type: ignore[import-not-found]

    def build() -> nn.Module:
        m = shpkg_np.Scaled(3)
        m.scale.mul_(7)  # the value differs from what the constructor makes
        return m.eval()

    try:
        orig, config, state = record(build, tmp_path)
        model = rebuild(config, state, trusted_modules=["shpkg_np", "torch.nn"])
        assert "scale" not in model.state_dict()
        assert torch.equal(model.scale, orig.scale)
        assert_same(orig, model, torch.randn(2, 3))
    finally:
        sys.modules.pop("shpkg_np", None)


def test_map_location_moves_result(tmp_path: Path) -> None:
    orig, config, state = record(lambda: nn.Linear(2, 2), tmp_path)
    model = rebuild(config, state, map_location="cpu")
    assert model.weight.device == torch.device("cpu")
    with pytest.raises(TypeError):
        rebuild(config, state, map_location={"cuda:0": "cpu"})


def test_repo_class_without_example_inputs_is_refused_with_advice(tmp_path: Path) -> None:
    _, config, state = record(lambda: nn.Linear(2, 2), tmp_path)
    config["root"]["class"] = "acme.models:Net"
    with pytest.raises(ReconstructRefused) as exc:
        reconstruct(
            config=config, state_path=state, export=None, strategies=["trusted", "export"],
            trusted_modules=["torch.nn"], tree=None,
        )  # fmt: skip
    msg = str(exc.value)
    assert exc.value.code == "reconstruct-refused"
    assert "trusted: module <root>: class acme.models:Net is not in reconstruct.trusted_modules ['torch.nn']" in msg
    assert "export: no example_inputs" in msg and "example_inputs=" in msg and "hub.lock" in msg
    assert "source: not allowed by the policy" in msg


def test_child_removed_after_construction_is_replayed(tmp_path: Path) -> None:
    """``del seq[2]`` (Sequential renumbers: '1' replaced, '2' deleted), ``layer.dropout = None``."""

    def build() -> nn.Module:
        m = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 3), nn.Tanh())
        del m[1]
        enc = nn.TransformerEncoderLayer(2, 1, 4, dropout=0.0)
        enc.dropout = None  # a head/dropout dropped after construction
        return nn.Sequential(m, nn.ModuleDict({"enc": enc}))

    orig, config, state = record(build, tmp_path)
    model = rebuild(config, state)
    assert list(model[0]._modules) == ["0", "1", "2"] and isinstance(model[0][1], nn.Linear)
    assert model[1]["enc"].dropout is None and "dropout" in model[1]["enc"]._modules
    assert_same(orig[0], model[0], torch.randn(3, 2))


@pytest.mark.parametrize("removed", [{"0": "deleted"}, {"absent": "none"}, {"1": "gone"}])
def test_forged_child_removal_is_refused(tmp_path: Path, removed: dict[str, str]) -> None:
    """A removal may only drop a child the constructor built and the recorded tree does not keep."""
    _, config, state = record(lambda: nn.Sequential(nn.Linear(2, 2), nn.ReLU()), tmp_path)
    config["root"]["replay"] = {"children": [], "attrs": {}, "removed": removed}
    with pytest.raises(ReconstructRefused, match="removed|removes child"):
        rebuild(config, state)


def test_child_added_after_construction_is_replayed(tmp_path: Path) -> None:
    def build() -> nn.Module:
        m = nn.Sequential(nn.Linear(2, 2))
        m.add_module("extra", nn.ReLU())
        m.append(nn.Linear(2, 3))
        return m

    orig, config, state = record(build, tmp_path)
    model = rebuild(config, state)
    assert list(model._modules) == ["0", "extra", "2"]
    assert_same(orig, model, torch.randn(3, 2))


def test_state_with_wrong_dtype_is_mismatch(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    _, config, state = record(lambda: nn.Linear(2, 2), tmp_path)
    tensors = load_file(str(state))
    tensors["weight"] = tensors["weight"].double()
    save_file(tensors, str(state))
    with pytest.raises(ReconstructMismatch) as exc:
        rebuild(config, state)
    assert exc.value.code == "reconstruct-mismatch" and "weight" in str(exc.value)


def _frozen_backbone() -> nn.Module:
    """What an entrypoint that fine-tunes only the head returns (``0`` is the backbone, ``1`` the head)."""
    model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8)), nn.Linear(8, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    return model


def test_frozen_backbone_survives_trusted_reconstruction(tmp_path: Path) -> None:
    orig, config, state = record(_frozen_backbone, tmp_path)
    assert config["frozen"] == ["0.0.bias", "0.0.weight", "0.2.bias", "0.2.weight"]
    rebuilt = rebuild(config, state)
    grads = {name: p.requires_grad for name, p in rebuilt.named_parameters()}
    assert grads == {name: p.requires_grad for name, p in orig.named_parameters()}
    assert grads["1.weight"] is True and grads["0.0.weight"] is False
    assert_same(orig, rebuilt, torch.randn(3, 4))


def test_frozen_tied_weight_is_frozen_under_both_names(tmp_path: Path) -> None:
    def build() -> nn.Module:
        m = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
        m[1].weight = m[0].weight  # tied; the Sequential is not mutated, only the Linear's parameter
        m[0].weight.requires_grad_(False)
        return m

    _, config, state = record(build, tmp_path)
    assert config["frozen"] == ["0.weight", "1.weight"]
    rebuilt = rebuild(config, state)
    assert rebuilt[0].weight is rebuilt[1].weight and not rebuilt[0].weight.requires_grad


def test_config_freezing_a_nonexistent_parameter_is_mismatch(tmp_path: Path) -> None:
    _, config, state = record(_frozen_backbone, tmp_path)
    config["frozen"] = ["0.0.weight", "0.9.weight"]
    with pytest.raises(ReconstructMismatch) as exc:
        rebuild(config, state)
    assert exc.value.code == "reconstruct-mismatch" and "0.9.weight" in str(exc.value)


@pytest.mark.parametrize("frozen", [["weight.__class__"], ["0.running_mean"], [""]])
def test_config_freezing_a_buffer_or_attribute_is_mismatch(tmp_path: Path, frozen: list[str]) -> None:
    _, config, state = record(lambda: nn.Sequential(nn.BatchNorm1d(3)), tmp_path)
    config["frozen"] = frozen
    with pytest.raises(ReconstructMismatch) as exc:
        rebuild(config, state)
    assert exc.value.code == "reconstruct-mismatch"


@pytest.mark.parametrize("frozen", ["0.weight", [1], ["a", "a"], None])
def test_malformed_frozen_list_is_sandbox_protocol(tmp_path: Path, frozen: Any) -> None:
    from securehub.errors import SandboxProtocol
    from securehub.sandbox.wire.messages import parse_result_config

    _, config, _ = record(lambda: nn.Sequential(nn.Linear(2, 2)), tmp_path)
    config["frozen"] = frozen
    with pytest.raises(SandboxProtocol) as exc:
        parse_result_config({"config": config})
    assert exc.value.code == "sandbox-protocol"


def test_transformer_layer_with_builtin_gelu_activation(tmp_path: Path) -> None:
    import torch.nn.functional as F  # noqa: N812 - the conventional name

    def build() -> nn.Module:
        return nn.TransformerEncoderLayer(
            d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, activation=F.gelu, batch_first=True
        )

    orig, config, state = record(build, tmp_path)
    orig.eval()
    config["root"]["training"] = False
    for child in config["root"]["children"].values():
        child["training"] = False
    assert config["root"]["kwargs"]["activation"] == {"$function": "torch.nn.functional:gelu"}
    rebuilt = rebuild(config, state)
    assert rebuilt.activation is F.gelu
    assert_same(orig, rebuilt, torch.randn(2, 5, 8))


def test_builtins_eval_reexported_by_a_trusted_module_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trusted module exposing builtins.eval under its own name does not make eval a trusted function."""
    import builtins

    import torch.nn.functional as F  # noqa: N812

    monkeypatch.setattr(F, "eval", builtins.eval, raising=False)
    _, config, state = record(lambda: nn.TransformerEncoderLayer(8, 2, dim_feedforward=16), tmp_path)
    config["root"]["kwargs"]["activation"] = {"$function": "torch.nn.functional:eval"}
    with pytest.raises(ReconstructRefused) as exc:
        rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "torch.nn.functional:eval" in str(exc.value)


def test_class_partial_and_enum_arguments_of_an_installed_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timm-style ``Block(norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, mode=Mode.WIDE)``."""
    site = tmp_path / "site"
    (site / "shpkg_blocks").mkdir(parents=True)
    (site / "shpkg_blocks" / "__init__.py").write_text(
        textwrap.dedent(
            """
            import enum
            from torch import nn

            class Mode(enum.Enum):
                NARROW = 1
                WIDE = 2

            class Block(nn.Module):
                def __init__(self, dim, norm_layer=nn.LayerNorm, act_layer=nn.ReLU, mode=Mode.NARROW):
                    super().__init__()
                    hidden = dim * mode.value
                    self.norm = norm_layer(dim)
                    self.fc1 = nn.Linear(dim, hidden)
                    self.act = act_layer()
                    self.fc2 = nn.Linear(hidden, dim)

                def forward(self, x):
                    return self.fc2(self.act(self.fc1(self.norm(x))))
            """
        )
    )
    real_roots = paths.installed_roots()
    monkeypatch.setattr(paths, "installed_roots", lambda: (*real_roots, site.resolve()))
    monkeypatch.syspath_prepend(str(site))
    import functools

    import shpkg_blocks  # type: ignore[import-not-found]

    def build() -> nn.Module:
        norm = functools.partial(nn.LayerNorm, eps=1e-6)
        blocks = nn.Sequential()
        for _ in range(2):
            blocks.append(shpkg_blocks.Block(8, norm_layer=norm, act_layer=nn.GELU, mode=shpkg_blocks.Mode.WIDE))
        return blocks.eval()

    try:
        orig, config, state = record(build, tmp_path)
        kwargs = config["root"]["children"]["0"]["kwargs"]
        assert kwargs["act_layer"] == {"$class": "torch.nn.modules.activation:GELU"}
        assert kwargs["norm_layer"]["$partial"]["func"] == {"$class": "torch.nn.modules.normalization:LayerNorm"}
        assert kwargs["mode"] == {"$enum": {"class": "shpkg_blocks:Mode", "name": "WIDE"}}
        model = rebuild(config, state, trusted_modules=["shpkg_blocks", "torch.nn"])
        assert model[0].norm.eps == 1e-6 and isinstance(model[0].act, nn.GELU) and model[0].fc1.out_features == 16
        assert_same(orig, model, torch.randn(3, 8))
        # an enum member that does not exist, or a private one, is refused
        kwargs["mode"] = {"$enum": {"class": "shpkg_blocks:Mode", "name": "_missing_"}}
        with pytest.raises(ReconstructRefused) as exc:
            rebuild(config, state, trusted_modules=["shpkg_blocks", "torch.nn"])
        assert exc.value.code == "reconstruct-refused" and "_missing_" in str(exc.value)
    finally:
        sys.modules.pop("shpkg_blocks", None)


def test_no_usable_strategy_says_what_works_not_source() -> None:
    """Nested loads under a source-only policy reach reconstruct() with no strategy; source cannot help there."""
    with pytest.raises(ReconstructRefused) as info:
        reconstruct(config={}, state={}, export=None, strategies=[], trusted_modules=["torch.nn"], tree=None)
    message = info.value.message
    assert info.value.code == "reconstruct-refused"
    assert "list trusted and/or export" in message and "nested torch.hub.load" in message
    assert "(or source)" not in message


def test_a_class_path_is_resolved_once_per_rebuild_and_afresh_for_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 6: 6 Linear layers, one resolution of ``torch.nn...:Linear`` per rebuild (was 6)."""
    model, config, state_path = record(lambda: nn.Sequential(*(nn.Linear(4, 4) for _ in range(6))), tmp_path)

    resolved: list[str] = []
    real = trusted_mod.resolve_installed

    def spy(text: object, **kw: Any) -> Any:
        resolved.append(str(text))
        return real(text, **kw)

    monkeypatch.setattr(trusted_mod, "resolve_installed", spy)
    first = rebuild(config, state_path)
    assert sorted(resolved) == ["torch.nn.modules.container:Sequential", "torch.nn.modules.linear:Linear"]
    second = rebuild(config, state_path)
    assert len(resolved) == 4  # the next rebuild (the next load) resolves every path again
    x = torch.randn(2, 4)
    assert_same(model, first, x)
    assert_same(model, second, x)


def _ordered_blocks() -> nn.Module:
    """torchvision densenet / brain-segmentation UNet style: named layers in an OrderedDict, nested."""
    from collections import OrderedDict

    block = nn.Sequential(OrderedDict([("conv1", nn.Conv2d(3, 4, 3, padding=1)), ("norm1", nn.BatchNorm2d(4)),
                                       ("relu1", nn.ReLU(inplace=True))]))  # fmt: skip
    return nn.Sequential(OrderedDict(features=block, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
                                     zfc=nn.Linear(4, 2), act=nn.Tanh())).eval()  # fmt: skip


def test_sequential_of_an_ordered_dict_is_rebuilt_in_order(tmp_path: Path) -> None:
    """``nn.Sequential(OrderedDict(...))`` is recorded as ``$odict`` pairs (order kept: canonical JSON would
    sort an object's keys, and a Sequential runs its children in order) and rebuilt by trusted."""
    orig, config, state = record(_ordered_blocks, tmp_path)
    assert config["root"]["args"][0]["$odict"][0][0] == "features"
    assert [k for k, _ in config["root"]["args"][0]["$odict"]] == ["features", "pool", "flat", "zfc", "act"]
    model = rebuild(config, state)
    assert list(dict(model.named_children())) == ["features", "pool", "flat", "zfc", "act"]
    assert list(dict(model.features.named_children())) == ["conv1", "norm1", "relu1"]
    assert_same(orig, model, torch.randn(2, 3, 5, 5))
    assert model.state_dict().keys() == orig.state_dict().keys()


@pytest.mark.parametrize(
    ("odict", "message"),
    [
        ([["fc", {"$module": {"ref": "fc"}}], ["fc", {"$module": {"ref": "fc"}}]], "names key 'fc' twice"),
        ([["fc"]], "item 0 must be a [string key, value] pair"),
        ([[1, {"$module": {"ref": "fc"}}]], "item 0 must be a [string key, value] pair"),
        ({"fc": {"$module": {"ref": "fc"}}}, "malformed or unknown tagged value '$odict'"),
        ([["fc", {"$function": "os:system"}]], "os:system"),
    ],
)
def test_forged_ordered_dict_argument_is_refused(tmp_path: Path, odict: Any, message: str) -> None:
    from collections import OrderedDict

    _, config, state = record(lambda: nn.Sequential(OrderedDict(fc=nn.Linear(2, 2))), tmp_path)
    config["root"]["args"] = [{"$odict": odict}]
    with pytest.raises(ReconstructRefused) as exc:
        reconstruct(config=config, state_path=state, export=None, strategies=["trusted"], trusted_modules=["torch.nn"],
                    tree=None)  # fmt: skip
    assert exc.value.code == "reconstruct-refused"
    assert message in str(exc.value)
