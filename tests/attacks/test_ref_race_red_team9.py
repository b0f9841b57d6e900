"""Red team 9, git side (leftovers of red team 7): a branch named like a locked tag, created after ``lock``.

hub.lock records the ref *and its type* (``tag``), and every locked load and ``lock --check`` use the
qualified ref (``tags/v1``) and the pinned commit: a branch ``v1`` pushed later (pointing at hostile
code) changes nothing for them -- the pinned commit loads, nothing of the branch runs, and ``lock --check``
reports the shadowing branch as one non-critical ``lock-drift`` (since 2026-12-08: the bare name the lock
was made from is now ambiguous), never as a moved tag. A load without the lock gets ``ref-ambiguous``
(SPEC 3) before anything is fetched or run.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import nn

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import check_lock, lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer, RepoHandle

pytestmark = NEEDS_FULL_SANDBOX

HONEST = (
    "import torch\nfrom torch import nn\ndependencies = ['torch']\n\n"
    "def m():\n    torch.manual_seed(0)\n    return nn.Linear(1, 1)\n"
)
EVIL = "dependencies = ['torch']\n\ndef m():\n    raise RuntimeError('EVIL CODE RAN')\n"


@pytest.fixture(name="env")
def env_fixture(tmp_path: Path, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path, git_server) as env:
        yield env


def _locked_then_branched(env: HubEnv) -> tuple[RepoHandle, str, Path]:
    repo = publish(env, "ref-ambiguous-after-lock", {"hubconf.py": HONEST})
    spec = env.spec(repo)
    lock = env.root / "pinned.lock"
    lock_repos([spec], entrypoints=["m"], policy="strict", lock=lock)
    repo.branch("v1", repo.commit({"hubconf.py": EVIL}, message="evil"))
    assert set(repo.refs()) >= {"refs/heads/v1", "refs/tags/v1"}
    return repo, spec, lock


@pytest.mark.parametrize("policy", ["default", "strict"])
@pytest.mark.parametrize("cache", ["warm", "cold"])
def test_branch_named_like_the_locked_tag_created_after_lock_changes_nothing_locked(
    env: HubEnv, policy: str, cache: str
) -> None:
    _, spec, lock = _locked_then_branched(env)
    if cache == "cold":
        for name in ("trees", "results"):
            shutil.rmtree(env.hub / name, ignore_errors=True)
    pinned = lock.read_bytes()
    (drift,) = check_lock([spec], policy=policy, lock=lock)  # tags/v1 still names the pinned commit
    assert (drift.code, drift.critical) == ("lock-drift", False)
    assert f"{spec}: branch 'v1' now exists next to the locked tag 'v1': loads keep the pinned commit" in drift.message
    model = securehub.load(spec, "m", policy=policy, lock=lock, verbose=False)  # the pinned, honest commit
    assert type(model) is nn.Linear
    assert lock.read_bytes() == pinned


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_branch_named_like_a_tag_is_ref_ambiguous_without_the_lock(env: HubEnv, policy: str) -> None:
    _, spec, _ = _locked_then_branched(env)
    shutil.rmtree(env.hub / "trees", ignore_errors=True)
    before = Snapshot.take(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "m", policy=policy, verbose=False)
    assert exc.value.code == "ref-ambiguous", exc.value.message
    assert "EVIL CODE RAN" not in exc.value.message
    before.assert_unchanged(env.hub)
    assert not (env.root / "hub.lock").exists()


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_tag_moved_between_ls_remote_and_fetch_loads_the_resolved_commit(
    env: HubEnv, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fetch asks for the commit ls-remote resolved, by id, and checks it got exactly that commit:
    # a tag re-pointed in between (at hostile code) is never what runs.
    from securehub.fetch import fetcher

    repo = publish(env, "ref-moves-mid-load", {"hubconf.py": HONEST})
    honest = repo.head_commit()
    real = fetcher.fetch_commit
    moved: list[str] = []

    def move_then_fetch(remote: str, commit: str, workdir: Path) -> Path:
        if not moved:
            moved.append(repo.force_tag("v1", repo.commit({"hubconf.py": EVIL}, message="evil"), annotated=True))
        assert commit == honest
        return real(remote, commit, workdir)

    monkeypatch.setattr(fetcher, "fetch_commit", move_then_fetch)
    model = securehub.load(env.spec(repo), "m", policy=policy, verbose=False)
    assert moved and type(model) is nn.Linear  # the commit resolved first; EVIL would have raised
