"""Attacks on the ``source`` strategy's parent-side re-run of the entrypoint (issue 10 item 3).

Under a policy that lists ``source``, the entrypoint runs a second time in the
parent (after the sandbox ran it). A hubconf can tell the two apart (here: the
sandbox scrubs ``SECUREHUB_DIR`` from the environment), so in the parent it
may try what the sandbox stopped: reach the network, fetch an artifact the
sandbox never fetched, start a process, or build a different model. Every such
load must fail with its exact code, and nothing may happen: no connection
reaches the listener, no canary appears, no result is cached, hub.lock is
byte-identical. Real git server, artifact server, sandbox and torch.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save

import securehub
import securehub.reconstruct.rebuild as reconstruct_mod
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import HubEnv, Snapshot, TcpListener, hub_env_context, publish, write_policy
from tests._servers import GitServer

PRELUDE = '''
dependencies = ["torch"]
import os
import torch
from torch import nn

#: the sandbox scrubs every SECUREHUB_* variable: this is True only in the parent-side re-run
IN_PARENT = "SECUREHUB_DIR" in os.environ


class Net(nn.Module):
    """A repo-defined class: under the permissive policy only the source strategy rebuilds it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x)


def _pretrained(model):
    model.load_state_dict(torch.hub.load_state_dict_from_url("@WEIGHTS@", progress=False))
    return model
