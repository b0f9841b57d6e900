"""Attacks on the data attributes the ``export`` strategy carries (issue 10, SPEC section 7).

A model rebuilt by ``export`` used to lose every attribute the entrypoint set after construction
(``model.names = [...]``, ``model.cfg = {...}``): the user got a different model and no word of it.
The export strategy now carries the child's recorded ``replay.attrs`` onto the exported module under
the trusted strategy's rules, and refuses (``reconstruct-refused``) what it cannot carry.

The record comes from the child, which the entrypoint controls (it can monkeypatch the child's
recorder): a forged attribute named like a dunder (``__class__``), a method of the rebuilt module
(``forward``, ``eval``), an attribute the exported module already holds (``securehub_source_class``,
``meta``), a callable disguised as data, or a multi-megabyte value must be refused before the model
is returned, with nothing cached, nothing locked and no canary written.

Unit cases forge hand-built configs around a real exported program; end-to-end cases run a
malicious hubconf through the real git server, sandbox and torch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.reconstruct.build import MAX_REPLAY_ATTR_BYTES
from securehub.reconstruct.exported_module import ExportedModule
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.child.record import describe, recording
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import parse_export
from tests._hub_helpers import (
    FORGE_DESCRIBE,
    NEEDS_FULL_SANDBOX,
    HubEnv,
    Snapshot,
    audit_records,
    hub_env_context,
    publish,
)
from tests._servers import GitServer

X = torch.linspace(-1.0, 1.0, 8).reshape(2, 4)


class Net(nn.Module):
    """A class of the repository's own (not allowlisted): only export rebuilds it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _recorded(model_attrs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
    torch.manual_seed(0)
    with recording():
        model = Net()
    for name, value in model_attrs.items():
        setattr(model, name, value)
    model.eval()
    config = describe(model)
    tensors, aliases = collect_tensors(model)
    config["aliases"] = aliases
    package = export_program(model, (X,), tensors, aliases)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    return config, tensors, export


def _rebuild(config: dict[str, Any], tensors: dict[str, torch.Tensor], export: Any) -> nn.Module:
    model, strategy = reconstruct(
        config=config, state=tensors, export=export, strategies=["trusted", "export"],
        trusted_modules=["torch.nn"], tree=None,
    )  # fmt: skip
    assert strategy == "export"
    return model


def test_exported_model_keeps_plain_attributes_set_after_construction() -> None:
    config, tensors, export = _recorded({"names": ["cat", "dog"], "cfg": {"depth": 2, "size": (4, 2)}})
    model = _rebuild(config, tensors, export)
    assert isinstance(model, ExportedModule)
    assert model.names == ["cat", "dog"]
    assert model.cfg == {"depth": 2, "size": (4, 2)}
    assert copy.deepcopy(model).names == ["cat", "dog"]  # GraphModule.__deepcopy__ alone drops them


def test_exported_submodule_keeps_its_attribute() -> None:
    config, tensors, export = _recorded({})
    config["root"]["children"]["fc"]["replay"] = {"children": [], "attrs": {"labels": ["a", "b"]}}
    model = _rebuild(config, tensors, export)
    assert model.fc.labels == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("__class__", "dunder"),
        ("__dict__", "dunder"),
        ("_forward_hooks", "private"),
        ("training", "torch-internal"),
        ("forward", "shadow"),
        ("eval", "shadow"),
        ("train", "shadow"),
        ("state_dict", "shadow"),
        ("graph", "shadow"),  # a property of GraphModule
        ("code", "shadow"),
        ("meta", "shadow"),  # instance attribute of the exported module
        ("securehub_source_class", "shadow"),
        ("securehub_exported_training", "shadow"),
    ],
)
def test_forged_attribute_that_is_a_dunder_or_shadows_the_module_is_refused(name: str, says: str) -> None:
    config, tensors, export = _recorded({})
    config["root"]["replay"] = {"children": [], "attrs": {name: "pwned"}}
    with pytest.raises(ReconstructRefused) as info:
        _rebuild(config, tensors, export)
    assert info.value.code == "reconstruct-refused"
    assert "export:" in info.value.message and repr(name) in info.value.message and says in info.value.message


def test_forged_attribute_shadowing_a_parameter_of_a_submodule_is_refused() -> None:
    config, tensors, export = _recorded({})
    config["root"]["children"]["fc"]["replay"] = {"children": [], "attrs": {"weight": [0.0]}}
    with pytest.raises(ReconstructRefused) as info:
        _rebuild(config, tensors, export)
    assert info.value.code == "reconstruct-refused" and "'weight'" in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        {"$function": "os:system"},
        {"$class": "torch.nn.modules.linear:Linear"},
        {"$module": {"ref": "fc"}},
        {"$device": "cpu"},
        [1, {"$partial": {"func": {"$function": "os:system"}, "args": ["true"], "kwargs": {}}}],
        {"$enum": {"class": "enum:Enum", "name": "x"}},
    ],
)
def test_callable_disguised_as_carried_data_is_refused(value: Any) -> None:
    config, tensors, export = _recorded({})
    config["root"]["replay"] = {"children": [], "attrs": {"names": value}}
    with pytest.raises(ReconstructRefused) as info:
        _rebuild(config, tensors, export)
    assert info.value.code == "reconstruct-refused" and "plain data" in info.value.message


