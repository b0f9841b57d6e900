"""A constructor that sets attributes named by the config (red team 8).

``nn.ParameterDict(parameters)`` is ``setattr(self, key, value)`` for every key of its argument,
and a list of ``[key, value]`` pairs keeps its order. The replay rules (public names, nothing
shadowed, constructor-set sizes never overwritten) were applied to replayed attributes only, not to
constructor arguments, so a forged config could hand a ``ParameterDict`` argument node the pairs
``hidden_size=4096``, ``_flat_weights_names=[...]``, ... and finally ``__class__=LSTM``: the object
became an ``LSTM`` whose hidden size disagreed with its (8-wide) weights, went into the tree as a
child recorded as ``LSTM``, and its first ``forward()`` crashed the parent (SIGSEGV: the oneDNN LSTM
kernel trusts the hidden size, red team 3). ``__dict__``, hook tables and ``_modules`` could be
replaced the same way.

Now keys a constructor turns into attribute names obey the replay rule before it runs, and every
constructed module is checked afterwards: its class is the resolved one, ``nn.Module.__init__``'s
own state has its types, no hook is registered, no dunder attribute, every child a module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct import build as build_mod
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.wire.messages import parse_result_config
from tests._hub_helpers import FORGE_DESCRIBE, NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._reconstruct_helpers import record
from tests._servers import GitServer

LSTM = "torch.nn.modules.rnn:LSTM"
PDICT = "torch.nn.modules.container:ParameterDict"
NAMES = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def _lstm_pairs(hidden: int) -> list[list[Any]]:
    """What turns a ParameterDict into an LSTM whose hidden size is ``hidden`` (weights stay 8-wide)."""
    attrs: dict[str, Any] = {
        "input_size": 8, "hidden_size": hidden, "num_layers": 1, "bias": True, "batch_first": False,
        "dropout": 0.0, "bidirectional": False, "proj_size": 0, "mode": "LSTM",
        "_flat_weights_names": NAMES, "_all_weights": [NAMES], "_flat_weights": [None] * 4,
        "__class__": {"$class": LSTM},
    }  # fmt: skip
    return [[k, v] for k, v in attrs.items()]


def _arg_node(args: list[Any]) -> dict[str, Any]:
    return {
        "class": PDICT, "origin": {"kind": "site", "path": "torch/nn/modules/container.py", "resolves": True},
        "training": False, "reconstructible": True, "args": args, "kwargs": {}, "children": {}, "attrs": {},
        "mutated": [],
    }  # fmt: skip


def forge_lstm_from_parameter_dict(root: dict[str, Any], hidden: int = 4096) -> None:
    """``Sequential(LSTM(8, 8))``'s config: its LSTM child comes from a ParameterDict argument node."""
    root["args"] = [{"$module": {"node": _arg_node([_lstm_pairs(hidden)])}}]
    root["children"]["0"]["replay"] = {"children": [], "attrs": {}, "tensors": dict.fromkeys(NAMES, "parameter")}


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted"], trusted_modules=["torch.nn"], tree=None
    )
    return model


def _parent_untouched() -> None:
    from torch.nn.modules import module as module_mod

    assert not module_mod._global_forward_hooks and not module_mod._global_forward_pre_hooks
    assert nn.LSTM(8, 8)(torch.ones(1, 1, 8))[0].shape == (1, 1, 8)


def _lstm_model() -> nn.Module:
    return nn.Sequential(nn.LSTM(8, 8))


def _pairs(*items: tuple[str, Any]) -> list[Any]:
    return [[[k, v] for k, v in items]]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param([_lstm_pairs(4096)], "'_flat_weights_names'", id="class-swap-to-lstm"),
        pytest.param(_pairs(("__class__", {"$class": LSTM})), "'__class__'", id="dunder-class"),
        pytest.param(_pairs(("__dict__", {"training": True})), "'__dict__'", id="dunder-dict"),
        pytest.param(
            _pairs(("_forward_hooks", {"$dict": {"1": {"$function": "torch.nn.functional:relu"}}})),
            "'_forward_hooks'",
            id="hook-table",
        ),
        pytest.param(_pairs(("_modules", {"x": 5})), "'_modules'", id="non-module-child"),
        pytest.param(_pairs(("forward", {"$function": "torch.nn.functional:relu"})), "'forward'", id="shadow-forward"),
        pytest.param(_pairs(("training", 5)), "'training'", id="training-not-bool"),
        pytest.param([{"__class__": {"$class": LSTM}}], "'__class__'", id="object-form"),
        pytest.param([{"$module": {"node": _arg_node([])}}], "pairs", id="module-argument"),
    ],
)
def test_parameter_dict_keys_that_name_torch_state_are_refused(tmp_path: Path, args: list[Any], says: str) -> None:
    _, config, state = record(_lstm_model, tmp_path)
    forge_lstm_from_parameter_dict(config["root"])
    config["root"]["args"][0]["$module"]["node"]["args"] = args
    parse_result_config({"config": config})  # the wire admits it: values are the reconstructor's to vet
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and says in str(exc.value), str(exc.value)
    _parent_untouched()


