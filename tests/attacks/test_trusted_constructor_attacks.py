"""Attacks on the ``trusted`` strategy's constructor replay (issue 8 findings 3 and 4b).

The child records how the module tree was constructed; the parent calls allowlisted installed
classes with the recorded arguments. Two ways a hostile child turned that into harm in the parent:

- a *callable* argument that is not an activation: ``TransformerEncoderLayer(activation=
  register_module_forward_hook)`` installs a process-wide forward hook on the first forward pass
  and every later ``nn.Linear`` in the process breaks; ``manual_seed``/``set_default_dtype`` change
  process-wide state; ``torch.nn.init.*`` overwrite tensors and move the global RNG;
- a *count* argument the recorded tree does not account for: ``num_layers=40000`` where the tree
  holds 2 layers made the parent build 40000 layers before comparing trees.

Unit cases forge hand-built records; end-to-end cases are malicious hubconfs loaded through the real
git server, the real sandbox and real torch (the hubconf patches the child runtime's ``describe`` to
forge what the child sends, or simply passes the function: the honest recorder records it as is).
Each asserts the exact code and that nothing happened in the parent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct.rebuild import reconstruct
from tests._hub_helpers import (
    FORGE_DESCRIBE,
    NEEDS_FULL_SANDBOX,
    HubEnv,
    Snapshot,
    hub_env_context,
    publish,
    write_policy,
)
from tests._reconstruct_helpers import record
from tests._servers import GitServer, RepoHandle

HOOK = "torch.nn.modules.module:register_module_forward_hook"


def _record_model(build: Callable[[], nn.Module], tmp_path: Path) -> tuple[dict[str, Any], Path]:
    _, config, state = record(build, tmp_path)
    return config, state


def _rebuild(config: dict[str, Any], state: Path, trusted: list[str] | None = None) -> nn.Module:
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted", "export"],
        trusted_modules=trusted or ["torch.nn"], tree=None,
    )  # fmt: skip
    return model


def _layer() -> nn.Module:
    return nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True)


def _assert_parent_untouched() -> None:
    """No global hook was installed and a fresh Linear still works in this process."""
    from torch.nn.modules import module as module_mod

    assert not module_mod._global_forward_hooks
    assert not module_mod._global_forward_pre_hooks
    assert torch.get_default_dtype() == torch.float32
    out = nn.Linear(2, 2)(torch.ones(1, 2))
    assert out.shape == (1, 2)


class _Constructions:
    """Counts ``nn.Module.__init__`` and ``__setstate__`` (deepcopy clones) while active."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("__init__", "__setstate__"):
            orig = nn.Module.__dict__[name]

            def counting(mod: nn.Module, *a: Any, _orig: Any = orig, **k: Any) -> Any:
                self.count += 1
                return _orig(mod, *a, **k)

            monkeypatch.setattr(nn.Module, name, counting)


# --------------------------------------------------------------------------- unit: hand-built records


@pytest.mark.parametrize(
    "function",
    [
        HOOK,
        "torch.nn.modules.module:register_module_forward_pre_hook",
        "torch.nn.modules.module:register_module_buffer_registration_hook",
        "torch.nn.init:normal_",  # in place on its argument, and advances the global RNG
        "torch.nn.init:kaiming_uniform_",
        "torch.nn.functional:dropout",  # random: global RNG
        "torch.nn.functional:relu_",  # in place on the caller's tensor
    ],
)
def test_global_effect_callable_under_torch_nn_is_refused(tmp_path: Path, function: str) -> None:
    config, state = _record_model(_layer, tmp_path)
    config["root"]["kwargs"]["activation"] = {"$function": function}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and function in str(exc.value)
    _assert_parent_untouched()


