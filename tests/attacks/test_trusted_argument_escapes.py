"""Trusted-strategy arguments that would leave ``meta`` or the construction budget (red team 3).

The parent constructs allowlisted classes under ``torch.device("meta")`` and assigns the state
afterwards. ``torch.device`` only fills in a device where the caller names none: a forged config
that passes the plain string ``device="cpu"`` (not a ``$device`` value) made the constructor
allocate and initialise real weights in the parent -- ``Linear(30000, 30000, device="cpu")``
took 3.6 GB and 14 s before the state was found not to fit. Every case here asserts that no
parameter or buffer was registered off ``meta`` while the rebuild constructed.

Other argument oddities a hostile child can forge (huge sizes, NaN/Inf, bools for ints, ...) are
regression cases: refused with the exact code, or built on ``meta`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import ReconstructMismatch, ReconstructRefused, SecureHubError
from securehub.reconstruct import budget as budget_mod
from securehub.reconstruct.rebuild import reconstruct
from tests._hub_helpers import FORGE_DESCRIBE, NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._reconstruct_helpers import record
from tests._servers import GitServer


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted"], trusted_modules=["torch.nn"], tree=None
    )
    return model


@pytest.fixture
def off_meta(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Devices of tensors registered while a construction budget (the build phase) is active."""
    seen: list[str] = []
    for name in ("register_parameter", "register_buffer"):
        orig = nn.Module.__dict__[name]

        def spy(mod: nn.Module, key: str, value: Any, *a: Any, _orig: Any = orig, **k: Any) -> Any:
            if budget_mod._current() is not None and isinstance(value, torch.Tensor) and value.device.type != "meta":
                seen.append(f"{type(mod).__name__}.{key} on {value.device}")
            return _orig(mod, key, value, *a, **k)

        monkeypatch.setattr(nn.Module, name, spy)
    yield seen