def test_class_swap_is_refused_after_construction_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Depth: with the argument check gone, the post-construction state check still refuses the swap."""
    monkeypatch.setattr(build_mod, "_check_attribute_keys", lambda *a: None)
    _, config, state = record(_lstm_model, tmp_path)
    forge_lstm_from_parameter_dict(config["root"])
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "changed the object's class" in str(exc.value)
    _parent_untouched()


@pytest.mark.parametrize(
    ("pairs", "says"),
    [
        (_pairs(("_forward_pre_hooks", {"$dict": {"1": {"$function": "torch.nn.functional:relu"}}})), "_forward_pre"),
        (_pairs(("_modules", {"x": 5})), "_modules"),
        (_pairs(("__dict__", {"training": True})), "_buffers"),
    ],
)
def test_replaced_torch_state_is_refused_after_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pairs: list[Any], says: str
) -> None:
    monkeypatch.setattr(build_mod, "_check_attribute_keys", lambda *a: None)
    _, config, state = record(_lstm_model, tmp_path)
    forge_lstm_from_parameter_dict(config["root"])
    config["root"]["args"][0]["$module"]["node"]["args"] = pairs
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and says in str(exc.value), str(exc.value)


def test_parameter_dict_with_public_keys_still_rebuilds_control(tmp_path: Path) -> None:
    _, config, state = record(lambda: nn.Sequential(nn.ParameterDict({"note": 3}), nn.LSTM(8, 8)), tmp_path)
    model = _rebuild(config, state)
    assert model[0].note == 3 and type(model[1]) is nn.LSTM


# --------------------------------------------------------------------------- end to end: a hostile child forges it

HUBCONF = (
    """
import torch
from torch import nn

dependencies = ["torch"]

"""
    + FORGE_DESCRIBE
    + """
NAMES = ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"]


def benign():
    return nn.Sequential(nn.LSTM(8, 8))


def parameter_dict_becomes_lstm():
    def edit(root):
        attrs = {"input_size": 8, "hidden_size": 4096, "num_layers": 1, "bias": True, "batch_first": False,
                 "dropout": 0.0, "bidirectional": False, "proj_size": 0, "mode": "LSTM",
                 "_flat_weights_names": NAMES, "_all_weights": [NAMES], "_flat_weights": [None] * 4,
                 "__class__": {"$class": "torch.nn.modules.rnn:LSTM"}}
        node = dict(root["children"]["0"], **{"class": "torch.nn.modules.container:ParameterDict",
                                               "args": [[[k, v] for k, v in attrs.items()]], "kwargs": {}})
        root["args"] = [{"$module": {"node": node}}]
        root["children"]["0"]["replay"] = {"children": [], "attrs": {}, "tensors": dict.fromkeys(NAMES, "parameter")}

    _forge(edit)
    return nn.Sequential(nn.LSTM(8, 8))
"""
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("trusted-state"), git_server) as env:
        spec = env.spec(publish(env, "trusted-state", {"hubconf.py": HUBCONF}))
        securehub.load(spec, "benign", policy="default", verbose=False)  # the tree is cached
        yield env, spec


def _results(hub: Path) -> list[str]:
    return sorted(str(p.relative_to(hub)) for p in (hub / "results").rglob("*")) if (hub / "results").exists() else []


@NEEDS_FULL_SANDBOX
def test_parameter_dict_class_swap_to_lstm_e2e(hub: tuple[HubEnv, str]) -> None:
    """Before the fix this loaded under ``default`` and ``model(torch.ones(1, 1, 8))`` was SIGSEGV."""
    env, spec = hub
    before, results = Snapshot.take(env.hub), _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "parameter_dict_becomes_lstm", policy="default", verbose=False)
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert "'_flat_weights_names'" in str(exc.value)
    before.assert_unchanged(env.hub)
    assert _results(env.hub) == results, "a refused result was cached"
    _parent_untouched()