@pytest.mark.parametrize(
    "function", ["torch.random:manual_seed", "torch:manual_seed", "torch:set_default_dtype", "torch:load",
                 "torch:save", "builtins:setattr", "torch.serialization:load"],
)  # fmt: skip
def test_global_effect_callable_refused_even_when_torch_is_trusted(tmp_path: Path, function: str) -> None:
    """Trusting the whole ``torch`` package for classes does not admit its functions."""
    seed = torch.initial_seed()
    config, state = _record_model(_layer, tmp_path)
    config["root"]["kwargs"]["activation"] = {"$function": function}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state, trusted=["torch.nn", "torch", "builtins"])
    assert exc.value.code == "reconstruct-refused" and function in str(exc.value)
    assert torch.initial_seed() == seed
    _assert_parent_untouched()


@pytest.mark.parametrize("function", ["torch.nn.functional:_canonical_mask", "torch.nn.functional:_in_projection"])
def test_private_function_name_is_refused(tmp_path: Path, function: str) -> None:
    config, state = _record_model(_layer, tmp_path)
    config["root"]["kwargs"]["activation"] = {"$function": function}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and function in str(exc.value)


@pytest.mark.parametrize("path", ["torch.nn.modules.conv:_ConvNd", "torch.nn.modules.batchnorm:_BatchNorm"])
def test_private_class_name_is_refused(tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config, state = _record_model(lambda: nn.Sequential(nn.Linear(2, 2)), tmp_path)
    config["root"]["children"]["0"]["class"] = path
    counter = _Constructions(monkeypatch)
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and path in str(exc.value) and "private" in str(exc.value)
    assert counter.count == 0  # refused in the preflight, before anything was built


@pytest.mark.parametrize(
    "value",
    [
        {"$class": "torch.nn.modules.linear:Linear"},
        {"$partial": {"func": {"$class": "torch.nn.modules.linear:Linear"}, "args": [100000, 100000], "kwargs": {}}},
    ],
    ids=["class", "partial-of-class"],
)
def test_class_kept_to_be_constructed_at_forward_is_refused(tmp_path: Path, value: dict[str, Any]) -> None:
    """A class (or partial of one) the rebuilt module would keep and call in forward() -- constructing a
    40 GB Linear in the user's process, outside meta and the construction budget -- is refused at rebuild."""
    config, state = _record_model(_layer, tmp_path)
    config["root"]["kwargs"]["activation"] = value
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "keeps the class Linear in 'activation'" in str(exc.value)


def test_activation_allowlist_still_rebuilds_gelu_and_torch_tanh(tmp_path: Path) -> None:
    """Control: the enumerated pure functions still work (recorded by their public path)."""
    for fn, path in ((nn.functional.gelu, "torch.nn.functional:gelu"), (torch.tanh, "torch:tanh")):

        def build(f: Any = fn) -> nn.Module:
            return nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, activation=f, batch_first=True).eval()

        config, state = _record_model(build, tmp_path)
        assert config["root"]["kwargs"]["activation"] == {"$function": path}
        model = _rebuild(config, state)
        assert model.activation is fn  # type: ignore[comparison-overlap]


def _encoder() -> nn.Module:
    return nn.TransformerEncoder(_layer(), num_layers=2, enable_nested_tensor=False)


@pytest.mark.parametrize("where", ["kwargs", "args"])
def test_forged_num_layers_is_refused_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    config, state = _record_model(_encoder, tmp_path)
    root = config["root"]
    if where == "kwargs":
        root["kwargs"]["num_layers"] = 40000
    else:
        root["args"] = [root["args"][0], 40000]
        del root["kwargs"]["num_layers"]
    counter = _Constructions(monkeypatch)
    start = time.monotonic()
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused"
    assert "num_layers=40000" in str(exc.value) and "2 children" in str(exc.value)
    assert counter.count <= 10  # only the encoder_layer argument (1 + its 8 children) was built
    assert time.monotonic() - start < 5