def _set_kw(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(root: dict[str, Any]) -> None:
        root["kwargs"][key] = value

    return edit


def _append_arg(value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(root: dict[str, Any]) -> None:
        root["args"].append(value)

    return edit


def _child_kw(child: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(root: dict[str, Any]) -> None:
        root["children"][child]["kwargs"][key] = value

    return edit


_DEVICE_CASES = [
    pytest.param(lambda: nn.Linear(4, 3), _set_kw("device", "cpu"), id="linear-device-kw"),
    pytest.param(lambda: nn.Linear(4, 3), _set_kw("device", "cpu:0"), id="linear-device-cpu0"),
    pytest.param(lambda: nn.Linear(4, 3, True), _append_arg("cpu"), id="linear-device-positional"),
    pytest.param(lambda: nn.Linear(4, 3), _set_kw("device", "cuda"), id="linear-device-cuda"),
    pytest.param(lambda: nn.Embedding(10, 4), _set_kw("device", "cpu"), id="embedding"),
    pytest.param(lambda: nn.Conv2d(2, 3, 3), _set_kw("device", "cpu"), id="conv2d"),
    pytest.param(lambda: nn.BatchNorm1d(4), _set_kw("device", "cpu"), id="batchnorm-buffers"),
    pytest.param(lambda: nn.LSTM(4, 4, proj_size=2), _set_kw("device", "cpu"), id="lstm"),
    pytest.param(lambda: nn.MultiheadAttention(4, 2, kdim=3, vdim=5), _set_kw("device", "cpu"), id="mha-kdim"),
    pytest.param(lambda: nn.Bilinear(2, 3, 4), _set_kw("device", "cpu"), id="bilinear"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 2)), _child_kw("0", "device", "cpu"), id="nested-child"),
]


@pytest.mark.parametrize(("build", "edit"), _DEVICE_CASES)
def test_forged_plain_device_argument_never_allocates_in_the_parent(
    tmp_path: Path, off_meta: list[str], build: Callable[[], nn.Module], edit: Callable[[dict[str, Any]], None]
) -> None:
    """A forged ``device="cpu"``/``"cuda"`` is constructed on meta like a recorded ``$device``."""
    original, config, state = record(build, tmp_path, seed=0)
    edit(config["root"])
    try:
        model = _rebuild(config, state)
    except SecureHubError as exc:  # refusing is fine too; allocating is not
        assert exc.code == "reconstruct-refused", str(exc)
    else:
        want, have = original.state_dict(), model.state_dict()
        assert set(want) == set(have)
        assert all(torch.equal(want[k], have[k]) for k in want)
    assert off_meta == []


def test_forged_plain_device_with_huge_size_fails_fast(tmp_path: Path, off_meta: list[str]) -> None:
    """The size that made the parent allocate 3.6 GB: now a meta tensor and a cheap shape mismatch."""
    import time

    _, config, state = record(lambda: nn.Linear(4, 4), tmp_path)
    config["root"]["args"] = [30000, 30000]
    config["root"]["kwargs"]["device"] = "cpu"
    start = time.monotonic()
    with pytest.raises(ReconstructMismatch):
        _rebuild(config, state)
    assert off_meta == []
    assert time.monotonic() - start < 5


def test_meta_only_overrides_every_named_device_and_refuses_real_results() -> None:
    """The mode itself: named devices become meta; a result still off meta (a tensor the constructor
    derives from one made outside the rebuild) is refused, not kept."""
    from securehub.reconstruct.metaonly import meta_only

    outside = torch.ones(2)
    with meta_only("module <root>"):
        assert torch.zeros(3, device="cpu").device.type == "meta"
        assert torch.ones_like(torch.empty(2), device="cpu").device.type == "meta"
        assert torch.tensor([1.0], device="cpu").device.type == "meta"
        with pytest.raises(ReconstructRefused) as exc:
            outside.clone()
    assert exc.value.code == "reconstruct-refused" and "meta device only" in str(exc.value)
    assert torch.zeros(1).device.type == "cpu"  # the mode is gone afterwards


# --------------------------------------------------------------------------- replayed overwrites of constructor state


def _replay(config: dict[str, Any], path: str, attrs: dict[str, Any]) -> None:
    node = config["root"]
    for part in path.split(".") if path else []:
        node = node["children"][part]
    node["replay"] = {"children": [], "attrs": attrs}


_DESYNC_CASES = [
    # LSTM.hidden_size=4096 over 8-wide weights: the oneDNN kernel read the heap and crashed (SIGSEGV) at forward
    pytest.param(lambda: nn.LSTM(4, 8), "", {"hidden_size": 4096}, id="lstm-hidden_size"),
    pytest.param(lambda: nn.LSTM(4, 8), "", {"hidden_size": 16}, id="lstm-hidden_size-garbage-read"),
    pytest.param(lambda: nn.LSTM(4, 8), "", {"num_layers": 4}, id="lstm-num_layers"),
    pytest.param(lambda: nn.LSTM(4, 8), "", {"proj_size": 2}, id="lstm-proj_size"),
    pytest.param(lambda: nn.GRU(4, 8), "", {"bidirectional": True}, id="gru-bidirectional"),
    pytest.param(lambda: nn.MultiheadAttention(8, 2), "", {"num_heads": 8}, id="mha-num_heads"),
    pytest.param(lambda: nn.MultiheadAttention(8, 2), "", {"head_dim": 64}, id="mha-head_dim"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3, groups=2), "", {"groups": 1}, id="conv-groups"),
    pytest.param(lambda: nn.Embedding(10, 4), "", {"padding_idx": 10**9}, id="embedding-padding_idx"),
    pytest.param(lambda: nn.Sequential(nn.Linear(2, 2)), "0", {"in_features": 10**6}, id="linear-in_features"),
    pytest.param(lambda: nn.BatchNorm1d(4), "", {"momentum": "0.1"}, id="knob-of-another-kind"),
    pytest.param(lambda: nn.BatchNorm1d(4), "", {"affine": False}, id="bn-affine"),
    # geometry may swap an int for a tuple of ints, never for a bool, a string or a tuple holding other things
    pytest.param(lambda: nn.Conv2d(4, 4, 3), "", {"padding": True}, id="conv-padding-bool"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3), "", {"padding": "same"}, id="conv-padding-string"),
    pytest.param(lambda: nn.Conv2d(4, 4, 3), "", {"stride": {"$tuple": [1.5, 1]}}, id="conv-stride-float-tuple"),
]


@pytest.mark.parametrize(("build", "path", "attrs"), _DESYNC_CASES)
def test_replayed_overwrite_of_constructor_state_is_not_rebuilt(
    tmp_path: Path, build: Callable[[], nn.Module], path: str, attrs: dict[str, Any]
) -> None:
    """A replayed value for a size/count/flag the constructor set is not replayed onto the rebuilt class.

    The parent never runs forward() here: before the fix the rebuild succeeded, and forward() of the
    LSTM cases read out of bounds (NaNs) or crashed the process (SIGSEGV).
    """
    _, config, state = record(build, tmp_path, seed=0)
    _replay(config, path, attrs)
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)  # only trusted is listed: it does not apply, so the load is refused
    assert exc.value.code == "reconstruct-refused"
    assert repr(next(iter(attrs))) in str(exc.value) and "changed after construction" in str(exc.value)


