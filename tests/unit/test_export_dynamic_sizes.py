"""Exported programs take other input sizes where torch can make them symbolic, not only other batch sizes.

chenyaofo's CIFAR ResNet, locked with ``--example-input auto`` (which found
1x3x224x224 first), refused the 32x32 images every CIFAR user feeds it: only
dim 0 was symbolic. The child now tries every non-batch dim as ``Dim.AUTO``
first and keeps that program only if it matches the model at the example
size and at another; the parent checks the meta's ``dynamic_dims`` against
the program and explains a wrong size from the program's own shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from securehub.errors import ReconstructRefused, SandboxProtocol
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.child import record as _record
from securehub.sandbox.child import result as _result
from securehub.sandbox.child.result import ExportPackage, collect_tensors, export_program, write_state
from securehub.sandbox.wire.messages import ExportInfo, parse_export


class _AdaptiveConvNet(nn.Module):
    """A CIFAR-ResNet-like net: strided convs, adaptive pooling (any input size works)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv2(torch.relu(self.bn(self.conv1(x)))))
        return self.fc(torch.flatten(self.pool(y), 1))


class _PatchViT(nn.Module):
    """Fixed position embeddings for a 16x16 image of 4x4 patches: torch specialises H and W."""

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.pos = nn.Parameter(torch.randn(1, 16, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.head(tokens.mean(1))


class _IBNTail(nn.Module):
    """IBN-Net-like: instance norm over half the channels, /32 downsampling, ``AvgPool2d(7)`` at 224x224."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.down = nn.Sequential(*[nn.MaxPool2d(3, 2, 1) for _ in range(4)])
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AvgPool2d(7)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.down(self.conv(x)), 4, 1)
        y = torch.cat((self.inorm(a.contiguous()), self.bn(b.contiguous())), 1)
        return self.fc(self.pool(y).flatten(1))


def _export(model: nn.Module, inputs: tuple[torch.Tensor, ...], tmp_path: Path) -> tuple[ExportPackage, Path]:
    tensors, aliases = collect_tensors(model)
    package = export_program(model, inputs, tensors, aliases)
    state_path = tmp_path / "state.safetensors"
    write_state(tensors, state_path)
    return package, state_path


def _rebuild(model: nn.Module, state_path: Path, export: ExportInfo) -> nn.Module:
    config = _record.describe(model)
    config["aliases"] = {}
    rebuilt, strategy = reconstruct(
        config=json.loads(json.dumps(config)), state_path=state_path, export=export, strategies=["export"],
        trusted_modules=["torch.nn"], tree=None,
    )  # fmt: skip
    assert strategy == "export"
    return rebuilt


def _meta(package: ExportPackage, **changes: Any) -> ExportInfo:
    meta = json.loads(json.dumps(package.meta())) | changes
    return parse_export({k: v for k, v in meta.items() if v is not _DROP}, package.program_json)


_DROP = object()


def test_conv_net_exported_at_32x32_runs_at_48x40_like_the_eager_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _AdaptiveConvNet().eval()
    package, state = _export(model, (torch.randn(1, 3, 32, 32),), tmp_path)
    assert package.dynamic_batch is True and package.dynamic_dims == [[0, 2, 3]]
    export = _meta(package)
    assert export.dynamic_dims == ((0, 2, 3),)
    rebuilt = _rebuild(model, state, export)
    with torch.no_grad():
        for shape in ((2, 3, 48, 40), (1, 3, 32, 32), (3, 3, 224, 224), (1, 3, 7, 9)):
            x = torch.randn(*shape)
            assert torch.allclose(rebuilt(x), model(x), atol=1e-5), shape
    with pytest.raises(RuntimeError) as excinfo:
        rebuilt(torch.randn(1, 4, 32, 32))  # the channel count is fixed by the weights
    message = str(excinfo.value)
    assert "takes inputs shaped input 0 (*, 3, *, *)" in message and "fixed: input 0 dim 1 = 3." in message


def test_vit_with_fixed_position_embeddings_exports_static_hw_and_loads(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _PatchViT().eval()
    package, state = _export(model, (torch.randn(1, 3, 16, 16),), tmp_path)
    assert package.dynamic_batch is True and package.dynamic_dims == [[0]]
    rebuilt = _rebuild(model, state, _meta(package))
    with torch.no_grad():
        x = torch.randn(3, 3, 16, 16)
        assert torch.allclose(rebuilt(x), model(x), atol=1e-6)
    with pytest.raises(RuntimeError) as excinfo:
        rebuilt(torch.randn(1, 3, 20, 20))
    message = str(excinfo.value)
    assert "takes inputs shaped input 0 (*, 3, 16, 16)" in message
    assert "fixed: input 0 dim 1 = 3, input 0 dim 2 = 16, input 0 dim 3 = 16." in message
    assert "--example-input" in message and "only the batch size may differ" not in message


@pytest.mark.parametrize("batch", [1, 2])
def test_a_model_that_fails_the_sized_export_still_exports_and_leaves_the_inputs_unmarked(
    tmp_path: Path, batch: int
) -> None:
    """IBN-Net at 224: the failed Dim.AUTO attempt marked the example tensors, and the static fallback then
    traced them symbolically and died in sympy (NotImplementedError escaped export_program)."""
    torch.manual_seed(2)
    model = _IBNTail().eval()
    x = torch.randn(batch, 3, 224, 224)
    package, state = _export(model, (x,), tmp_path)
    assert package.dynamic_dims == [[0]]
    assert not any(name.startswith("_dynamo") for name in vars(x))  # the attempts traced copies
    rebuilt = _rebuild(model, state, _meta(package))
    with torch.no_grad():
        y = torch.randn(3, 3, 224, 224)
        assert torch.allclose(rebuilt(y), model(y), atol=1e-5)


def test_the_static_fallback_after_a_failed_sized_attempt_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback itself: the sized attempt fails on the very tensors the static export then traces."""
    torch.manual_seed(2)
    model = _IBNTail().eval()
    monkeypatch.setattr(_result, "_export_dynamic_batch", lambda module, inputs: None)
    package, state = _export(model, (torch.randn(2, 3, 224, 224),), tmp_path)
    assert package.dynamic_batch is False and package.dynamic_dims == [[]]
    rebuilt = _rebuild(model, state, _meta(package))
    with torch.no_grad():
        y = torch.randn(2, 3, 224, 224)
        assert torch.allclose(rebuilt(y), model(y), atol=1e-5)


def test_a_static_program_is_recorded_as_such(tmp_path: Path) -> None:
    class ByBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * 2 if x.shape[0] == 3 else self.fc(x)

    package, _ = _export(ByBatch().eval(), (torch.randn(3, 4),), tmp_path)
    assert package.dynamic_batch is False and package.meta()["dynamic_dims"] == [[]]


@pytest.mark.parametrize(
    ("model_class", "size", "forged"),
    [
        (_AdaptiveConvNet, 32, [[0]]),
        (_AdaptiveConvNet, 32, [[0, 2]]),
        (_PatchViT, 16, [[0, 2, 3]]),
        (_PatchViT, 16, []),
    ],
    ids=["dynamic-claimed-batch-only", "dynamic-claimed-h-only", "static-claimed-dynamic", "static-claimed-no-input"],
)
def test_an_export_meta_that_disagrees_with_its_program_is_refused(
    tmp_path: Path, model_class: type[nn.Module], size: int, forged: list[list[int]]
) -> None:
    torch.manual_seed(3)
    model = model_class().eval()
    package, state = _export(model, (torch.randn(1, 3, size, size),), tmp_path)
    with pytest.raises(ReconstructRefused) as excinfo:
        _rebuild(model, state, _meta(package, dynamic_dims=forged))
    assert excinfo.value.code == "reconstruct-refused"
    assert "the child's meta says the program's symbolic input dims are" in str(excinfo.value)


def test_a_meta_without_dynamic_dims_still_loads_and_explains_from_the_program(tmp_path: Path) -> None:
    """Results cached before the meta named the dims: nothing that matters depended on the meta."""
    torch.manual_seed(4)
    model = _PatchViT().eval()
    package, state = _export(model, (torch.randn(1, 3, 16, 16),), tmp_path)
    export = _meta(package, dynamic_dims=_DROP, dynamic_batch=False)  # a lie about the batch: display only
    assert export.dynamic_dims is None and "dynamic_dims" not in export.to_meta()
    rebuilt = _rebuild(model, state, export)
    with torch.no_grad():
        x = torch.randn(2, 3, 16, 16)
        assert torch.allclose(rebuilt(x), model(x), atol=1e-6)
    with pytest.raises(RuntimeError, match=r"fixed: input 0 dim 1 = 3, input 0 dim 2 = 16, input 0 dim 3 = 16\."):
        rebuilt(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize(
    "value",
    [True, "0,2,3", [[0, 2, 3], "1"], [[2, 0]], [[0, 0]], [[-1]], [[64]], [[0.0]], [[True]], [None], [[0]] * 1025, {}],
)
def test_a_malformed_dynamic_dims_is_refused(value: Any) -> None:
    meta = {"format": "securehub-export/1", "state": {}, "constants": {}, "parameters": [], "dynamic_dims": value}
    with pytest.raises(SandboxProtocol) as excinfo:
        parse_export(meta, b"{}")
    assert excinfo.value.code == "sandbox-protocol"


def test_an_unknown_export_meta_key_is_refused() -> None:
    meta = {"format": "securehub-export/1", "state": {}, "constants": {}, "parameters": [], "dynamic_hw": [[0]]}
    with pytest.raises(SandboxProtocol) as excinfo:
        parse_export(meta, b"{}")
    assert excinfo.value.code == "sandbox-protocol" and "unexpected ['dynamic_hw']" in str(excinfo.value)


@pytest.mark.parametrize("model_class", [_PatchViT, _IBNTail], ids=["vit", "avgpool7"])
def test_a_model_whose_sizes_torch_fixes_keeps_its_batch_only_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_class: type[nn.Module]
) -> None:
    """Its program_sha256 pin stays valid: the sized attempt is dropped, not kept with everything fixed."""
    torch.manual_seed(5)
    model = model_class().eval()
    x = torch.randn(1, 3, 16 if model_class is _PatchViT else 224, 16 if model_class is _PatchViT else 224)
    package, _ = _export(model, (x,), tmp_path)
    monkeypatch.setattr(_result, "_export_dynamic_sizes", lambda module, inputs: None)
    batch_only, _ = _export(model, (x,), tmp_path)
    assert package.dynamic_dims == batch_only.dynamic_dims == [[0]]
    assert package.program_json == batch_only.program_json


def _sized_program(model: nn.Module, x: torch.Tensor) -> Any:
    return torch.export.export(model, (x.clone(),), dynamic_shapes=_result._batch_shapes(model, (x,), sizes=True))


def test_the_size_check_skips_sizes_the_model_rejects_and_checks_the_next() -> None:
    torch.manual_seed(6)
    model = _AdaptiveConvNet().eval()
    x = torch.randn(2, 3, 32, 32)
    ep = _sized_program(model, x)
    seen: list[tuple[int, ...]] = []

    def even_only(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape))
        if t.shape[2] % 2:
            raise RuntimeError("odd sizes rejected")
        return model(t)

    with torch.no_grad():
        assert _result._checked_other_sizes(even_only, ep.module(), ep, (x,)) is True  # type: ignore[arg-type]
    assert seen == [(2, 3, 33, 33), (2, 3, 34, 34)]


def test_the_size_check_fails_when_the_model_rejects_every_size_or_the_program_differs() -> None:
    torch.manual_seed(6)
    model = _AdaptiveConvNet().eval()
    x = torch.randn(2, 3, 32, 32)
    ep = _sized_program(model, x)

    def rejects(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("only 32x32")

    def differs_elsewhere(t: torch.Tensor) -> torch.Tensor:
        return model(t) + (t.shape[2] != 32)

    with torch.no_grad():
        assert _result._checked_other_sizes(rejects, ep.module(), ep, (x,)) is False  # type: ignore[arg-type]
        assert _result._checked_other_sizes(differs_elsewhere, ep.module(), ep, (x,)) is False  # type: ignore[arg-type]
        assert _result._checked_other_sizes(model, ep.module(), ep, (x,)) is True
