"""Attacks on the ``trusted`` strategy's replay of post-construction changes (issue 10, SPEC section 7).

The child records what changed after a module's ``__init__`` returned (children added or replaced,
plain data attributes) and the parent replays it. A hostile child forges that record to make the
parent set something it must not: an attribute shadowing a method (``forward``, ``state_dict``), a
dunder (``__class__``), private torch state (``_forward_hooks``), a callable disguised as data, a
child of a class outside the allowlist, or a ``functools.partial`` around a function with global
effects. And an honest recorder must not let hooks vanish silently: they are refused, not dropped.

Unit cases forge hand-built records; end-to-end cases run a malicious hubconf through the real git
server, sandbox and torch. Each asserts the exact code and that nothing happened in the parent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SandboxProtocol, SecureHubError
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.wire.messages import parse_result_config
from tests._hub_helpers import FORGE_DESCRIBE, NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._reconstruct_helpers import record
from tests._servers import GitServer

HOOK = "torch.nn.modules.module:register_module_forward_hook"


def _record_model(build: Callable[[], nn.Module], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    _, config, state = record(build, tmp_path)
    return config, state


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted", "export"],
        trusted_modules=["torch.nn"], tree=None,
    )  # fmt: skip
    return model


class _Constructions:
    """Counts ``nn.Module.__init__`` calls while the test runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        orig = nn.Module.__dict__["__init__"]

        def counting(mod: nn.Module, *a: Any, **k: Any) -> None:
            self.count += 1
            orig(mod, *a, **k)

        monkeypatch.setattr(nn.Module, "__init__", counting)


def _parent_untouched() -> None:
    from torch.nn.modules import module as module_mod

    assert not module_mod._global_forward_hooks
    assert nn.Linear(2, 2)(torch.ones(1, 2)).shape == (1, 2)


def _sequential() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2))


def _refused(config: dict[str, Any], state: Path, monkeypatch: pytest.MonkeyPatch, *names: str) -> str:
    counter = _Constructions(monkeypatch)
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused"
    for name in names:
        assert name in str(exc.value)
    assert counter.count == 0, "refused only after constructing modules"
    _parent_untouched()
    return str(exc.value)


# --------------------------------------------------------------------------- unit: forged replay records


@pytest.mark.parametrize("name", ["forward", "state_dict", "load_state_dict", "T_destination", "extra_repr"])
def test_replayed_attribute_shadowing_a_method_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    config, state = _record_model(_sequential, tmp_path)
    config["root"]["replay"] = {"children": [], "attrs": {name: "pwned"}}
    assert "shadow" in _refused(config, state, monkeypatch, repr(name))


@pytest.mark.parametrize("name", ["__class__", "__dict__", "_forward_hooks", "_parameters", "_modules", "training"])
def test_replayed_dunder_or_private_torch_state_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    config, state = _record_model(_sequential, tmp_path)
    config["root"]["replay"] = {"children": [], "attrs": {name: {}}}
    _refused(config, state, monkeypatch, repr(name))


def test_replayed_attribute_shadowing_a_parameter_is_refused(tmp_path: Path) -> None:
    config, state = _record_model(lambda: nn.Linear(2, 2), tmp_path)
    config["root"]["replay"] = {"children": [], "attrs": {"weight": [1.0]}}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "'weight'" in str(exc.value)


@pytest.mark.parametrize(
    "value",
    [
        {"$function": "torch.nn.functional:relu"},  # even a listed pure function is not data
        {"$function": HOOK},
        {"$class": "torch.nn.modules.linear:Linear"},
        [1, {"$partial": {"func": {"$function": HOOK}, "args": [], "kwargs": {}}}],
        {"$module": {"ref": "0"}},
        {"$device": "cpu"},
    ],
)
def test_callable_disguised_as_replayed_data_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: Any
) -> None:
    config, state = _record_model(_sequential, tmp_path)
    config["root"]["replay"] = {"children": [], "attrs": {"names": value}}
    assert "plain data" in _refused(config, state, monkeypatch, "'names'")


@pytest.mark.parametrize(
    ("func", "says"),
    [
        ({"$function": HOOK}, HOOK),
        ({"$function": "torch.nn.init:normal_"}, "torch.nn.init:normal_"),
        ({"$function": "os:system"}, "os:system"),
        ({"$class": "collections:OrderedDict"}, "collections:OrderedDict"),
        ({"$class": "torch.nn.modules.conv:_ConvNd"}, "private"),
    ],
)
def test_partial_of_a_non_allowlisted_callable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, func: dict[str, str], says: str
) -> None:
    def build() -> nn.Module:
        return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)

    config, state = _record_model(build, tmp_path)
    config["root"]["kwargs"]["activation"] = {"$partial": {"func": func, "args": [], "kwargs": {"inplace": True}}}
    _refused(config, state, monkeypatch, says)


