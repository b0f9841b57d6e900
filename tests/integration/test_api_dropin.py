"""Drop-in torch.hub use (SPEC section 2), end to end: real git server, artifact server, sandbox, torch.

- torch.hub's own parameters are accepted by every function torch.hub accepts them on and never
  reach the entrypoint; where the policy decides instead, the audit line says so;
- a ``lock=`` path that does not exist is ``lock-invalid`` and is never created;
- a successful default-policy load still records into an existing hub.lock;
- interrupted and misused loads leave an audit line with a non-null code.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

import securehub
import securehub.pipeline.sandbox_run as sandbox_run_mod
from securehub.config.lockfile import Lockfile
from securehub.errors import SecureHubError
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

SPEC_KEYS = {
    "time", "action", "spec", "ref", "commit", "tree_sha256", "entrypoint", "args_sha256", "artifacts",
    "policy", "isolation", "strategy", "outcome", "code",
}  # fmt: skip

HUBCONF = textwrap.dedent(
    '''
    """Entrypoints that take no torch.hub parameter: one leaking through is a TypeError here."""
    import torch
    from torch import nn

    dependencies = ["torch"]

    W_URL = "@W_URL@"


    def strict_args(width=2):
        """Only ``width``: a leaked trust_repo/skip_validation/verbose/force_reload fails the call."""
        return nn.Linear(width, 1)


    def weighted():
        model = nn.Linear(4, 2)
        model.load_state_dict(torch.hub.load_state_dict_from_url(W_URL, progress=False))
        return model
    '''
)


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return {k: v.contiguous() for k, v in torch.nn.Linear(4, 2).state_dict().items()}


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.blob = save(_weights())
        self.digest = hashlib.sha256(self.blob).hexdigest()
        self.w_url = env.put(f"dropin/w-{self.digest[:10]}.safetensors", self.blob)
        self.spec = env.spec(publish(env, "dropin", {"hubconf.py": HUBCONF.replace("@W_URL@", self.w_url)}))

    def last(self, action: str) -> dict[str, Any]:
        return [r for r in audit_records(self.env) if r["action"] == action][-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("api-dropin"), git_server) as env:
        yield World(env)


# --------------------------------------------------------------------------- torch.hub parameters


def test_load_accepts_torch_hub_parameters_and_never_passes_them(world: World) -> None:
    model = securehub.load(
        world.spec, "strict_args", 3, policy="default", trust_repo=True, skip_validation=True,
        force_reload=True, verbose=False,
    )  # fmt: skip
    assert isinstance(model, torch.nn.Linear) and model.in_features == 3
    record = world.last("load")
    assert set(record) == SPEC_KEYS
    assert (record["outcome"], record["code"]) == ("ok", None)
    overrides = record["policy"]["overrides"]
    assert any(o.startswith("trust_repo=True ignored") for o in overrides), overrides
    assert any(o.startswith("skip_validation=True ignored") for o in overrides), overrides
    assert record["policy"]["name"] == "default" and len(record["policy"]["sha256"]) == 64


def test_load_without_overrides_keeps_the_policy_field_as_name_and_digest(world: World) -> None:
    securehub.load(world.spec, "strict_args", policy="default", verbose=False)
    assert set(world.last("load")["policy"]) == {"name", "sha256"}


@pytest.mark.parametrize("trust_repo", [True, False, "check", None])
def test_list_accepts_torch_hub_parameters(world: World, trust_repo: object) -> None:
    names = securehub.list(
        world.spec, policy="default", force_reload=False, skip_validation=False, trust_repo=trust_repo, verbose=False
    )
    assert names == ["strict_args", "weighted"]
    policy = world.last("list")["policy"]
    assert ("overrides" in policy) is (trust_repo is not None)


def test_help_accepts_torch_hub_parameters(world: World) -> None:
    doc = securehub.help(world.spec, "strict_args", policy="default", force_reload=True, skip_validation=True,
                         trust_repo="check")  # fmt: skip
    assert "Only ``width``" in doc
    assert any("skip_validation" in o for o in world.last("help")["policy"]["overrides"])


def test_load_state_dict_from_url_accepts_torch_hub_parameters(world: World, tmp_path: Path) -> None:
    state = securehub.load_state_dict_from_url(
        world.w_url, model_dir=str(tmp_path / "models"), map_location="cpu", progress=False, check_hash=True,
        file_name=f"w-{world.digest[:10]}.safetensors", weights_only=True, policy="default",
    )  # fmt: skip
    assert sorted(state) == ["bias", "weight"]
    assert all(torch.equal(state[k], v) for k, v in _weights().items())
    assert (tmp_path / "models" / f"w-{world.digest[:10]}.safetensors").read_bytes() == world.blob


def test_download_url_to_file_accepts_torch_hub_parameters(world: World, tmp_path: Path) -> None:
    dst = tmp_path / "out.bin"
    securehub.download_url_to_file(world.w_url, str(dst), hash_prefix=world.digest[:10], progress=False)
    assert dst.read_bytes() == world.blob


def test_torch_hub_module_level_names() -> None:
    import torch.hub

    assert securehub.HASH_REGEX.pattern == torch.hub.HASH_REGEX.pattern
    for name in ("get_dir", "set_dir", "load_state_dict_from_url", "download_url_to_file", "HASH_REGEX"):
        assert name in securehub.__all__, name


# --------------------------------------------------------------------------- lock paths


@pytest.mark.parametrize("op", ["load", "list", "help"])
def test_missing_explicit_lock_path_is_lock_invalid_and_never_created(world: World, tmp_path: Path, op: str) -> None:
    missing = tmp_path / "missing.lock"
    world.env.clear_logs()
    calls = {
        "load": lambda: securehub.load(world.spec, "strict_args", policy="default", lock=missing, verbose=False),
        "list": lambda: securehub.list(world.spec, policy="default", lock=missing),
        "help": lambda: securehub.help(world.spec, "strict_args", policy="default", lock=missing),
    }
    with pytest.raises(SecureHubError) as info:
        calls[op]()
    assert info.value.code == "lock-invalid"
    assert str(missing) in str(info.value) and "securehub lock" in str(info.value)
    assert not missing.exists()
    assert not world.env.git.requests  # refused before any network access
    assert world.last(op)["code"] == "lock-invalid"


def test_missing_env_lock_is_never_created_by_auto_lock(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "env.lock"
    monkeypatch.setenv("SECUREHUB_LOCK", str(missing))
    securehub.load(world.spec, "strict_args", policy="default", verbose=False)
    assert not missing.exists()


def test_successful_default_load_records_into_existing_lock(world: World, tmp_path: Path) -> None:
    lock = tmp_path / "hub.lock"
    Lockfile.empty().save(lock)
    securehub.load(world.spec, "weighted", policy="default", lock=lock, verbose=False)
    pinned = Lockfile.load(lock)
    entry = pinned.repo(world.spec)
    assert entry is not None and entry.entrypoints["weighted"].artifacts == (world.w_url,)
    art = pinned.artifact(world.w_url)
    assert art is not None and art.sha256 == world.digest


# --------------------------------------------------------------------------- audit codes


def test_interrupted_load_is_audited_with_a_code(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sandbox_run_mod, "verified_tree", interrupt)
    with pytest.raises(KeyboardInterrupt):
        securehub.load(world.spec, "strict_args", policy="default", verbose=False)
    record = world.last("load")
    assert (record["outcome"], record["code"]) == ("error", "interrupted")


def test_type_error_load_is_audited_with_a_code(world: World) -> None:
    with pytest.raises(TypeError):
        securehub.load(world.spec, "strict_args", object(), policy="default", verbose=False)
    record = world.last("load")
    assert record["outcome"] == "error" and record["code"] == "usage"


# --------------------------------------------------------------------------- errors name the URL


def test_unsafe_pickle_error_names_the_url_not_the_temp_file(world: World) -> None:
    from tests._pickle_fixtures import reduce_call

    url = world.env.put("dropin/evil.pkl", reduce_call("os", "system", "true"))
    with pytest.raises(SecureHubError) as info:
        securehub.load_state_dict_from_url(url, progress=False, policy="default")
    assert info.value.code == "unsafe-pickle"
    assert url in str(info.value)
    assert "download-" not in str(info.value) and ".part" not in str(info.value)


def test_format_error_names_the_url_not_the_temp_file(world: World) -> None:
    url = world.env.put("dropin/readme.txt", b"just some text, not a checkpoint\n")
    with pytest.raises(SecureHubError) as info:
        securehub.load_state_dict_from_url(url, progress=False, policy="default")
    assert info.value.code == "format-not-allowed"
    assert str(info.value).startswith(url + ": ")
    assert "download-" not in str(info.value)
