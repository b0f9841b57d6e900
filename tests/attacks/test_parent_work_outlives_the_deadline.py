"""Red team 5: parent-side work a child asks for just before its deadline must end with the deadline.

``sandbox.timeout_s`` is the wall-clock limit of a load's sandbox, and the docs said a nested load's
wait "counts against" it. But the parent answered a child's requests with budgets of their own:
a nested ``torch.hub.load`` ran a whole new sandbox with the *full* ``timeout_s`` and a brokered
download had the full ``artifacts.download_timeout_s`` (an hour by default), whenever the child
asked. The watchdog killed the child at its deadline while the parent was still busy for it: a
hubconf that asked at the last second for a nested entrypoint that sleeps held ``securehub.load``
about twice its limit (four times through three nesting levels), and one that asked for a stalling
artifact held it until the download limit. Requests now carry the child's deadline: a nested
sandbox gets at most the time its requester has left, a download at most that time, and a request
answered after the deadline fails the load with ``sandbox-timeout``.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator

import pytest

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

TIMEOUT_S = 20
#: Well under the bug (the deadline plus a whole second budget) and above an honest stop at the
#: deadline on a loaded machine (kill, reap, cleanup).
SLACK_S = 7

INNER = textwrap.dedent("""
    import time

    dependencies = ["torch"]


    def sleeper():
        time.sleep(3600)
""")

OUTER = textwrap.dedent("""
    import time

    import torch

    dependencies = ["torch"]


    def _until_late(lead_s):
        # The parent started this child about when torch was imported; ask shortly before the deadline.
        time.sleep(max(0.0, TIMEOUT_S - lead_s - (time.monotonic() - _STARTED)))


    _STARTED = time.monotonic()
    TIMEOUT_S = %(timeout)d


    def late_nested(spec=""):
        _until_late(8)
        return torch.hub.load(spec, "sleeper")


    def late_download(url=""):
        _until_late(8)
        return torch.hub.load_state_dict_from_url(url)
""") % {"timeout": TIMEOUT_S}


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.lock = env.root / "hub.lock"
        self.inner = env.spec(publish(env, "sleeper", {"hubconf.py": INNER}))
        self.outer = env.spec(publish(env, "late-asker", {"hubconf.py": OUTER}))
        lock_repos([self.outer, self.inner], policy="default", lock=self.lock)
        self.policy = str(write_policy(
            env.root / "short.yaml", extends="default",
            sandbox={"timeout_s": TIMEOUT_S}, artifacts={"download_timeout_s": 120},
        ))  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("late"), git_server) as env:
        yield World(env)


def _results(world: World) -> list[str]:
    where = world.env.hub / "results"
    return sorted(p.name for p in where.glob("*")) if where.exists() else []


def _load_expecting_timeout(world: World, entrypoint: str, **kwargs: str) -> float:
    before = Snapshot.take(world.env.hub, world.lock)
    results = _results(world)
    started = time.monotonic()
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(world.outer, entrypoint, policy=world.policy, lock=world.lock, verbose=False, **kwargs)
    elapsed = time.monotonic() - started
    assert excinfo.value.code == "sandbox-timeout", str(excinfo.value)
    before.assert_unchanged(world.env.hub, world.lock)
    assert _results(world) == results
    last = json.loads(world.env.audit_log.read_text().splitlines()[-1])
    assert last["entrypoint"] == entrypoint and last["code"] == "sandbox-timeout", last
    return elapsed


def test_nested_load_asked_for_at_the_deadline_ends_with_it(world: World) -> None:
    elapsed = _load_expecting_timeout(world, "late_nested", spec=world.inner)
    assert elapsed < TIMEOUT_S + SLACK_S, f"the load took {elapsed:.1f} s with sandbox.timeout_s {TIMEOUT_S}"


def test_stalling_download_asked_for_at_the_deadline_ends_with_it(world: World) -> None:
    world.env.artifacts.put("stall/w.pth", b"\0" * 4096)
    world.env.artifacts.set_stall("/stall/w.pth", after_bytes=100)
    elapsed = _load_expecting_timeout(world, "late_download", url=world.env.weights_url("stall/w.pth"))
    assert elapsed < TIMEOUT_S + SLACK_S, f"the load took {elapsed:.1f} s with sandbox.timeout_s {TIMEOUT_S}"
