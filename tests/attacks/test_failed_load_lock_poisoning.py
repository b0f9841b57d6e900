"""Lock poisoning by a failed load: a refused or failed operation must not write hub.lock (SPEC section 2).

Under ``lock.mode: auto`` (the default policy) a successful load records a new
repo, its entrypoint and the artifacts it fetched into the lock file in use.
Before this fix the recording ran right after the sandbox returned, i.e.
*before* the parent checked and rebuilt the child's output: a hostile repo
whose load ends in ``reconstruct-refused`` (or whose entrypoint raises after
fetching weights) still got its commit, its entrypoint and the weights it chose
pinned into the user's hub.lock, where the next review sees them as vetted.

Every test here runs end to end -- real git server, real artifact server, the
real sandbox and real torch -- and asserts the exact code, that hub.lock is
byte-identical, that nothing was stored as a result, and (for the forged
config) that the payload never ran.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import save
from torch import nn

import securehub
from securehub.config.lockfile import Lockfile
from securehub.errors import SecureHubError
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = textwrap.dedent(
    '''
    import torch
    from torch import nn

    dependencies = ["torch"]

    W_URL = "@W_URL@"
    CANARY = "@CANARY@"
    INNER = "@INNER@"


    class Local(nn.Module):
        """A class defined in this repo: the default policy cannot rebuild it without example_inputs."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)


    def _fetch():
        return torch.hub.load_state_dict_from_url(W_URL, progress=False)


    def fetch_then_unrebuildable():
        """Fetches real weights (so auto-lock would pin them), then returns what the parent refuses."""
        _fetch()
        return Local()


    def fetch_then_raise():
        _fetch()
        raise RuntimeError("entrypoint failed after fetching")


    def forged_config():
        """Rewrites the child's own recorder so the config names os:system (a hostile child's lie)."""
        import securehub.sandbox.child.runtime as runtime

        honest = runtime.describe

        def forge(module, tree=None):
            config = honest(module, tree=tree)
            config["root"]["class"] = "os:system"
            config["root"]["args"] = ["touch " + CANARY]
            config["root"]["kwargs"] = {}
            return config

        runtime.describe = forge
        model = nn.Linear(4, 2)
        model.load_state_dict(_fetch())
        return model


    def nested_then_unrebuildable():
        """A nested load of another repo succeeds, then the outer result is refused."""
        torch.hub.load(INNER, "plain")
        return Local()
    '''
)

INNER_HUBCONF = textwrap.dedent(
    """
    from torch import nn

    dependencies = ["torch"]


    def plain():
        return nn.Linear(2, 2)
    """
)


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.canary = env.root / "canary"
        self.w_url = env.put("poison/w.safetensors", save(nn.Linear(4, 2).state_dict()))
        inner = publish(env, "inner", {"hubconf.py": INNER_HUBCONF})
        self.inner_spec = env.spec(inner)
        source = (
            HUBCONF.replace("@W_URL@", self.w_url)
            .replace("@CANARY@", str(self.canary))
            .replace("@INNER@", self.inner_spec)
        )
        self.spec = env.spec(publish(env, "poison", {"hubconf.py": source}))

    def fresh_lock(self, tmp_path: Path) -> Path:
        """An existing hub.lock (so lock.mode: auto would record into it) pinning nothing yet."""
        path = tmp_path / "hub.lock"
        Lockfile.empty().save(path)
        return path

    def results(self) -> list[str]:
        d = self.env.hub / "results"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("lock-poisoning"), git_server) as env:
        yield World(env)


def _refused(world: World, lock: Path, entrypoint: str, code: str) -> None:
    before = lock.read_bytes()
    results = world.results()
    with pytest.raises(SecureHubError) as info:
        securehub.load(world.spec, entrypoint, policy="default", lock=lock, verbose=False)
    assert info.value.code == code, str(info.value)
    assert lock.read_bytes() == before, "a failed load changed hub.lock"
    assert world.results() == results, "a failed load stored a result"
    last = [r for r in audit_records(world.env) if r["action"] == "load" and r["entrypoint"] == entrypoint][-1]
    assert last["code"] == code and last["outcome"] in ("refused", "error")


def test_lock_poisoning_by_reconstruct_refused_load(world: World, tmp_path: Path) -> None:
    lock = world.fresh_lock(tmp_path)
    _refused(world, lock, "fetch_then_unrebuildable", "reconstruct-refused")


def test_lock_poisoning_by_entrypoint_error_after_fetch(world: World, tmp_path: Path) -> None:
    lock = world.fresh_lock(tmp_path)
    _refused(world, lock, "fetch_then_raise", "entrypoint-error")


def test_lock_poisoning_by_forged_config_naming_os_system(world: World, tmp_path: Path) -> None:
    lock = world.fresh_lock(tmp_path)
    _refused(world, lock, "forged_config", "reconstruct-refused")
    assert not world.canary.exists()


def test_lock_poisoning_through_nested_load_of_another_repo(world: World, tmp_path: Path) -> None:
    lock = world.fresh_lock(tmp_path)
    _refused(world, lock, "nested_then_unrebuildable", "reconstruct-refused")
    assert Lockfile.load(lock).repo(world.inner_spec) is None


def test_lock_poisoning_control_a_successful_load_still_records(world: World, tmp_path: Path) -> None:
    """The fix moves the recording, it does not drop it: a load that passes every check is pinned."""
    lock = world.fresh_lock(tmp_path)
    securehub.load(world.inner_spec, "plain", policy="default", lock=lock, verbose=False)
    entry = Lockfile.load(lock).repo(world.inner_spec)
    assert entry is not None and "plain" in entry.entrypoints
