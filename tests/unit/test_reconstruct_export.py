"""The ``export`` strategy: a repo-defined class comes back as ExportedProgram.module(), no pickle."""

from __future__ import annotations

import importlib.util
import json
import pickle
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from securehub.errors import ReconstructRefused
from securehub.reconstruct.export_schema import is_attribute_path
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.child import record as _record
from securehub.sandbox.child.result import collect_tensors, export_program, write_state
from securehub.sandbox.wire.messages import ExportInfo, parse_export

REPO_MODEL = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.head = nn.Linear(width, 4)
            self.register_buffer("bias2", torch.linspace(0, 1, 4), persistent=False)

        def forward(self, x):
            y = torch.relu(self.bn(self.conv(x)))
            return self.head(y.mean(dim=(2, 3))) + self.bias2
    """
)


def load_repo_module(tmp_path: Path) -> types.ModuleType:
    """A class defined in a repo file (not an installed package), imported like hubconf would."""
    src = tmp_path / "repo" / "acme_models.py"
    src.parent.mkdir()
    src.write_text(REPO_MODEL)
    spec = importlib.util.spec_from_file_location("acme_models_for_export_test", src)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def record_with_export(
    tmp_path: Path, inputs: tuple[torch.Tensor, ...]
) -> tuple[nn.Module, dict[str, Any], Path, ExportInfo]:
    module = load_repo_module(tmp_path)
    try:
        torch.manual_seed(0)
        with _record.recording():
            model = module.Net(6)
        model.train()
        model(torch.randn(4, 3, 5, 5))  # non-default BatchNorm statistics
        model.eval()
        config = _record.describe(model, tree=tmp_path / "repo")
        tensors, aliases = collect_tensors(model)
        config["aliases"] = aliases
        package = export_program(model, inputs, tensors, aliases)
        state_path = tmp_path / "state.safetensors"
        write_state(tensors, state_path)
    finally:
        sys.modules.pop("acme_models_for_export_test", None)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    return model, json.loads(json.dumps(config)), state_path, export


def test_repo_class_is_rebuilt_from_the_exported_program(tmp_path: Path) -> None:
    x = torch.randn(2, 3, 5, 5)
    orig, config, state, export = record_with_export(tmp_path, (x,))
    assert config["root"]["origin"]["kind"] == "tree"
    model, strategy = reconstruct(
        config=config, state_path=state, export=export, strategies=["trusted", "export"],
        trusted_modules=["torch.nn"], tree=tmp_path / "repo",
    )  # fmt: skip
    assert strategy == "export"
    assert isinstance(model, nn.Module)
    with torch.no_grad():
        assert torch.equal(model(x), orig(x))
        y = torch.randn(2, 3, 5, 5)
        assert torch.equal(model(y), orig(y))


def test_export_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(1, 3, 5, 5)
    orig, config, state, export = record_with_export(tmp_path, (x,))

    def no_unpickling(*a: object, **k: object) -> None:
        raise AssertionError("unpickling attempted in the parent")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    model, strategy = reconstruct(
        config=config, state_path=state, export=export, strategies=["export"], trusted_modules=[], tree=None
    )
    assert strategy == "export"
    with torch.no_grad():
        assert torch.equal(model(x), orig(x))


def test_export_error_reported_as_reason(tmp_path: Path) -> None:
    x = torch.randn(1, 3, 5, 5)
    _, config, state, _ = record_with_export(tmp_path, (x,))
    config["export_error"] = "torch._dynamo.exc.Unsupported: data-dependent control flow"
    with pytest.raises(ReconstructRefused) as exc:
        reconstruct(
            config=config, state_path=state, export=None, strategies=["trusted", "export"],
            trusted_modules=["torch.nn"], tree=None,
        )  # fmt: skip
    assert "export: torch.export failed in the sandbox: torch._dynamo.exc.Unsupported" in str(exc.value)


def test_export_missing_tensor_is_mismatch(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    x = torch.randn(1, 3, 5, 5)
    _, config, state, export = record_with_export(tmp_path, (x,))
    tensors = load_file(str(state))
    del tensors["conv.weight"]
    save_file(tensors, str(state))
    with pytest.raises(Exception) as exc:
        reconstruct(
            config=config, state_path=state, export=export, strategies=["export"], trusted_modules=[], tree=None
        )
    assert getattr(exc.value, "code", None) == "reconstruct-mismatch"


def test_sequential_with_numeric_submodule_names_exports(tmp_path: Path) -> None:
    """nn.Sequential names its children "0", "1", ...: graph attributes like "0.weight" are legitimate."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    x = torch.randn(2, 4)
    rebuilt, _ = _export_and_rebuild(tmp_path, model, (x,))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


