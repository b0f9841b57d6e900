"""Attacks: a hostile child lying about the example inputs its ``--example-input auto`` search found.

The search runs in the child next to repository code, so the hubconf can rewrite what the child
sends: here it wraps the runtime's ``send_frame_parts`` and puts its own ``found_inputs`` into the
``result`` frame -- shapes of 2**60 elements, negative or non-integer dims, dtypes torch does not
have, more inputs than hub.lock admits. The parent must treat the list as hostile data with the
same bounds as a user's ``--example-input``: ``sandbox-protocol`` when the frame is parsed, before
any tensor is built from it, nothing written to hub.lock and nothing cached. A child that reports
inputs although no search was asked for is refused the same way (deny by default).
End to end: real git server, real sandbox, real torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import securehub
import securehub.pipeline.sandbox_run
import securehub.sandbox.example_inputs
from securehub.config.lockfile import Lockfile
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish

pytestmark = NEEDS_FULL_SANDBOX

#: What the hostile child claims it found (the ``found_inputs`` value of its ``result`` frame).
FORGED: dict[str, Any] = {
    "huge": [{"shape": [2**20, 2**20, 2**20], "dtype": "float32"}],
    "2**62 elements": [{"shape": [2**31, 2**31], "dtype": "uint8"}],
    "negative": [{"shape": [1, -3, 224, 224], "dtype": "float32"}],
    "float dim": [{"shape": [1, 4.5], "dtype": "float32"}],
    "bool dim": [{"shape": [True, 4], "dtype": "float32"}],
    "absurd dtype": [{"shape": [1, 4], "dtype": "torch.nn.Module"}],
    "33 dims": [{"shape": [1] * 33, "dtype": "float32"}],
    "17 inputs": [{"shape": [1, 4], "dtype": "float32"}] * 17,
    "192 MiB together": [{"shape": [1 << 24], "dtype": "float32"}] * 3,
    "extra key": [{"shape": [1, 4], "dtype": "float32", "fill": "os.system"}],
    "not a list": "1x4:float32",
    "empty list": [],
}

HUBCONF = (
    '''
import json
import sys

import torch
from torch import nn

dependencies = ["torch"]
FORGED = json.loads(@FORGED@)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def forged(case="huge"):
    """Build an honest model, then make the child's own runtime lie about the inputs it found."""
    runtime = sys.modules["securehub.sandbox.child.runtime"]
    honest = runtime.send_frame_parts

    def lying(channel, ftype, meta, parts):
        meta = dict(meta)
        meta["found_inputs"] = FORGED[case]
        return honest(channel, ftype, meta, parts)

    runtime.send_frame_parts = lying
    return Net().eval()
'''
).replace("@FORGED@", repr(json.dumps({**FORGED, "valid": [{"shape": [1, 4], "dtype": "float32"}]})))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: Any) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("example-input-auto-attacks"), git_server) as hub_env:
        repo = publish(hub_env, "forged-inputs", {"hubconf.py": HUBCONF})
        yield hub_env, hub_env.spec(repo)


@pytest.fixture
def no_allocation(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record any attempt of the parent to build example tensors (the forged shapes must never get there)."""
    calls: list[object] = []
    monkeypatch.setattr(securehub.sandbox.example_inputs, "example_tensors", lambda specs: calls.append(specs))
    monkeypatch.setattr(securehub.pipeline.sandbox_run, "example_tensors", lambda specs: calls.append(specs))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(torch, "randint", lambda *a, **k: calls.append(a))
    return calls


def _results(hub: Path) -> list[str]:
    results = hub / "results"
    return sorted(p.name for p in results.iterdir()) if results.exists() else []


@pytest.mark.parametrize("case", list(FORGED))
def test_forged_found_inputs_at_lock_time_are_sandbox_protocol_and_nothing_is_locked(
    case: str, env: tuple[HubEnv, str], tmp_path: Path, no_allocation: list[object]
) -> None:
    hub_env, spec = env
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="strict", lock=lock)  # the repo pinned; the entrypoint not yet
    before = lock.read_bytes()

    with pytest.raises(SecureHubError) as info:
        lock_repos(
            [spec], entrypoints=["forged"], args={"case": case}, policy="strict", lock=lock, example_inputs=["auto"]
        )

    assert info.value.code == "sandbox-protocol", info.value.message
    assert "found_inputs" in info.value.message
    assert no_allocation == []
    assert lock.read_bytes() == before, "hub.lock changed"
    assert _results(hub_env.hub) == []


def test_forged_found_inputs_on_load_auto_are_refused_before_rebuild_or_auto_lock(
    env: tuple[HubEnv, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_allocation: list[object]
) -> None:
    hub_env, spec = env
    monkeypatch.chdir(tmp_path)
    Lockfile.empty().save(tmp_path / "hub.lock")  # lock.mode: auto would record into it
    snap = Snapshot.take(hub_env.hub, tmp_path / "hub.lock")
    rebuilt: list[object] = []
    monkeypatch.setattr("securehub.reconstruct.rebuild.reconstruct", lambda **kw: rebuilt.append(kw))

    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "forged", case="huge", policy="default", example_inputs="auto", verbose=False)

    assert info.value.code == "sandbox-protocol", info.value.message
    assert (no_allocation, rebuilt) == ([], [])
    snap.assert_unchanged(hub_env.hub, tmp_path / "hub.lock")
    assert _results(hub_env.hub) == []


def test_found_inputs_the_parent_did_not_ask_for_are_sandbox_protocol(
    env: tuple[HubEnv, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deny by default: with explicit example inputs no search runs, so any ``found_inputs`` is a lie."""
    hub_env, spec = env
    monkeypatch.chdir(tmp_path)
    Lockfile.empty().save(tmp_path / "hub.lock")
    before = (tmp_path / "hub.lock").read_bytes()

    with pytest.raises(SecureHubError) as info:
        securehub.load(
            spec, "forged", case="valid", policy="default", example_inputs=(torch.zeros(1, 4),), verbose=False
        )

    assert info.value.code == "sandbox-protocol", info.value.message
    assert "no search was requested" in info.value.message
    assert (tmp_path / "hub.lock").read_bytes() == before
