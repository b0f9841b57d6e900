"""Red team 9 (leftovers of red team 8): what resolving a forged class or enum path may import or admit.

- A config class path in a ``torch.nn`` submodule that ``import torch`` does not load
  (``torch.nn.attention.bias:CausalBias``) made the parent import it -- some 820 installed modules
  (``torch._dynamo`` and its dependencies), 1-2 s per load -- before the class was refused as not an
  ``nn.Module``. The trusted strategy now imports only the allowlisted package itself (the
  ``trusted_modules`` entry) and takes a class's module from what that loaded: anything else is
  ``reconstruct-refused`` before any import.
- ``$enum`` references were not checked against ``REFUSED_CLASS_MODULES``: a private enum of
  ``torch.nn.parallel.distributed`` resolved. Now refused like a class of those modules.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.reconstruct import paths as paths_mod
from securehub.reconstruct.rebuild import reconstruct
from tests._hub_helpers import FORGE_DESCRIBE, NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._reconstruct_helpers import record
from tests._servers import GitServer

#: torch.nn submodules `import torch` does not load (each pulls in torch._dynamo or more).
UNLOADED = [
    "torch.nn.attention.bias:CausalBias",
    "torch.nn.attention.varlen:AuxRequest",
    "torch.nn.attention.flex_attention:BlockMask",
]
REFUSED_ENUMS = [
    "torch.nn.parallel.distributed:_BufferCommHookLocation",
    "torch.nn.parallel.distributed:_DDPJoinHook",
]


@pytest.fixture(name="imports")
def imports_fixture(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every module the resolver asks importlib for (recorded even when the test process loaded it already)."""
    seen: list[str] = []
    real = importlib.import_module

    def spy(name: str, package: str | None = None) -> Any:
        seen.append(name)
        return real(name, package)

    monkeypatch.setattr(paths_mod.importlib, "import_module", spy)
    return seen


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted"], trusted_modules=["torch.nn"], tree=None
    )
    return model


@pytest.mark.parametrize("path", UNLOADED)
def test_class_in_an_unloaded_torch_nn_submodule_is_refused_before_any_import(
    tmp_path: Path, imports: list[str], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Unloaded as after `import torch`, whatever earlier tests of this process imported (torch.export and
    # dynamo load flex_attention; the full suite then saw a loaded module, refused for another reason).
    monkeypatch.delitem(sys.modules, path.split(":", maxsplit=1)[0], raising=False)
    _, config, state = record(lambda: nn.Linear(2, 2), tmp_path)
    config["root"]["class"] = path
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert "is not loaded by importing 'torch.nn'" in str(exc.value), str(exc.value)
    assert path.split(":", maxsplit=1)[0] not in imports and set(imports) <= {"torch.nn", "torch"}, imports


@pytest.mark.parametrize("path", UNLOADED)
def test_class_argument_in_an_unloaded_torch_nn_submodule_is_refused_before_any_import(
    tmp_path: Path, imports: list[str], path: str
) -> None:
    _, config, state = record(lambda: nn.Linear(2, 2), tmp_path)
    config["root"]["kwargs"]["device"] = {"$class": path}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert path.split(":", maxsplit=1)[0] not in imports, imports


@pytest.mark.parametrize("path", REFUSED_ENUMS)
def test_enum_of_a_refused_parallel_module_is_refused(tmp_path: Path, imports: list[str], path: str) -> None:
    _, config, state = record(lambda: nn.Linear(2, 2), tmp_path)
    config["root"]["kwargs"]["device"] = {"$enum": {"class": path, "name": "PRE_FORWARD"}}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert "parallel/distributed" in str(exc.value), str(exc.value)
    assert "torch.nn.parallel.distributed" not in imports, imports  # refused on the path, before resolution


def test_loaded_torch_nn_classes_still_rebuild_control(tmp_path: Path) -> None:
    _, config, state = record(lambda: nn.Sequential(nn.Linear(2, 2), nn.GELU(approximate="tanh")), tmp_path)
    model = _rebuild(config, state)
    assert type(model[0]) is nn.Linear and model[1].approximate == "tanh"


# --------------------------------------------------------------------------- end to end: a hostile child forges them

HUBCONF = (
    """
import os

import torch
from torch import nn

dependencies = ["torch"]

"""
    + FORGE_DESCRIBE
    + """

def benign():
    return nn.Linear(2, 2)


def _honest():
    torch.manual_seed(0)
    return nn.Linear(2, 2)


# Time bombs (strict pins outputs; hub.lock recorded the honest run): they forge once MKL_NUM_THREADS
# (one of the few variables a child sees) is 7.
def unloaded_submodule_class():
    if os.environ.get("MKL_NUM_THREADS") == "7":
        _forge(lambda root: root.__setitem__("class", "torch.nn.attention.bias:CausalBias"))
    return _honest()


def parallel_enum():
    enum = {"$enum": {"class": "torch.nn.parallel.distributed:_BufferCommHookLocation", "name": "PRE_FORWARD"}}
    if os.environ.get("MKL_NUM_THREADS") == "7":
        _forge(lambda root: root["kwargs"].__setitem__("device", enum))
    return _honest()
"""
)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("trusted-imports"), git_server) as env:
        spec = env.spec(publish(env, "trusted-imports", {"hubconf.py": HUBCONF}))
        lock_repos(
            [spec],
            entrypoints=["unloaded_submodule_class", "parallel_enum"],
            policy="strict",
            lock=env.root / "strict.lock",
        )
        yield env, spec


def _results(hub: Path) -> list[str]:
    return sorted(str(p.relative_to(hub)) for p in (hub / "results").rglob("*")) if (hub / "results").exists() else []


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize("policy", ["default", "strict"])
@pytest.mark.parametrize(
    ("entrypoint", "says"),
    [
        ("unloaded_submodule_class", "is not loaded by importing 'torch.nn'"),
        ("parallel_enum", "parallel/distributed"),
    ],
)
def test_forged_paths_are_refused_end_to_end(
    hub: tuple[HubEnv, str],
    imports: list[str],
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    entrypoint: str,
    says: str,
) -> None:
    env, spec = hub
    # strict: hub.lock pins the honest output, so the forged config is caught by the pin, before any rebuild.
    lock = env.root / "strict.lock" if policy == "strict" else None
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    before, results = Snapshot.take(env.hub, lock), _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, entrypoint, policy=policy, lock=lock, verbose=False)
    before.assert_unchanged(env.hub, lock)
    assert _results(env.hub) == results, "a refused result was cached"
    assert "torch.nn.attention.bias" not in imports and "torch.nn.parallel.distributed" not in imports, imports
    if policy == "strict":
        assert exc.value.code == "output-mismatch", str(exc.value)
        return
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert says in str(exc.value), str(exc.value)