def test_huge_carried_attribute_is_refused() -> None:
    config, tensors, export = _recorded({})
    config["root"]["replay"] = {"children": [], "attrs": {"names": ["x" * 1024] * (MAX_REPLAY_ATTR_BYTES // 1024)}}
    with pytest.raises(ReconstructRefused) as info:
        _rebuild(config, tensors, export)
    assert info.value.code == "reconstruct-refused" and str(MAX_REPLAY_ATTR_BYTES) in info.value.message


def test_attribute_on_a_submodule_the_program_lacks_is_refused_not_dropped() -> None:
    config, tensors, export = _recorded({})
    config["root"]["children"]["ghost"] = dict(config["root"]["children"]["fc"])
    config["root"]["children"]["ghost"]["replay"] = {"children": [], "attrs": {"labels": ["a"]}}
    with pytest.raises(ReconstructRefused) as info:
        _rebuild(config, tensors, export)
    assert info.value.code == "reconstruct-refused" and "cannot be carried" in info.value.message


def test_attribute_without_plain_data_form_is_refused_not_dropped() -> None:
    """Honest recorder: ``model.transform = some_function`` is named in ``mutated``; export refuses it."""
    config, tensors, export = _recorded({"transform": torch.sigmoid})
    assert any("'transform'" in m for m in config["root"]["mutated"])
    with pytest.raises(ReconstructRefused) as info:
        _rebuild(config, tensors, export)
    assert info.value.code == "reconstruct-refused" and "'transform'" in info.value.message
    assert "export" in info.value.message


# --------------------------------------------------------------------------- end to end

HUBCONF = (
    """
import torch
from torch import nn

dependencies = ["torch"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def _model():
    torch.manual_seed(0)
    return Net()


def named():
    model = _model()
    model.names = ["cat", "dog"]
    model.cfg = {"depth": 2, "size": (4, 2)}
    return model
"""
    + FORGE_DESCRIBE
    + """

def _forge_attr(name, value):
    def edit(root):
        root["replay"] = {"children": [], "attrs": {name: value}}

    _forge(edit)


def dunder():
    _forge_attr("__class__", "os:system")
    return _model()


def shadow_forward():
    _forge_attr("forward", "pwned")
    return _model()


def shadow_eval():
    _forge_attr("eval", {"$function": "os:system"})
    return _model()


def huge():
    _forge_attr("names", ["x" * 60000] * 40)
    return _model()
"""
)


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.canary = env.root / "canary"
        self.canary.write_text("untouched")
        repo = publish(env, "export-attrs", {"hubconf.py": HUBCONF})
        self.spec = env.spec(repo)
        self.lock = env.root / "hub.lock"
        self.attack_lock = env.root / "attack.lock"
        lock_repos([self.spec], entrypoints=["named"], policy="strict", lock=self.lock, example_inputs=["2x4:float32"])
        lock_repos([self.spec], policy="default", lock=self.attack_lock)

    def results(self) -> list[str]:
        root = self.env.hub / "results"
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.is_dir() else []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("export-attrs"), git_server) as env:
        yield World(env)


@NEEDS_FULL_SANDBOX
def test_export_keeps_names_under_strict_cold_and_warm_e2e(world: World) -> None:
    for _ in ("cold", "warm"):
        model = securehub.load(world.spec, "named", policy="strict", lock=world.lock, verbose=False)
        assert audit_records(world.env)[-1]["strategy"] == "export"
        assert isinstance(model, ExportedModule)
        assert model.names == ["cat", "dog"]
        assert model.cfg == {"depth": 2, "size": (4, 2)}
        assert model.eval() is model


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize("entrypoint", ["dunder", "shadow_forward", "shadow_eval", "huge"])
def test_forged_export_attribute_is_refused_and_nothing_is_kept_e2e(world: World, entrypoint: str) -> None:
    before = Snapshot.take(world.env.hub, world.attack_lock)
    results = world.results()
    with pytest.raises(SecureHubError) as info:
        securehub.load(world.spec, entrypoint, policy="default", lock=world.attack_lock, verbose=False,
                       example_inputs=(X,))  # fmt: skip
    assert info.value.code == "reconstruct-refused", str(info.value)
    assert "export:" in info.value.message
    before.assert_unchanged(world.env.hub, world.attack_lock)  # hub.lock byte-identical, no tree/artifact
    assert entrypoint not in world.attack_lock.read_text()
    assert world.results() == results  # nothing cached
    assert world.canary.read_text() == "untouched"
    assert not hasattr(nn.Module, "names") and "forward" in vars(Net)  # parent classes unchanged