class _DigitLedParameter(nn.Module):
    """once-for-all's DynamicSeparableConv2d registers ``5to3_matrix``: a name register_parameter admits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 5, padding=2, groups=2, bias=False)
        self.register_parameter("5to3_matrix", nn.Parameter(torch.eye(9) + 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv.weight[:, :, 1:4, 1:4].reshape(-1, 9)
        w = torch.nn.functional.linear(w, getattr(self, "5to3_matrix")).reshape(2, 1, 3, 3)
        return torch.nn.functional.conv2d(x, w, None, 1, 1, 1, 2)


def test_digit_led_parameter_name_exports(tmp_path: Path) -> None:
    """Before round 9 the parent refused such a program ("... is not a dotted attribute name")."""
    torch.manual_seed(1)
    model = _DigitLedParameter().eval()
    x = torch.randn(2, 2, 6, 6)
    rebuilt, _ = _export_and_rebuild(tmp_path, model, (x,))
    assert "5to3_matrix" in rebuilt.state_dict()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


class _GPUNetNames(nn.Module):
    """NVIDIA's GPUNet adds its layers with ``add_module("head: 1", ...)``, ``"stage: 2 layer3"``, ``" layer7"``."""

    def __init__(self) -> None:
        super().__init__()
        self.network = nn.Sequential()
        self.network.add_module("head: 1", nn.Conv2d(2, 3, 3, padding=1))
        self.network.add_module("stage: 2 layer3", nn.BatchNorm2d(3))
        self.network.add_module(" layer7", nn.Conv2d(3, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def test_module_names_with_spaces_and_colons_export(tmp_path: Path) -> None:
    """Before round 12 the parent refused GPUNet's program ("'network.head: 1.weight' is not a dotted attribute
    name")."""
    torch.manual_seed(1)
    model = _GPUNetNames().eval()
    x = torch.randn(2, 2, 5, 5)
    rebuilt, _ = _export_and_rebuild(tmp_path, model, (x,))
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert "network.stage: 2 layer3.running_mean" in rebuilt.state_dict()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


class _RegNetNames(nn.Module):
    """facebookresearch/SWAG's (and torchvision's) RegNet: ``self.add_module(f"block{stage_index}-{i}", block)``."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk_output = nn.Sequential()
        stage = nn.Sequential()
        for i in range(2):
            stage.add_module(f"block1-{i}", nn.Conv2d(2, 2, 3, padding=1))
        self.trunk_output.add_module("block1", stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk_output(x)


def test_module_names_with_hyphens_export(tmp_path: Path) -> None:
    """Before round 13 the parent refused SWAG's regnety_16gf ("an input spec name
    'trunk_output.block1.block1-0.proj.weight' is not a dotted attribute name")."""
    torch.manual_seed(1)
    model = _RegNetNames().eval()
    x = torch.randn(2, 2, 5, 5)
    rebuilt, _ = _export_and_rebuild(tmp_path, model, (x,))
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert "trunk_output.block1.block1-1.weight" in rebuilt.state_dict()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("name", ["5to3_matrix", "blocks.1.conv.7to5_matrix", "0", "a.0.b_1", "a b", "stage:2",
                                  "network.head: 1.net.0.weight", "network. layer7.net.6.weight",
                                  "trunk_output.block1.block1-0.proj.weight", "a-b", "-a-"])  # fmt: skip
def test_attribute_paths_of_word_components_are_admitted(name: str) -> None:
    assert is_attribute_path(name)


@pytest.mark.parametrize("name", ["", "a..b", ".a", "a.", "a'b", 'a"b', "a\\b", "a\tb", "a\nb", "a. .b", "a.:.b",
                                  "a.(b)", "a{b}", "\u00e9t\u00e9", "a.-.b", "a.- .b", "a\u2010b", "a\u00a0b",
                                  "x" * 257])  # fmt: skip
def test_attribute_paths_with_anything_else_are_refused(name: str) -> None:
    assert not is_attribute_path(name)


def _export_and_rebuild(tmp_path: Path, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[nn.Module, Any]:
    """``model`` exported as the child does and rebuilt as the parent does (export strategy); and the package."""
    config = _record.describe(model)
    tensors, aliases = collect_tensors(model)
    config["aliases"] = aliases
    package = export_program(model, inputs, tensors, aliases)
    state_path = tmp_path / "state.safetensors"
    write_state(tensors, state_path)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    rebuilt, strategy = reconstruct(
        config=json.loads(json.dumps(config)), state_path=state_path, export=export, strategies=["export"],
        trusted_modules=["torch.nn"], tree=None,
    )  # fmt: skip
    assert strategy == "export"
    return rebuilt, package


def test_batch_one_example_exports_a_dynamic_batch(tmp_path: Path) -> None:
    torch.manual_seed(3)
    orig, config, state, export = record_with_export(tmp_path, (torch.randn(1, 3, 5, 5),))
    assert export.dynamic_batch is True
    model, strategy = reconstruct(
        config=config, state_path=state, export=export, strategies=["export"], trusted_modules=[], tree=None
    )
    assert strategy == "export"
    with torch.no_grad():
        for batch in (1, 5):
            x = torch.randn(batch, 3, 5, 5)
            assert torch.equal(model(x), orig(x))


class _VarArgs(nn.Module):
    """DINOv2's signature: ``forward(self, *args, is_training=False, **kwargs)``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, *args: torch.Tensor, is_training: bool = False, **kwargs: object) -> torch.Tensor:
        return self.fc(args[0])


class _SplitInstanceNorm(nn.Module):
    """IBN-Net's IBN block: instance norm over one half of the channels (torch specialises a batch of 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.conv(x), 4, 1)
        return torch.cat((self.inorm(a.contiguous()), self.bn(b.contiguous())), 1).mean((2, 3))


@pytest.mark.parametrize(
    ("model_class", "example"),
    [(_VarArgs, (2, 4)), (_VarArgs, (1, 4)), (_SplitInstanceNorm, (1, 3, 8, 8)), (_SplitInstanceNorm, (2, 3, 8, 8))],
    ids=["varargs-batch2", "varargs-batch1", "split-inorm-batch1", "split-inorm-batch2"],
)
def test_real_repo_forwards_export_a_dynamic_batch(
    tmp_path: Path, model_class: type[nn.Module], example: tuple[int, ...]
) -> None:
    """Real repos (DINOv2, IBN-Net) were exported with their example's batch size fixed, silently."""
    torch.manual_seed(4)
    model = model_class().eval()
    rebuilt, package = _export_and_rebuild(tmp_path, model, (torch.randn(*example),))
    assert package.dynamic_batch is True
    with torch.no_grad():
        for batch in (1, 2, 5):
            x = torch.randn(batch, *example[1:])
            assert torch.allclose(rebuilt(x), model(x), atol=1e-6)


class _FusedConv(nn.Module):
    """yolov5's ``fuse_conv_and_bn``: the BatchNorm is folded into a new conv with gradients enabled."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)

    def fuse(self) -> _FusedConv:
        fused = nn.Conv2d(3, 4, 3, bias=True).requires_grad_(False)
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        fused.weight.copy_(self.conv.weight * scale.view(-1, 1, 1, 1))  # non-leaf: the source requires grad
        fused.bias.copy_(self.bn.bias - self.bn.running_mean * scale)
        self.conv = fused
        del self.bn
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).relu()


def test_fused_non_leaf_weights_still_export_a_dynamic_batch(tmp_path: Path) -> None:
    """ExportedProgram.module() refuses non-leaf parameters: the check fell back to static shapes."""
    torch.manual_seed(5)
    model = _FusedConv().fuse().eval()
    assert model.conv.weight.grad_fn is not None
    rebuilt, package = _export_and_rebuild(tmp_path, model, (torch.randn(1, 3, 6, 6),))
    assert package.dynamic_batch is True
    assert model.conv.weight.grad_fn is not None  # the child's model itself is left as it was
    with torch.no_grad():
        x = torch.randn(3, 3, 6, 6)
        assert torch.allclose(rebuilt(x), model(x), atol=1e-6)


def test_batch_dependent_model_falls_back_to_static_export() -> None:
    class ByBatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * 2 if x.shape[0] == 3 else self.fc(x)

    model = ByBatch().eval()
    tensors, aliases = collect_tensors(model)
    package = export_program(model, (torch.randn(3, 4),), tensors, aliases)
    assert package.dynamic_batch is False and package.meta()["dynamic_batch"] is False


def _expression(expr: str) -> object:
    from securehub.reconstruct import symexpr as _symexpr

    return _symexpr.build(_symexpr.parse(expr), expr, {})


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s0').__class__",
        "Symbol('s0', integer=True).func",
        "Function('system')(Symbol('s0'))",
        "Symbol('os; x')",
        'Symbol("s0")',
        "Symbol('s0')[0]",
        "Integer(lambda: 1)",
    ],
)
def test_symbolic_expression_in_srepr_form_refused(expr: str) -> None:
    with pytest.raises(ReconstructRefused) as exc:
        _expression(expr)
    assert exc.value.code == "reconstruct-refused"


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "Add(Mul(Integer(3), Symbol('s17', positive=True, integer=True)), Integer(1))",
        "2*s0 + 1",
        "Float('1.5', precision=53)",
    ],
)
def test_symbolic_expression_plain_arithmetic_accepted(expr: str) -> None:
    import sympy  # type: ignore[import-untyped]

    assert _expression(expr) == sympy.sympify(expr)  # what torch would have built, without eval


def _small_program() -> dict[str, Any]:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    tensors, aliases = collect_tensors(model)
    package = export_program(model, (torch.randn(2, 4),), tensors, aliases)
    program: dict[str, Any] = json.loads(package.program_json)
    return program


@pytest.mark.parametrize(
    "constraints",
    [
        {"__import__('os')": {"min_val": 1, "max_val": None}},
        {"s0": {"min_val": "1", "max_val": None}},
        {"s0": {"min_val": 1}},
        ["s0"],
    ],
)
def test_malformed_range_constraints_refused(constraints: Any) -> None:
    from securehub.reconstruct.export import sanitize_program_json

    program = _small_program()
    assert sanitize_program_json(json.dumps(program).encode())  # the legit program passes
    program["range_constraints"] = constraints
    with pytest.raises(ReconstructRefused) as exc:
        sanitize_program_json(json.dumps(program).encode())
    assert exc.value.code == "reconstruct-refused"


def test_dynamic_batch_with_sym_size_arithmetic_is_accepted(tmp_path: Path) -> None:
    """x.size(0) in forward: sym_size nodes, operator.mul on sizes, Mul(...) expressions."""

    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(12, 2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b = x.size(0)
            y = x.reshape(b * 2, -1).reshape(b, -1)
            return self.fc(y), y.new_zeros(b * 3 + 1)

    torch.manual_seed(4)
    orig = Flat().eval()
    tensors, aliases = collect_tensors(orig)
    package = export_program(orig, (torch.randn(1, 3, 4),), tensors, aliases)
    assert package.dynamic_batch is True
    program = package.program_json.decode()
    assert "torch.ops.aten.sym_size.int" in program and "Mul(Integer(2), Symbol(" in program
    state_path = tmp_path / "state.safetensors"
    write_state(tensors, state_path)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    model, _ = reconstruct(
        config={"root": {"class": "tests.unit:Flat"}},
        state_path=state_path,
        export=export,
        strategies=["export"],
        trusted_modules=[],
        tree=None,
    )
    with torch.no_grad():
        for batch in (1, 5):
            x = torch.randn(batch, 3, 4)
            for a, b in zip(model(x), orig(x), strict=True):
                assert a.shape == b.shape and torch.equal(a, b)


class _ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.ln = nn.LayerNorm(8)
        self.ff = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.att(x, x, x)
        x = self.ln(x + a)
        return x + self.ff(x)


class _NoGradInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # the program calls the higher-order op wrap_with_set_grad_enabled
            y = self.fc(x)
        return y * 2 + self.fc(x)


class _Autocast(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):  # wrap_with_autocast
            y = self.fc(x)
        return y.float()


class _Cond(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda t: self.fc(t), lambda t: t * 2, (x,))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("factory", "shape", "hop"),
    [
        (_ConvBN, (2, 3, 8, 8), None),
        (_Attention, (2, 5, 8), None),
        (_NoGradInside, (3, 4), "wrap_with_set_grad_enabled"),
        (_Autocast, (3, 4), "wrap_with_autocast"),
        (_Cond, (3, 4), "cond"),
        (lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()), (1, 3, 6, 6), None),
    ],
    ids=["conv-batchnorm", "attention-layernorm-gelu", "no-grad-inside", "autocast", "cond", "batch-of-one"],
)
def test_legitimate_programs_pass_the_allowlist(
    tmp_path: Path, factory: Any, shape: tuple[int, ...], hop: str | None
) -> None:
    """The allowlist is not too tight: common layers and higher-order ops load and compute the same."""
    torch.manual_seed(5)
    model = factory().eval()
    tensors, aliases = collect_tensors(model)
    package = export_program(model, (torch.randn(*shape),), tensors, aliases)
    assert package.dynamic_batch is True
    if hop is not None:
        assert f"torch.ops.higher_order.{hop}" in package.program_json.decode()
    state_path = tmp_path / "state.safetensors"
    write_state(tensors, state_path)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    rebuilt, _ = reconstruct(
        config={"root": {"class": "tests.unit:Legit"}},
        state_path=state_path,
        export=export,
        strategies=["export"],
        trusted_modules=[],
        tree=None,
    )
    with torch.no_grad():
        for batch in (shape[0], shape[0] + 2):
            x = torch.randn(batch, *shape[1:])
            assert torch.allclose(rebuilt(x), model(x), atol=1e-5)


class _Fn(nn.Module):
    """A layer-free forward (functional ops real repos call in forward), with one conv so there is state."""

    def __init__(self, fn: Any, channels: int = 3) -> None:
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.conv(x) if x.dim() == 4 else x)


_WINDOW = torch.hann_window(16)


def _interp(mode: str, **kw: Any) -> Any:
    return lambda: _Fn(lambda x: nn.functional.interpolate(x, scale_factor=kw.pop("scale", 2), mode=mode, **kw))


def _rnn(cls: Any) -> Any:
    class _Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = cls(8, 8, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rnn(x)[0]

    return _Seq


class _PaddedAttention(nn.Module):
    """DETR's encoder: attention with a key padding mask, i.e. ``masked_fill(mask, float("-inf"))``, which
    torch serialises as the string ``"-Infinity"`` (refused as "not a number" before)."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = x[..., 0].transpose(0, 1) > 0.8  # (batch, seq): padded where True
        return self.attn(x, x, x, key_padding_mask=mask)[0].nan_to_num(nan=0.0, posinf=float("inf"))


_LAYER_FAMILIES: list[tuple[str, Any, tuple[int, ...]]] = [
    ("upsample-nearest", _interp("nearest"), (2, 3, 6, 6)),
    ("upsample-nearest-exact", _interp("nearest-exact"), (2, 3, 6, 6)),
    ("upsample-bilinear", _interp("bilinear", align_corners=False), (2, 3, 6, 6)),
    ("upsample-bicubic", _interp("bicubic", align_corners=True), (2, 3, 6, 6)),
    ("downsample-bilinear-antialias", _interp("bilinear", scale=0.5, antialias=True), (2, 3, 8, 8)),
    ("downsample-bicubic-antialias", _interp("bicubic", scale=0.5, antialias=True), (2, 3, 8, 8)),
    ("weight-norm", lambda: nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 4, 3)), (2, 4, 10)),
    ("weight-norm-hooks", lambda: nn.utils.weight_norm(nn.Conv1d(4, 4, 3)), (2, 4, 10)),
    ("spectral-norm", lambda: nn.utils.parametrizations.spectral_norm(nn.Linear(6, 6)), (2, 6)),
    ("lstm", _rnn(nn.LSTM), (2, 5, 8)),
    ("gru", _rnn(nn.GRU), (2, 5, 8)),
    ("norms", lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.InstanceNorm2d(4, affine=True),
                                    nn.LocalResponseNorm(2)), (2, 3, 8, 8)),
    ("rms-norm", lambda: nn.Sequential(nn.Linear(8, 8), nn.RMSNorm(8), nn.Mish(), nn.Hardswish()), (2, 8)),
    ("pixel-shuffle-convtranspose", lambda: nn.Sequential(nn.ConvTranspose2d(3, 8, 2, 2), nn.PixelShuffle(2),
                                                          nn.MaxPool2d(2), nn.AdaptiveMaxPool2d(3)), (2, 3, 4, 4)),
    ("conv3d", lambda: nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2), nn.AdaptiveAvgPool3d(1)), (2, 1, 5, 5, 5)),
    ("sdpa-causal", lambda: _Fn(lambda x: nn.functional.scaled_dot_product_attention(x, x, x, is_causal=True)),
     (2, 3, 5, 8)),
    ("stft-fft", lambda: _Fn(lambda x: torch.stft(x, 16, hop_length=4, window=_WINDOW, return_complex=True).abs().sum(1)
                             + torch.fft.irfft(torch.fft.rfft(x), n=x.shape[-1])[..., :1]), (2, 64)),
    ("attention-key-padding-mask", _PaddedAttention, (5, 2, 8)),
    ("half-precision-softmax", lambda: _Fn(lambda x: x.half().softmax(-1).float() + x.bfloat16().float()),
     (2, 3, 4, 4)),
]  # fmt: skip


@pytest.mark.parametrize(("factory", "shape"), [(f, s) for _, f, s in _LAYER_FAMILIES],
                         ids=[n for n, _, _ in _LAYER_FAMILIES])  # fmt: skip
def test_common_layer_families_pass_the_allowlist(tmp_path: Path, factory: Any, shape: tuple[int, ...]) -> None:
    """What real hub models export (upsampling in every mode, weight/spectral norm, RNNs, norms, audio front
    ends, mixed precision) is admitted by the operator allowlist and computes the same after the rebuild --
    every operator refusal added against forged programs is checked against these."""
    torch.manual_seed(6)
    model = factory().eval()
    x = torch.randn(*shape)
    rebuilt, _ = _export_and_rebuild(tmp_path, model, (x,))
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-5)
