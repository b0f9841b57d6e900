"""A sandbox child that sends an exported program nobody asked for (red team 4).

The parent asks for a program only when the load has example inputs (the caller's, or hub.lock's) and
the policy lists ``export`` (``CallRequest.want_export``). Before this fix the session admitted an
``export`` frame on any load: a hostile child whose entrypoint returns a plain ``nn.Linear`` (so its
state and config are exactly what hub.lock pins, and ``lock -e`` pinned them without a program because
no inputs were recorded) could attach a forged program. An output pin compares a program only when the
lock recorded example inputs, so nothing compared it, and under a policy that tries ``export`` first the
rebuilt model's ``forward()`` was the forged one: the pinned, "verified" load ran other code. Now an
unrequested ``export`` frame is ``sandbox-protocol`` (the catch-all for frames the call does not allow):
nothing is rebuilt, cached or locked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer

#: Runs in the child. It flips the child's own call request to "export wanted", hands the exporter an input
#: the parent never sent, and exports a module whose forward is not nn.Linear's over the same weights.
HUBCONF = """
import sys

import torch
from torch import nn

dependencies = ["torch"]


class Forged(nn.Module):
    def __init__(self, linear):
        super().__init__()
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x):
        return x.sum() * 0 + 1337.0


def net():
    runtime = sys.modules["securehub.sandbox.child.runtime"]
    messages = sys.modules["securehub.sandbox.wire.messages"]
    frame = sys._getframe(1)
    while frame is not None:
        call = frame.f_locals.get("call")
        if isinstance(call, messages.CallRequest):
            object.__setattr__(call, "want_export", True)
        frame = frame.f_back
    runtime._example_inputs = lambda call, body: (torch.ones(2, 4),)
    honest = runtime.export_program
    runtime.export_program = lambda model, inputs, tensors, aliases, **kw: honest(
        Forged(model), inputs, tensors, aliases, **kw
    )
    torch.manual_seed(0)
    return nn.Linear(4, 4).eval()
"""


@pytest.fixture(scope="module")
def git_world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("unsolicited-export"), git_server) as env:
        yield env


def _results(hub: Path) -> list[Path]:
    return sorted((hub / "results").glob("*")) if (hub / "results").exists() else []


@NEEDS_FULL_SANDBOX
def test_unsolicited_exported_program_is_refused_at_lock_and_load(git_world: HubEnv, tmp_path: Path) -> None:
    spec = git_world.spec(publish(git_world, "unsolicited-export", {"hubconf.py": HUBCONF}))
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)  # the tree only: no sandbox run yet
    # export first: the order under which the forged program became forward()
    policy = write_policy(
        tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"},
        reconstruct={"strategies": ["export", "trusted"]},
    )  # fmt: skip
    before = Snapshot.take(git_world.hub, lock)

    # lock -e with no example inputs: before the fix it pinned state and config and never the program
    with pytest.raises(SecureHubError) as locking:
        lock_repos([spec], entrypoints=["net"], policy=policy, lock=lock)
    assert locking.value.code == "sandbox-protocol", str(locking.value)
    assert "'export' frame" in str(locking.value)
    before.assert_unchanged(git_world.hub, lock)

    # a load with no example inputs: before the fix it returned the forged forward (1337 for every input)
    with pytest.raises(SecureHubError) as loading:
        securehub.load(spec, "net", policy=policy, lock=lock, verbose=False)
    assert loading.value.code == "sandbox-protocol", str(loading.value)
    assert _results(git_world.hub) == []
    before.assert_unchanged(git_world.hub, lock)


@NEEDS_FULL_SANDBOX
def test_a_requested_export_still_loads(git_world: HubEnv, tmp_path: Path) -> None:
    """The same program, asked for (example inputs given), loads: only the unrequested frame is refused."""
    spec = git_world.spec(publish(git_world, "requested-export", {"hubconf.py": HUBCONF}))
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)
    policy = write_policy(
        tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"},
        reconstruct={"strategies": ["export", "trusted"]},
    )  # fmt: skip
    model = securehub.load(spec, "net", policy=policy, lock=lock, verbose=False, example_inputs=(torch.ones(2, 4),))
    assert type(model).__name__ == "ExportedModule"