def test_forged_count_unknown_to_the_precheck_is_capped_as_it_happens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LSTM(num_layers=40000): no table entry; the construction budget stops it while it builds."""
    config, state = _record_model(lambda: nn.LSTM(4, 4, num_layers=2), tmp_path)
    config["root"]["kwargs"]["num_layers"] = 40000
    counter = _Constructions(monkeypatch)
    start = time.monotonic()
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "parameter/buffer registrations" in str(exc.value)
    assert counter.count <= 2
    assert time.monotonic() - start < 5


def test_forged_deepcopy_clones_are_capped_as_they_happen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged record that hides the clones from the precheck (no 'layers' child) still stops early."""
    config, state = _record_model(_encoder, tmp_path)
    root = config["root"]
    root["class"] = "torch.nn.modules.transformer:TransformerDecoder"  # same signature, not the same table key
    root["kwargs"] = {"decoder_layer": root["args"].pop(0), "num_layers": 40000}
    root["children"] = {}
    from securehub.reconstruct import build as build_mod

    monkeypatch.setattr(build_mod, "_DECLARED_COUNTS", {})  # as if the class were not in the table
    counter = _Constructions(monkeypatch)
    start = time.monotonic()
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "module constructions" in str(exc.value)
    recorded = 1 + 9  # the root, and the layer argument node with its 8 children
    assert counter.count <= recorded + 64 + 1  # the cap, plus the one construction that tripped it
    assert time.monotonic() - start < 5


def test_budget_leaves_nn_module_methods_as_they_were(tmp_path: Path) -> None:
    before = {n: nn.Module.__dict__[n] for n in ("__init__", "__setstate__", "register_parameter", "register_buffer")}
    config, state = _record_model(_encoder, tmp_path)
    _rebuild(config, state)
    config["root"]["kwargs"]["num_layers"] = 40000
    with pytest.raises(ReconstructRefused):
        _rebuild(config, state)
    assert {n: nn.Module.__dict__[n] for n in before} == before


def test_deeply_nested_argument_is_refused(tmp_path: Path) -> None:
    config, state = _record_model(lambda: nn.Linear(2, 2), tmp_path)
    deep: Any = 1
    for _ in range(40):
        deep = [deep]
    config["root"]["kwargs"]["device"] = deep
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "deeper than" in str(exc.value)


# --------------------------------------------------------------------------- end to end: malicious hubconf

HUBCONF = (
    """
import sys

import torch
from torch import nn

dependencies = ["torch"]

"""
    + FORGE_DESCRIBE
    + """


def _layer(**kw):
    return nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True, **kw)


def benign():
    return _layer()


def hook_activation():
    # no forging needed: the honest recorder records the function by its import path
    return _layer(activation=torch.nn.modules.module.register_module_forward_hook)


def hook_activation_forged():
    def edit(root):
        root["kwargs"]["activation"] = {"$function": "torch.nn.modules.module:register_module_forward_hook"}

    _forge(edit)
    return _layer()


def manual_seed_activation():
    return _layer(activation=torch.manual_seed)


def default_dtype_activation():
    return _layer(activation=torch.set_default_dtype)


def init_activation():
    return _layer(activation=torch.nn.init.normal_)


def private_class():
    def edit(root):
        root["children"]["0"]["class"] = "torch.nn.modules.conv:_ConvNd"

    _forge(edit)
    return nn.Sequential(nn.Linear(2, 2))


def forty_thousand_layers():
    def edit(root):
        root["kwargs"]["num_layers"] = 40000

    _forge(edit)
    return nn.TransformerEncoder(_layer(), num_layers=2, enable_nested_tensor=False)


def forty_thousand_lstm_layers():
    def edit(root):
        root["kwargs"]["num_layers"] = 40000

    _forge(edit)
    return nn.LSTM(4, 4, num_layers=2)
"""
)