def _cifar_resnet_stem() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3, 2))


_KNOB_CASES = [
    pytest.param(
        "0",
        {"stride": {"$tuple": [1, 1]}, "padding": {"$tuple": [2, 2]}, "dilation": {"$tuple": [2, 2]}},
        id="conv-dilation",
    ),  # fmt: skip
    pytest.param("0", {"padding": 2, "stride": 1}, id="conv-int-geometry-over-tuples"),
    pytest.param("1", {"momentum": 0.01, "eps": 1e-3}, id="bn-momentum-eps"),
    pytest.param("1", {"momentum": None}, id="bn-cumulative"),
    pytest.param("2", {"inplace": True}, id="relu-inplace"),
    pytest.param("3", {"ceil_mode": True, "kernel_size": 2}, id="pool"),
]


@pytest.mark.parametrize(("path", "attrs"), _KNOB_CASES)
def test_replayed_knobs_the_forward_checks_are_still_rebuilt(tmp_path: Path, path: str, attrs: dict[str, Any]) -> None:
    """Control: what real repos change after construction (bn momentum/eps, inplace, dilated convs) still loads."""
    _, config, state = record(_cifar_resnet_stem, tmp_path, seed=0)
    _replay(config, path, attrs)
    model = _rebuild(config, state)
    sub = model.get_submodule(path)
    for name, value in attrs.items():
        want = tuple(value["$tuple"]) if isinstance(value, dict) else value
        assert getattr(sub, name) == want
    assert model(torch.randn(1, 3, 16, 16)).shape[1] == 4


# ----------------------------------------------------------------- forged configs already refused (regression)


def _root_set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["root"][key] = value

    return edit


def _replay_edit(**replay: Any) -> Callable[[dict[str, Any]], None]:
    return _root_set("replay", {"children": [], "attrs": {}, **replay})


def _rename_child(config: dict[str, Any]) -> None:
    config["root"]["children"]["__class__"] = config["root"]["children"].pop("a")


def _lazy(config: dict[str, Any]) -> None:
    config["root"].update({"class": "torch.nn.modules.linear:LazyLinear", "args": [10**6], "kwargs": {}})


def _huge_sequential(config: dict[str, Any]) -> None:
    config["root"]["args"] = [{"$module": {"node": config["root"]["children"]["0"]}}] * 200_000


def _wn(**norm: Any) -> Callable[[dict[str, Any]], None]:
    return _root_set("norms", [{"kind": "weight_norm", "name": "weight", "dim": 0, **norm}])


def _sn(**norm: Any) -> Callable[[dict[str, Any]], None]:
    base = {"kind": "spectral_norm", "name": "weight", "dim": 0, "n_power_iterations": 1, "eps": 1e-12}
    return _root_set("norms", [{**base, **norm}])


