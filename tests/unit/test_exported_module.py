"""securehub.reconstruct.exported_module: what the export strategy returns behaves and saves like a model (issue 10).

Built through the same child-side code (collect_tensors/export_program) and the parent's reconstruct(),
with hand-built configs where a test needs a hostile one.
"""

from __future__ import annotations

import copy
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from securehub.errors import ReconstructRefused
from securehub.reconstruct.exported_module import ExportedModule
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.child.record import frozen_parameters
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import ExportInfo, parse_export


class Tied(nn.Module):
    """Tied embedding/head, a frozen layer, batch-norm and dropout (mode-dependent behaviour)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(4, 4, bias=False)
        self.mid = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 4, bias=False)
        self.head.weight = self.emb.weight
        self.mid.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.bn(self.mid(self.emb(x)))))


def _exported(
    model: nn.Module | None = None, *, source: str = "acme.models:Tied", aliases: Any = None
) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    orig = (model or Tied()).eval()
    tensors, found_aliases = collect_tensors(orig)
    config: dict[str, Any] = {
        "format": "securehub-config/1",
        "root": {"class": source},
        "aliases": found_aliases if aliases is None else aliases,
        "frozen": frozen_parameters(orig),
    }
    package = export_program(orig, (torch.randn(3, 4),), tensors, found_aliases)
    export: ExportInfo = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    rebuilt, strategy = reconstruct(
        config=config, state=tensors, export=export, strategies=["export"], trusted_modules=[], tree=None
    )
    assert strategy == "export"
    return orig, rebuilt


def test_eval_works_and_training_is_false_everywhere() -> None:
    orig, model = _exported()
    assert isinstance(model, ExportedModule)
    assert type(model).__name__ == "ExportedModule"
    assert model.training is False and not any(m.training for m in model.modules())
    assert model.eval() is model
    assert model.train(False) is model
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.allclose(model(x), orig(x))


def test_train_raises_reconstruct_refused_saying_why_and_what_to_do() -> None:
    _, model = _exported()
    with pytest.raises(ReconstructRefused) as info:
        model.train()
    assert info.value.code == "reconstruct-refused"
    assert "acme.models:Tied" in info.value.message and "eval mode" in info.value.message
    assert "trusted or source" in info.value.message
    assert model.training is False  # the refused call changed nothing


def test_repr_and_attribute_name_the_source_class() -> None:
    _, model = _exported(source="acme.models:build.<locals>.Tied")
    assert isinstance(model, ExportedModule)
    assert model.securehub_source_class == "acme.models:build.<locals>.Tied"
    assert model.securehub_exported_training is False
    text = repr(model)
    assert text.startswith("ExportedModule(")
    assert "source_class='acme.models:build.<locals>.Tied'" in text and "exported_mode='eval'" in text


@pytest.mark.parametrize(
    ("recorded", "shown"),
    [
        ("_securehub_hubconf_" + "0" * 32 + ":Net", "hubconf:Net"),  # the child's private name for hubconf.py
        ("_securehub_hubconf_" + "0" * 32 + ":build.<locals>.Net", "hubconf:build.<locals>.Net"),
        ("pkg._securehub_hubconf_" + "0" * 32 + ":Net", "pkg._securehub_hubconf_" + "0" * 32 + ":Net"),
        ("_securehub_hubconf_" + "0" * 31 + ":Net", "_securehub_hubconf_" + "0" * 31 + ":Net"),
        # a class unpickled from a torch.package archive (silero's TTS models): torch.package's mangled module
        ("<torch_package_0>.tts_models:TinyTTS", "<torch_package_0>.tts_models:TinyTTS"),
        ("<torch_package_12>.pkg.tts:build.<locals>.Net", "<torch_package_12>.pkg.tts:build.<locals>.Net"),
    ],
)
def test_hubconf_classes_are_named_by_their_original_module(recorded: str, shown: str) -> None:
    """Issue 12: `securehub load` printed `exported from _securehub_hubconf_000...:Net`."""
    _, model = _exported(source=recorded)
    assert model.securehub_source_class == shown


def test_frozen_parameters_keep_requires_grad_false_and_ties_are_one_parameter() -> None:
    orig, model = _exported()
    want = {n: p.requires_grad for n, p in orig.named_parameters()}
    have = {n: p.requires_grad for n, p in model.named_parameters()}
    assert have == want  # same names (tied head.weight deduplicated as in the original), same flags
    assert model.get_submodule("head").weight is model.get_submodule("emb").weight
    assert list(model.state_dict()) == list(orig.state_dict())


def test_state_dicts_load_both_ways() -> None:
    orig, model = _exported()
    model.load_state_dict(orig.state_dict())
    fresh = Tied()
    fresh.load_state_dict(model.state_dict())
    fresh.eval()
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(fresh(x), model(x))


def test_state_dict_saves_with_torch_and_safetensors(tmp_path: Path) -> None:
    _, model = _exported(model=nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)))
    state = model.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)
    save_file(state, tmp_path / "s.safetensors")
    save_model(model, str(tmp_path / "m.safetensors"))
    for saved in (back, load_file(tmp_path / "s.safetensors"), load_file(tmp_path / "m.safetensors")):
        assert sorted(saved) == sorted(state)
        assert all(torch.equal(saved[k], state[k]) for k in state)


def test_tied_model_saves_with_save_model_and_reloads_tied(tmp_path: Path) -> None:
    orig, model = _exported()
    path = str(tmp_path / "tied.safetensors")
    save_model(model, path)
    fresh = Tied()
    load_model(fresh, path)
    assert fresh.head.weight is fresh.emb.weight
    assert torch.equal(fresh.emb.weight, orig.emb.weight)


def test_deepcopy_keeps_behaviour() -> None:
    _, model = _exported()
    clone = copy.deepcopy(model)
    assert isinstance(clone, ExportedModule)
    assert clone.securehub_source_class == "acme.models:Tied"
    clone.eval()
    with pytest.raises(ReconstructRefused):
        clone.train()
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(clone(x), model(x))


def test_alias_between_different_tensors_is_not_tied() -> None:
    """A hostile aliases map cannot make the parent merge two different weights."""
    orig, model = _exported(aliases={"mid.weight": "emb.weight", "head.weight": "emb.weight"})
    assert model.get_submodule("mid").weight is not model.get_submodule("emb").weight
    assert torch.equal(model.get_submodule("mid").weight, orig.mid.weight)


@pytest.mark.parametrize(
    "source",
    [
        "acme.models:Tied\n[securehub] signature verified",  # terminal/log line injection
        "acme.models:Tied\x1b[2J",
        "acme.models:Ti ed",
        "os:system('id')",
        "acme.<locals>:Tied",
        ":Tied",
        "acme.models:",
        "acme:" + "A" * 600,
        "acme.models:Tied\u202e",
        # torch.package's prefix is admitted once, at the start, in its exact form only
        "<torch_package_0>:Tied",
        "<torch_package_0>.<torch_package_1>.tts:Tied",
        "acme.<torch_package_0>.tts:Tied",
        "<torch_package_x>.tts:Tied",
        "<torch_package_0> .tts:Tied",
        "<torch_package_0>.tts:<torch_package_0>.Tied",
        "<torch_package_1234567890>.tts:Tied",
    ],
)
def test_malformed_source_class_is_refused_and_never_imported(source: str) -> None:
    before = set(sys.modules)
    with pytest.raises(ReconstructRefused) as info:
        _exported(source=source)
    assert info.value.code == "reconstruct-refused"
    assert "export" in info.value.message
    assert not {m for m in set(sys.modules) - before if m.startswith(("acme", "os."))}


def test_what_export_does_not_keep_is_an_attribute_error_that_says_why() -> None:
    """Real repos reach into their models (DINOv2's ``embed_dim``, MiDaS's ``backbone.act1``)."""
    _, model = _exported()
    for name in ("embed_dim", "forward_features", "drop"):  # drop: a parameter-free child (MiDaS's act1)
        with pytest.raises(AttributeError) as info:
            getattr(model, name)
        message = str(info.value)
        assert f"has no attribute {name!r}" in message
        assert "acme.models:Tied" in message and "export strategy" in message and "trusted or source" in message
    assert not hasattr(model, "__wrapped__")  # dunder lookups stay plain (copy, pickle, inspect probe them)
    assert model.head.weight is model.emb.weight


def test_an_input_of_another_shape_is_refused_by_torch_with_securehub_s_explanation() -> None:
    orig, model = _exported()
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(3, 5))
    message = str(info.value)
    assert "Expected input at *args[0].shape[1] to be equal to 4, but got 5" in message  # torch's own check
    assert "acme.models:Tied" in message and "--example-input" in message and "trusted or source" in message
    x = torch.randn(7, 4)  # another batch size is fine
    with torch.no_grad():
        assert torch.allclose(model(x), orig(x))