'''

#: entrypoint name -> body run only in the parent (indented into ``if IN_PARENT:``), swallowing errors
PARENT_ACTIONS: dict[str, str] = {
    "urlopen": "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:@PORT@/steal', timeout=2)",
    "socket": "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=2).close()",
    "requests": "import requests\nrequests.get('http://127.0.0.1:@PORT@/steal', timeout=2)",
    "hub_unlocked_url": "torch.hub.load_state_dict_from_url('http://127.0.0.1:@PORT@/other.pth', progress=False)",
    "download_unlocked_url": "torch.hub.download_url_to_file('http://127.0.0.1:@PORT@/x', '@CANARY@.dl')",
    "subprocess": "import subprocess\nsubprocess.run(['touch', '@CANARY@'], check=False)",
}
CODES = {
    "urlopen": "sandbox-violation",
    "socket": "sandbox-violation",
    "requests": "sandbox-violation",
    "hub_unlocked_url": "artifact-not-allowed",
    "download_unlocked_url": "artifact-not-allowed",
    "subprocess": "sandbox-violation",
}

#: entrypoints that build a different model in the parent than in the sandbox
DIVERGING = """

def values_differ():
    model = _pretrained(Net())
    if IN_PARENT:
        with torch.no_grad():
            model.fc.bias.add_(1.0)  # e.g. a backdoored bias only outside the sandbox
    return model


def keys_differ():
    model = _pretrained(Net())
    if IN_PARENT:
        model.extra = nn.Linear(3, 3)
    return model


def fails_in_parent():
    if IN_PARENT:
        raise RuntimeError("not in the sandbox")
    return _pretrained(Net())


def honest():
    return _pretrained(Net())
"""


def _attack_entrypoints() -> str:
    out = []
    for name, body in PARENT_ACTIONS.items():
        inner = "\n".join("            " + line for line in body.splitlines())
        out.append(
            f"\n\ndef {name}():\n    model = _pretrained(Net())\n    if IN_PARENT:\n        try:\n{inner}\n"
            "        except BaseException:\n            pass  # swallowed: the load must fail all the same\n"
            "    return model\n"
        )
    return "".join(out)


class World:
    def __init__(self, env: HubEnv, listener: TcpListener) -> None:
        self.env = env
        self.canary = env.root / "canary"
        torch.manual_seed(3)
        weights = {f"fc.{k}": v.contiguous() for k, v in torch.nn.Linear(4, 3).state_dict().items()}
        self.weights = weights
        url = env.put("source-attacks/net.safetensors", save(weights))
        hubconf = (PRELUDE + _attack_entrypoints() + DIVERGING).replace("@WEIGHTS@", url)
        hubconf = hubconf.replace("@PORT@", str(listener.port)).replace("@CANARY@", str(self.canary))
        self.repo = publish(env, "source-attacks", {"hubconf.py": hubconf})
        self.spec = env.spec(self.repo)
        self.lock = env.root / "hub.lock"
        # Every entrypoint locked (artifacts pinned) so a successful load would store a result.
        lock_repos([self.spec], entrypoints=[*PARENT_ACTIONS, "values_differ", "keys_differ", "fails_in_parent",
                                             "honest"], policy="strict", lock=self.lock)  # fmt: skip
        # permissive, but lock.mode auto: a load that got through would record into hub.lock
        self.policy = write_policy(env.root / "source.yaml", extends="permissive", lock={"mode": "auto"})

    def results(self) -> list[str]:
        root = self.env.hub / "results"
        return sorted(p.name for p in root.iterdir()) if root.is_dir() else []

    def load(self, entrypoint: str) -> torch.nn.Module:
        return securehub.load(self.spec, entrypoint, policy=str(self.policy), lock=self.lock, verbose=False)


@pytest.fixture(scope="module")
def listener() -> Iterator[TcpListener]:
    lis = TcpListener()
    yield lis
    lis.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer, listener: TcpListener) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("source-attacks"), git_server) as env:
        yield World(env, listener)


def _refused(world: World, entrypoint: str) -> SecureHubError:
    before = Snapshot.take(world.env.hub, world.lock)
    results = world.results()
    with pytest.raises(SecureHubError) as info:
        world.load(entrypoint)
    before.assert_unchanged(world.env.hub, world.lock)
    assert world.results() == results, "a refused load left a cached result"
    return info.value


def test_honest_entrypoint_loads_with_source_and_equals_the_weights(world: World) -> None:
    """The control: the same repository and policy, without a parent-only action, load fine."""
    model = world.load("honest")
    assert type(model).__name__ == "Net" and type(model).__module__.startswith("_securehub_src_")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in world.weights.items())


@pytest.mark.parametrize("entrypoint", list(PARENT_ACTIONS))
def test_source_rerun_never_contacts_the_network_or_starts_processes(
    world: World, listener: TcpListener, entrypoint: str
) -> None:
    listener.received.clear()
    world.env.clear_logs()
    err = _refused(world, entrypoint)
    assert err.code == CODES[entrypoint], err
    assert listener.received == [], "a connection reached the listener"
    assert world.env.artifacts.requests == [], "the artifact server was contacted"
    assert not world.canary.exists() and not Path(f"{world.canary}.dl").exists()


@pytest.mark.parametrize("entrypoint", ["values_differ", "keys_differ", "fails_in_parent"])
def test_source_hubconf_that_detects_the_sandbox_is_a_mismatch(world: World, entrypoint: str) -> None:
    err = _refused(world, entrypoint)
    assert err.code == "reconstruct-mismatch", err
    assert "differ" in err.message and "sandbox" in err.message


def test_source_artifact_tampered_after_the_sandbox_run_is_a_hash_mismatch(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cached blob changes between the sandbox's verified fetch and the parent-side call (TOCTOU)."""
    pin = securehub.Lockfile.load(world.lock).artifacts
    (digest,) = {a.sha256 for a in pin.values()}
    blob = world.env.hub / "artifacts" / "sha256" / digest
    original = blob.read_bytes()
    real = reconstruct_mod.reconstruct_source
    seen: list[bytes] = []

    def tamper_first(*args: Any, **kwargs: Any) -> torch.nn.Module:
        blob.chmod(0o644)
        evil = {k: torch.full_like(v, 9.0) for k, v in world.weights.items()}  # same names, shapes
        blob.write_bytes(save(evil))
        seen.append(blob.read_bytes())
        return real(*args, **kwargs)

    monkeypatch.setattr(reconstruct_mod, "reconstruct_source", tamper_first)
    try:
        err = _refused(world, "honest")
    finally:
        blob.write_bytes(original)
    assert seen, "the parent-side call was not reached"
    assert err.code == "hash-mismatch", err
    assert digest in err.message


def test_source_rerun_does_not_resolve_dns(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup is refused too (DNS is a channel); proven with a hubconf-style call in the guarded section."""
    from securehub.reconstruct.source_guard import ArtifactSource, guarded_call

    def lookup() -> None:
        try:
            socket.getaddrinfo("example.com", 443)
        except SecureHubError:
            pass  # swallowed: still refused

    with pytest.raises(SecureHubError) as info:
        guarded_call(ArtifactSource((), {}, lambda sha: world.env.root / sha), lookup)
    assert info.value.code == "sandbox-violation"
    assert "getaddrinfo" in info.value.message