class World:
    def __init__(self, env: HubEnv, repo: RepoHandle) -> None:
        self.env = env
        self.spec = env.spec(repo)
        # trusts all of torch for classes: the refusals below must come from the callable list
        self.policy = write_policy(
            env.root / "torch-trusted.yaml", extends="default",
            reconstruct={"strategies": ["trusted", "export"], "trusted_modules": ["torch.nn", "torch"]},
        )  # fmt: skip

    def load(self, entrypoint: str) -> nn.Module:
        return securehub.load(self.spec, entrypoint, policy=str(self.policy), verbose=False)

    def refused(self, entrypoint: str, code: str = "reconstruct-refused") -> str:
        before = Snapshot.take(self.env.hub)
        results = _listing(self.env.hub / "results")
        seed = torch.initial_seed()
        with pytest.raises(SecureHubError) as exc:
            self.load(entrypoint)
        assert exc.value.code == code, str(exc.value)
        before.assert_unchanged(self.env.hub)
        assert _listing(self.env.hub / "results") == results, "a refused result was cached"
        assert torch.initial_seed() == seed
        _assert_parent_untouched()
        return str(exc.value)


def _listing(path: Path) -> frozenset[str]:
    return frozenset(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else frozenset()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("trusted-ctor"), git_server) as env:
        w = World(env, publish(env, "trusted-ctor", {"hubconf.py": HUBCONF}))
        w.load("benign")  # the tree is cached: a refusal must add nothing after this
        yield w


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize("entrypoint", ["hook_activation", "hook_activation_forged"])
def test_register_module_forward_hook_activation_e2e(world: World, entrypoint: str) -> None:
    msg = world.refused(entrypoint)
    assert HOOK in msg


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize(
    ("entrypoint", "path"),
    [
        ("manual_seed_activation", "torch.random:manual_seed"),
        ("default_dtype_activation", "torch:set_default_dtype"),
        ("init_activation", "torch.nn.init:normal_"),
    ],
)
def test_global_effect_activation_e2e(world: World, entrypoint: str, path: str) -> None:
    assert path in world.refused(entrypoint)


@NEEDS_FULL_SANDBOX
def test_private_class_name_e2e(world: World) -> None:
    assert "torch.nn.modules.conv:_ConvNd" in world.refused("private_class")


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize(("entrypoint", "says"), [("forty_thousand_layers", "num_layers=40000"),
                                                 ("forty_thousand_lstm_layers", "registrations")])  # fmt: skip
def test_forged_num_layers_e2e(world: World, entrypoint: str, says: str) -> None:
    start = time.monotonic()
    assert says in world.refused(entrypoint)
    assert time.monotonic() - start < 30  # one sandbox run; building 40000 layers would take minutes


def test_budget_counts_only_the_rebuilding_thread() -> None:
    """Another thread constructing modules while a rebuild runs is neither counted nor refused."""
    import threading

    from securehub.reconstruct.budget import construction_budget

    started, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_thread() -> None:
        started.wait(5)
        try:
            for _ in range(200):
                nn.Linear(2, 2)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        done.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with construction_budget(modules=3, tensors=6, where="test") as budget:
        started.set()
        assert done.wait(30)
        nn.Linear(2, 2)
        assert budget.modules_used == 1
        with pytest.raises(ReconstructRefused):
            nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
        with pytest.raises(ReconstructRefused):  # exhausted stays exhausted (fail closed)
            nn.Identity()
    worker.join()
    assert errors == []
    nn.Sequential(*(nn.Linear(2, 2) for _ in range(10)))  # no budget any more


def test_callable_allowlist_is_public_pure_and_resolvable() -> None:
    """Every listed callable resolves in the installed torch; none is private or a global-effect name."""
    from securehub.reconstruct.allow import TRUSTED_CALLABLES
    from securehub.reconstruct.paths import resolve_installed

    for path in sorted(TRUSTED_CALLABLES):
        module, _, name = path.partition(":")
        assert not name.startswith("_") and not name.endswith("_"), path  # private or in place
        assert not name.startswith(("register", "set", "manual_seed", "load", "save")), path
        assert module in ("torch", "torch.nn.functional"), path
        fn = resolve_installed(path, kind="function", trusted_modules=[], tree=None, what="test")
        assert callable(fn)