_LIN = lambda: nn.Linear(4, 4)  # noqa: E731 - a table of builders
_REFUSED = [
    pytest.param(_LIN, _replay_edit(attrs={"training": "yes"}), "reconstruct-refused", id="training-not-bool"),
    pytest.param(_LIN, _replay_edit(attrs={"__dict__": {}}), "reconstruct-refused", id="dunder-dict"),
    pytest.param(_LIN, _replay_edit(attrs={"_forward_hooks": {}}), "reconstruct-refused", id="private-hooks"),
    pytest.param(_LIN, _replay_edit(attrs={"state_dict": None}), "reconstruct-refused", id="shadows-method"),
    pytest.param(_LIN, _replay_edit(attrs={"T_destination": 1}), "reconstruct-refused", id="shadows-typevar"),
    pytest.param(_LIN, _replay_edit(attrs={"dump_patches": True}), "reconstruct-refused", id="torch-state"),
    pytest.param(_LIN, _replay_edit(tensors={"__class__": "buffer"}), "reconstruct-refused", id="tensor-dunder"),
    pytest.param(_LIN, _replay_edit(tensors={"weight": "buffer"}), "reconstruct-refused", id="tensor-over-param"),
    pytest.param(
        lambda: nn.ModuleDict({"a": nn.Linear(2, 2)}),
        _rename_child,
        "reconstruct-refused",
        id="moduledict-key-__class__",
    ),  # fmt: skip
    pytest.param(lambda: nn.Sequential(nn.ReLU()), _huge_sequential, "reconstruct-refused", id="sequential-200k"),
    pytest.param(_LIN, _lazy, "reconstruct-refused", id="lazy-linear"),  # a RuntimeError escaped before
    pytest.param(
        _LIN,
        lambda c: (_wn()(c), c["root"]["norms"].append(c["root"]["norms"][0])),
        "reconstruct-refused",
        id="norm-twice",
    ),  # fmt: skip
    pytest.param(_LIN, _wn(dim=5), "reconstruct-refused", id="norm-dim-out-of-range"),
    pytest.param(_LIN, _sn(n_power_iterations=10**9), "reconstruct-refused", id="norm-iterations"),
    pytest.param(_LIN, _sn(eps=float("nan")), "reconstruct-refused", id="norm-eps-nan"),
    pytest.param(_LIN, _wn(name="nothere"), "reconstruct-mismatch", id="norm-missing-parameter"),
    pytest.param(lambda: nn.BatchNorm1d(2), _wn(name="running_mean"), "reconstruct-mismatch", id="norm-on-buffer"),
    # red team 8: integers beyond 32 bits are refused before the constructor runs (was built on meta, mismatch)
    pytest.param(
        lambda: nn.Embedding(10, 4),
        _root_set("args", [10**12, 10**6]),
        "reconstruct-refused",
        id="embedding-10e18-on-meta",
    ),  # fmt: skip
    pytest.param(
        lambda: nn.Embedding(10, 4),
        _root_set("args", [10**6, 10**6]),
        "reconstruct-mismatch",
        id="embedding-10e12-on-meta",
    ),  # fmt: skip
    pytest.param(_LIN, _root_set("args", [{"$float": "nan"}, 4]), "reconstruct-mismatch", id="nan-size"),
]


@pytest.mark.parametrize(("build", "edit", "code"), _REFUSED)
def test_forged_config_is_refused_with_its_code_and_builds_nothing_real(
    tmp_path: Path,
    off_meta: list[str],
    build: Callable[[], nn.Module],
    edit: Callable[[dict[str, Any]], None],
    code: str,
) -> None:
    _, config, state = record(build, tmp_path, seed=0)
    edit(config)
    with pytest.raises(SecureHubError) as exc:
        _rebuild(config, state)
    assert exc.value.code == code, f"{type(exc.value).__name__}: {exc.value}"
    assert off_meta == []


# --------------------------------------------------------------------------- end to end: a hostile child forges them

HUBCONF = (
    """
import torch
from torch import nn

dependencies = ["torch"]

"""
    + FORGE_DESCRIBE
    + """

def benign():
    return nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 8))


def plain_device_string():
    def edit(root):
        root["children"]["0"]["args"] = [20000, 20000]  # 1.6 GB on cpu before; the state keeps 4x4
        root["children"]["0"]["kwargs"]["device"] = "cpu"

    _forge(edit)
    return nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 8))


def lstm_hidden_size():
    # no forging needed: the honest recorder records a changed public attribute for replay
    model = nn.Sequential(nn.Linear(4, 4), nn.LSTM(4, 8))
    model[1].hidden_size = 4096
    return model
"""
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("trusted-escapes"), git_server) as env:
        spec = env.spec(publish(env, "trusted-escapes", {"hubconf.py": HUBCONF}))
        securehub.load(spec, "benign", policy="default", verbose=False)  # the tree is cached
        yield env, spec


@NEEDS_FULL_SANDBOX
def test_forged_plain_device_e2e(hub: tuple[HubEnv, str], off_meta: list[str]) -> None:
    env, spec = hub
    before = Snapshot.take(env.hub)
    with pytest.raises(SecureHubError) as exc:  # built on meta, then the 4x4 state does not fit
        securehub.load(spec, "plain_device_string", policy="default", verbose=False)
    assert exc.value.code == "reconstruct-mismatch", str(exc.value)
    assert off_meta == []
    before.assert_unchanged(env.hub)


@NEEDS_FULL_SANDBOX
def test_lstm_hidden_size_changed_after_construction_is_not_rebuilt_e2e(hub: tuple[HubEnv, str]) -> None:
    """Under ``default`` (trusted, export; no example inputs) nothing applies: refused, no model to call."""
    env, spec = hub
    before = Snapshot.take(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "lstm_hidden_size", policy="default", verbose=False)
    assert exc.value.code == "reconstruct-refused" and "'hidden_size'" in str(exc.value), str(exc.value)
    before.assert_unchanged(env.hub)