def test_malformed_partial_is_refused(tmp_path: Path) -> None:
    config, state = _record_model(lambda: nn.TransformerEncoderLayer(8, 2, 16), tmp_path)
    config["root"]["kwargs"]["activation"] = {"$partial": {"func": "torch.nn.functional:relu", "args": []}}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "$partial" in str(exc.value)


@pytest.mark.parametrize("cls", ["os:system", "acme.evil:Net", "torch.nn.modules.conv:_ConvNd"])
def test_forged_mutation_adding_a_child_outside_the_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: str
) -> None:
    canary = tmp_path / "canary"
    config, state = _record_model(_sequential, tmp_path)
    child = json.loads(json.dumps(config["root"]["children"]["0"]))
    child.update({"class": cls, "args": [f"touch {canary}"], "kwargs": {}, "children": {}})
    config["root"]["children"]["extra"] = child
    config["root"]["replay"] = {"children": ["extra"], "attrs": {}}
    parse_result_config({"config": config})  # well-formed: only the allowlist stops it
    _refused(config, state, monkeypatch, cls)
    assert not canary.exists()


def test_forged_replay_naming_an_unrecorded_child(tmp_path: Path) -> None:
    config, state = _record_model(_sequential, tmp_path)
    config["root"]["replay"] = {"children": ["ghost"], "attrs": {}}
    with pytest.raises(SandboxProtocol) as proto:
        parse_result_config({"config": config})
    assert proto.value.code == "sandbox-protocol"
    with pytest.raises(ReconstructRefused) as exc:  # and the builder refuses it on its own
        _rebuild(config, state)
    assert "ghost" in str(exc.value)


def test_forged_replayed_child_named_like_a_method(tmp_path: Path) -> None:
    config, state = _record_model(_sequential, tmp_path)
    config["root"]["children"]["forward"] = json.loads(json.dumps(config["root"]["children"]["0"]))
    config["root"]["replay"] = {"children": ["forward"], "attrs": {}}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "'forward'" in str(exc.value)
    _parent_untouched()


# --------------------------------------------------------------------------- honest recorder: refused, never dropped


def _with_forward_hook() -> nn.Module:
    model = nn.Linear(2, 2)
    model.register_forward_hook(lambda mod, args, out: out * 0)
    return model


def _with_pre_hook_on_child() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    model[0].register_forward_pre_hook(lambda mod, args: None)
    return model


def _with_class_entry() -> nn.Module:
    model = nn.Linear(2, 2)
    model.__dict__["__class__"] = "spoof"
    return model


def _with_callable_attribute() -> nn.Module:
    model = nn.Linear(2, 2)
    model.postprocess = torch.sigmoid
    return model


def _with_tensor_attribute() -> nn.Module:
    model = nn.Linear(2, 2)
    model.anchors = torch.ones(3)  # a plain tensor attribute is neither state nor data
    return model


@pytest.mark.parametrize(
    ("build", "names"),
    [
        (_with_forward_hook, "'_forward_hooks'"),
        (_with_pre_hook_on_child, "'_forward_pre_hooks'"),
        (_with_class_entry, "'__class__'"),
        (_with_callable_attribute, "'postprocess'"),
        (_with_tensor_attribute, "'anchors'"),
    ],
)
def test_unreplayable_change_is_refused_not_silently_dropped(
    tmp_path: Path, build: Callable[[], nn.Module], names: str
) -> None:
    config, state = _record_model(build, tmp_path)
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and names in str(exc.value)
    _parent_untouched()


# --------------------------------------------------------------------------- end to end: malicious hubconf