# --------------------------------------------------------------------------- dtype names that import torch submodules


@pytest.mark.parametrize("name", ["_inductor", "_dynamo", "onnx", "export", "compiler"])
@pytest.mark.parametrize("place", ["argument", "node-dtype"])
def test_dtype_name_that_lazily_imports_a_torch_submodule_is_refused_without_importing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, place: str
) -> None:
    """``$dtype: "_inductor"`` (or a node's ``dtype``) was looked up with ``getattr(torch, name)``: torch's
    module ``__getattr__`` imports its lazy submodules by that name, so a forged config made the parent
    import ``torch._inductor`` (~800 modules, ~7 s per load) or ``torch.onnx`` before refusing. Now the
    name is looked up in torch's namespace without triggering imports; refused, nothing imported."""
    config, state = _record_model(lambda: nn.Linear(2, 2), tmp_path)
    if place == "argument":
        config["root"]["kwargs"]["dtype"] = {"$dtype": name}
    else:
        config["root"]["dtype"] = name
    # As in a fresh process: the submodule is not imported yet, so torch's module __getattr__ would import it.
    monkeypatch.delattr(torch, name, raising=False)
    imported: list[str] = []

    def lazy_import(attr: str) -> Any:
        imported.append(f"torch.{attr}")
        raise AttributeError(attr)  # record only: the test process does not import it

    monkeypatch.setattr(torch, "__getattr__", lazy_import, raising=False)
    with pytest.raises(SecureHubError) as exc:
        _rebuild(config, state)
    assert type(exc.value) is ReconstructRefused, f"{type(exc.value).__name__}: {exc.value}"
    assert exc.value.code == "reconstruct-refused"
    assert "not a torch dtype" in str(exc.value)
    assert imported == []


# --------------------------------------------------------------------------- wrappers with process-wide effects


def _wrapped(config: dict[str, Any], cls: str) -> dict[str, Any]:
    """The recorded ``Linear`` re-rooted under ``cls(module)`` (what a forging child sends)."""
    inner = config["root"]
    root = {**inner, "class": cls, "args": [{"$module": {"ref": "module"}}], "kwargs": {}}
    root.update(children={"module": inner}, attrs={})
    return {**config, "root": root, "aliases": {}}


@pytest.fixture
def process_group(tmp_path: Path) -> Iterator[None]:
    """A one-rank gloo group, as in a user's distributed job (every rank would take part)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "cls",
    [
        "torch.nn.parallel.distributed:DistributedDataParallel",
        "torch.nn.parallel.data_parallel:DataParallel",
        "torch.nn.cpp:ModuleWrapper",
    ],
)
def test_forged_distributed_wrapper_runs_no_collective_in_the_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, process_group: None, cls: str
) -> None:
    """A forged root ``DistributedDataParallel(model)``: its constructor all-gathers parameter shapes and
    broadcasts states over the user's default process group -- network traffic from the parent at load
    time, and a hang of a real multi-rank job whose other ranks are not loading. Refused by class,
    before any constructor runs; no collective was issued."""
    from torch.nn.parallel import distributed as ddp_mod

    collectives: list[str] = []
    monkeypatch.setattr(ddp_mod, "_verify_param_shape_across_processes", lambda *a, **k: collectives.append("verify"))
    monkeypatch.setattr(ddp_mod, "_sync_module_states", lambda *a, **k: collectives.append("sync"))
    config, state = _record_model(lambda: nn.Linear(2, 2), tmp_path)
    save_file({f"module.{k}": v for k, v in load_file(str(state)).items()}, str(state))  # the wrapper's names
    with pytest.raises(SecureHubError) as exc:
        _rebuild(_wrapped(config, cls), state)
    assert collectives == []
    assert type(exc.value) is ReconstructRefused, f"{type(exc.value).__name__}: {exc.value}"
    assert exc.value.code == "reconstruct-refused"
    assert "model.module" in str(exc.value)
