"""Hostile checkpoints fetched by a hubconf through ``torch.hub.load_state_dict_from_url`` (SPEC sections 4, 6, 8).

End to end: the hubconf runs in the real sandbox, asks the parent's broker for the checkpoint, and
the parent's static scan refuses it before the child gets a path. Each case asserts
``unsafe-pickle``, that the payload's ``touch <canary>`` never ran, and that hub.lock is unchanged;
``securehub lock -e`` of such an entrypoint records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._pickle_fixtures import (
    ZipSpec,
    build_setattr,
    computed_stack_global,
    memo_confusion,
    reduce_call,
    torch_members,
    torch_zip_bytes,
    write_zip,
)
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = """
import torch
from torch import nn

dependencies = ["torch"]


def load_ckpt(url):
    model = nn.Linear(1, 1)
    model.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False))
    return model
"""


def _zip_with_payload(cmd: str) -> bytes:
    """A real torch.save zip whose data.pkl is replaced by a ``posix.system`` payload."""
    members = torch_members(torch_zip_bytes({"weight": torch.zeros(1, 1), "bias": torch.zeros(1)}))
    for member in members:
        if member.name.endswith("data.pkl"):
            member.data = reduce_call("posix", "system", cmd)
    return write_zip(ZipSpec(members))


PAYLOADS: dict[str, Callable[[str], bytes]] = {
    "reduce_os_system": lambda cmd: reduce_call("os", "system", cmd),
    "torch_zip_data_pkl_payload": _zip_with_payload,
    "memo_confusion_stack_global": memo_confusion,
    "computed_stack_global_operand": computed_stack_global,
    "build_setstate_setattr": build_setattr,
}


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.repo = publish(env, "ckpt", {"hubconf.py": HUBCONF})
        self.spec = env.spec(self.repo)
        self.lock = env.root / "hub.lock"
        lock_repos([self.spec], policy="strict", lock=self.lock)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("ckpt"), git_server) as env:
        yield World(env)


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_hostile_checkpoint_fetched_by_hubconf_is_unsafe_pickle(world: World, name: str) -> None:
    canary = world.env.root / f"canary-{name}"
    for suffix in (".pth", ".safetensors"):  # the format comes from the content, never the name
        url = world.env.put(f"ckpt/{name}{suffix}", PAYLOADS[name](f"touch {canary}"))
        before = Snapshot.take(world.env.hub, world.lock)

        with pytest.raises(SecureHubError) as excinfo:
            securehub.load(world.spec, "load_ckpt", url, policy="default", lock=world.lock, verbose=False)

        assert excinfo.value.code == "unsafe-pickle", str(excinfo.value)
        assert not canary.exists()
        assert Snapshot.take(world.env.hub, world.lock).lock == before.lock
        assert Snapshot.take(world.env.hub).trees == before.trees


def test_locking_an_entrypoint_that_fetches_a_hostile_checkpoint_records_nothing(world: World) -> None:
    canary = world.env.root / "canary-lock"
    url = world.env.put("ckpt/lock-evil.pth", reduce_call("os", "system", f"touch {canary}"))
    before = world.lock.read_bytes()

    with pytest.raises(SecureHubError) as excinfo:
        lock_repos([world.spec], entrypoints=["load_ckpt"], args={"url": url}, policy="strict", lock=world.lock)

    assert excinfo.value.code == "unsafe-pickle"
    assert not canary.exists()
    assert world.lock.read_bytes() == before