HUBCONF = (
    """
import functools
import sys

import torch
from torch import nn

dependencies = ["torch"]

"""
    + FORGE_DESCRIBE
    + """


def benign():
    return nn.Sequential(nn.Linear(2, 2))


def forward_hook():
    model = nn.Sequential(nn.Linear(2, 2))
    model.register_forward_hook(lambda mod, args, out: out * 0)
    return model


def shadow_forward():
    def edit(root):
        root["replay"] = {"children": [], "attrs": {"forward": "pwned", "__class__": "x"}}

    _forge(edit)
    return nn.Sequential(nn.Linear(2, 2))


def partial_hook_activation():
    hook = functools.partial(torch.nn.modules.module.register_module_forward_hook, prepend=True)
    return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, activation=hook)


def foreign_child():
    def edit(root):
        child = dict(root["children"]["0"])
        child.update({"class": "os:system", "args": ["touch @CANARY@"], "kwargs": {}})
        root["children"]["evil"] = child
        root["replay"] = {"children": ["evil"], "attrs": {}}

    _forge(edit)
    return nn.Sequential(nn.Linear(2, 2))
"""
)


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.canary = env.root / "canary"
        repo = publish(env, "trusted-replay", {"hubconf.py": HUBCONF.replace("@CANARY@", str(self.canary))})
        self.spec = env.spec(repo)

    def refused(self, entrypoint: str) -> str:
        before = Snapshot.take(self.env.hub)
        results = (
            sorted(p.name for p in (self.env.hub / "results").rglob("*")) if (self.env.hub / "results").exists() else []
        )
        with pytest.raises(SecureHubError) as exc:
            securehub.load(self.spec, entrypoint, policy="default", verbose=False)
        assert exc.value.code == "reconstruct-refused", str(exc.value)
        before.assert_unchanged(self.env.hub)
        now = (
            sorted(p.name for p in (self.env.hub / "results").rglob("*")) if (self.env.hub / "results").exists() else []
        )
        assert now == results, "a refused result was cached"
        assert not self.canary.exists()
        _parent_untouched()
        return str(exc.value)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("trusted-replay"), git_server) as env:
        w = World(env)
        securehub.load(w.spec, "benign", policy="default", verbose=False)  # tree cached before the attacks
        yield w


@NEEDS_FULL_SANDBOX
def test_forward_hook_refused_not_dropped_e2e(world: World) -> None:
    assert "'_forward_hooks'" in world.refused("forward_hook")


@NEEDS_FULL_SANDBOX
def test_replayed_attribute_shadowing_forward_e2e(world: World) -> None:
    msg = world.refused("shadow_forward")
    assert "'forward'" in msg or "'__class__'" in msg


@NEEDS_FULL_SANDBOX
def test_partial_of_register_module_forward_hook_e2e(world: World) -> None:
    assert HOOK in world.refused("partial_hook_activation")


@NEEDS_FULL_SANDBOX
def test_forged_mutation_adding_a_foreign_child_e2e(world: World) -> None:
    assert "os:system" in world.refused("foreign_child")


def _with_shadowing_attribute() -> nn.Module:
    model = nn.Linear(2, 2)
    model.extra_repr = "not a method any more"  # type: ignore[assignment,method-assign]
    return model


def test_honest_attribute_shadowing_a_method_is_named_not_replayed(tmp_path: Path) -> None:
    """The recorder itself lists it as unreplayable (so another strategy may apply); never replayed."""
    config, state = _record_model(_with_shadowing_attribute, tmp_path)
    assert "replay" not in config["root"]
    assert any("'extra_repr'" in m and "shadows" in m for m in config["root"]["mutated"])
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "'extra_repr'" in str(exc.value)


def test_new_plain_attribute_is_replayed_control(tmp_path: Path) -> None:
    """Control: a new public attribute holding plain data is replayed, not refused."""

    def build() -> nn.Module:
        model = nn.Sequential(nn.Linear(2, 2))
        model.dump_note = "x"
        return model

    config, state = _record_model(build, tmp_path)
    assert config["root"]["replay"]["attrs"] == {"dump_note": "x"}
    assert _rebuild(config, state).dump_note == "x"


@pytest.mark.parametrize("replay", [5, {"children": 5, "attrs": {}}, {"children": [1], "attrs": {}}, {"children": []}])
def test_malformed_replay_record_is_refused(tmp_path: Path, replay: Any) -> None:
    config, state = _record_model(_sequential, tmp_path)
    config["root"]["replay"] = replay
    with pytest.raises(SandboxProtocol):
        parse_result_config({"config": config})
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "replay" in str(exc.value)


@pytest.mark.parametrize(
    ("enum_ref", "says"),
    [
        ({"class": "signal:Signals", "name": "SIGKILL"}, "signal:Signals"),  # an enum outside the allowlist
        ({"class": "torch.nn.modules.linear:Linear", "name": "weight"}, "not an enum.Enum subclass"),
    ],
)
def test_enum_argument_outside_the_allowlist_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enum_ref: dict[str, str], says: str
) -> None:
    config, state = _record_model(lambda: nn.TransformerEncoderLayer(8, 2, 16), tmp_path)
    config["root"]["kwargs"]["activation"] = {"$enum": enum_ref}
    _refused(config, state, monkeypatch, says)
