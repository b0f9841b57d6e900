"""The order of ``securehub.load``'s steps, with an in-memory sandbox (issue 9: a Runner protocol).

``securehub.pipeline.load.load`` takes a :class:`~securehub.pipeline.sandbox_run.Runner`; here a fake
returns what a real child's validated output looks like (recorded from a real ``nn.Module`` in this
process, the same ``describe`` the child uses), so the pipeline's sequence is tested without a child
process. The real sandbox stays covered by the integration and attack tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import securehub.pipeline.audit_line as audit_line_mod
import securehub.pipeline.load as load_mod
from securehub.audit.log import AuditRecord
from securehub.config.lockfile import Lockfile, RepoEntry
from securehub.errors import SecureHubError
from securehub.pipeline.load import LoadOptions
from securehub.sandbox.config import IsolationReport
from securehub.sandbox.parent.session import SandboxResult
from securehub.sandbox.wire.messages import ExportInfo
from tests._reconstruct_helpers import record
from tests._spies import spy
from tests._tree_simulator import TreeSimulator

ISOLATION = IsolationReport(
    netns=True, userns=True, landlock_abi=3, seccomp=True, no_new_privs=True, rlimits=True, level="full", missing=()
)

#: load.py's step functions, by the number of the step they are (the audit line is step 10).
STEPS = (
    ("load_context", "1 context"),
    ("open_tree", "2 tree"),
    ("output_guard", "3 output guard"),
    ("lookup", "4 result lookup"),
    ("admit_output", "6 admit"),
    ("rebuild_module", "7 rebuild"),
    ("store_admitted", "8 store"),
    ("record_locks", "9 auto-lock"),
)


class Untrusted(nn.Module):
    """A repo-defined class: not under the policy's trusted modules, and no example inputs to export it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


class FakeSandbox:
    """A :class:`~securehub.pipeline.sandbox_run.Runner` that returns ``build()``'s recorded output."""

    def __init__(self, build: Callable[[], nn.Module], events: list[str]) -> None:
        self.build = build
        self.events = events

    def __call__(
        self, op: str, tree: Path | None, entrypoint: str | None, args: Sequence[Any], kwargs: Mapping[str, Any],
        **options: Any,
    ) -> SandboxResult:  # fmt: skip
        self.events.append("5 sandbox")
        assert op == "load" and tree is not None and entrypoint == "net"
        _, config, state = record(self.build, options["out_dir"], seed=0)
        return SandboxResult(state, config, None, None, (), ISOLATION)


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch, hub_dir: Path) -> list[str]:
    """Every step function of load.py, spied: the events list records the order they ran in."""
    events: list[str] = []

    for name, label in STEPS:
        monkeypatch.setattr(load_mod, name, spy(events, label, getattr(load_mod, name)))
    real_append = audit_line_mod.append

    def append(rec: AuditRecord) -> None:
        events.append(f"10 audit {rec.code}")
        real_append(rec)

    monkeypatch.setattr(audit_line_mod, "append", append)
    return events


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local hub repo (its hubconf is never run: the fake sandbox answers), and a hub.lock in the cwd."""
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "repo"
    d.mkdir()
    (d / "hubconf.py").write_text("def net():\n    raise AssertionError('repo code ran in the parent')\n")
    (tmp_path / "hub.lock").write_text('{"version": 1, "repos": {}}\n')
    return d


def _load(repo: Path, events: list[str], build: Callable[[], nn.Module]) -> nn.Module:
    opts = LoadOptions(source="local", policy="default", verbose=False)
    return load_mod.load(str(repo), "net", (), {}, opts, runner=FakeSandbox(build, events))


def test_load_runs_its_steps_in_order(repo: Path, steps: list[str]) -> None:
    model = _load(repo, steps, lambda: nn.Linear(2, 2))
    assert isinstance(model, nn.Linear)
    assert steps == [
        "1 context", "2 tree", "3 output guard", "4 result lookup", "5 sandbox", "6 admit", "7 rebuild",
        "8 store", "9 auto-lock", "10 audit None",
    ]  # fmt: skip


def test_a_refused_rebuild_stores_nothing_and_writes_no_lock(repo: Path, steps: list[str], hub_dir: Path) -> None:
    lock = repo.parent / "hub.lock"
    before = lock.read_bytes()
    with pytest.raises(SecureHubError) as info:
        _load(repo, steps, Untrusted)
    assert info.value.code == "reconstruct-refused"
    # The sequence stops at the rebuild: no store, no auto-lock; the audit line still says why.
    assert steps == [
        "1 context", "2 tree", "3 output guard", "4 result lookup", "5 sandbox", "6 admit", "7 rebuild",
        "10 audit reconstruct-refused",
    ]  # fmt: skip
    assert lock.read_bytes() == before
    results = hub_dir / "results"
    assert not results.exists() or not any(results.iterdir())


# --------------------------------------------------------------------------- git specs, from the in-memory simulator

REMOTE = "https://sim.example/acme/net.git"
SPEC = f"git+{REMOTE}@v1"
HUBCONF = {"hubconf.py": b"def net():\n    raise AssertionError('repo code ran in the parent')\n"}


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TreeSimulator:
    """A simulated remote with tag v1, and an empty hub.lock in the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "hub.lock").write_text('{"version": 1, "repos": {}}\n')
    simulator = TreeSimulator()
    simulator.publish(REMOTE, HUBCONF, tag="v1")
    return simulator


def _lock_sim(sim: TreeSimulator, tmp_path: Path, *, tree_sha256: str | None = None) -> tuple[str, bytes]:
    """Pin SPEC's v1 in ./hub.lock (with the simulator's digest unless ``tree_sha256``); commit and lock bytes."""
    commit = sim.remotes[REMOTE].tags["v1"]
    digest = tree_sha256 or sim.tree_digest(REMOTE, commit, tmp_path / "scratch")
    entry = RepoEntry(remote=REMOTE, ref="v1", ref_type="tag", commit=commit, tree_sha256=digest)
    lock = tmp_path / "hub.lock"
    Lockfile.empty().with_repo(SPEC, entry).save(lock)
    return commit, lock.read_bytes()


def _load_sim(sim: TreeSimulator, events: list[str], policy: str = "default") -> nn.Module:
    opts = LoadOptions(policy=policy, verbose=False)
    return load_mod.load(SPEC, "net", (), {}, opts, runner=FakeSandbox(lambda: nn.Linear(2, 2), events), fetcher=sim)


def test_a_locked_git_load_fetches_only_the_pinned_commit_and_then_reuses_the_cache(
    sim: TreeSimulator, steps: list[str], tmp_path: Path, hub_dir: Path
) -> None:
    commit, _ = _lock_sim(sim, tmp_path)
    assert isinstance(_load_sim(sim, steps), nn.Linear)
    assert len(list((hub_dir / "trees").iterdir())) == 1  # the verified tree, content-addressed
    assert sim.calls == [("fetch", REMOTE, commit)]  # the lock names the commit: nothing is resolved
    assert steps[:5] == ["1 context", "2 tree", "3 output guard", "4 result lookup", "5 sandbox"]
    _load_sim(sim, steps)
    assert sim.calls == [("fetch", REMOTE, commit)]  # the verified cached tree, no second fetch


def test_a_tree_differing_from_the_lock_is_refused_before_the_sandbox_and_caches_nothing(
    sim: TreeSimulator, steps: list[str], tmp_path: Path, hub_dir: Path
) -> None:
    _, before = _lock_sim(sim, tmp_path, tree_sha256="0" * 64)
    with pytest.raises(SecureHubError) as info:
        _load_sim(sim, steps)
    assert info.value.code == "hash-mismatch"
    assert "expected tree_sha256 " + "0" * 64 + " (from hub.lock)" in info.value.message
    assert steps == ["1 context", "2 tree", "10 audit hash-mismatch"]
    assert (tmp_path / "hub.lock").read_bytes() == before
    trees = hub_dir / "trees"
    assert not trees.exists() or not any(trees.iterdir())


def test_an_unlocked_repo_under_a_required_lock_is_refused_before_any_network(
    sim: TreeSimulator, steps: list[str], tmp_path: Path
) -> None:
    before = (tmp_path / "hub.lock").read_bytes()
    with pytest.raises(SecureHubError) as info:
        _load_sim(sim, steps, policy="strict")
    assert info.value.code == "not-locked"
    assert sim.calls == []
    assert steps == ["1 context", "2 tree", "10 audit not-locked"]
    assert (tmp_path / "hub.lock").read_bytes() == before


def test_auto_lock_records_the_commit_the_remote_advertised_and_its_tree_digest(
    sim: TreeSimulator, steps: list[str], tmp_path: Path
) -> None:
    commit = sim.remotes[REMOTE].tags["v1"]
    _load_sim(sim, steps)
    assert sim.calls == [("resolve", REMOTE), ("fetch", REMOTE, commit)]
    entry = Lockfile.load(tmp_path / "hub.lock").repo(SPEC)
    assert entry is not None
    assert (entry.remote, entry.ref, entry.ref_type, entry.commit) == (REMOTE, "v1", "tag", commit)
    assert entry.tree_sha256 == sim.tree_digest(REMOTE, commit, tmp_path / "scratch")
    assert steps[-2:] == ["9 auto-lock", "10 audit None"]


def test_the_verbose_shapes_note_is_for_exported_models_only() -> None:
    """The same note ends the cold and the warm (cached) verbose line; trusted and source models get none."""
    static = ExportInfo(state={}, constants={}, parameters=(), program_json=b"{}", dynamic_batch=False)
    dynamic = ExportInfo(state={}, constants={}, parameters=(), program_json=b"{}", dynamic_batch=True)
    assert load_mod._export_shapes("trusted", dynamic) == ""
    assert load_mod._export_shapes("export", None) == ""
    assert load_mod._export_shapes("export", dynamic).startswith(" (any batch size")
    assert "batch size included" in load_mod._export_shapes("export", static)


def test_the_verbose_shapes_note_names_the_input_dims_that_may_vary() -> None:
    sized = ExportInfo(
        state={}, constants={}, parameters=(), program_json=b"{}", dynamic_batch=True, dynamic_dims=((0, 2, 3), (0,))
    )
    batch_only = ExportInfo(
        state={}, constants={}, parameters=(), program_json=b"{}", dynamic_batch=True, dynamic_dims=((0,), (0,))
    )
    assert load_mod._export_shapes("export", sized) == (
        " (any batch size, and any size of input 0 dims 2, 3; every other input dimension is fixed to the "
        "example inputs)"
    )
    assert load_mod._export_shapes("export", batch_only) == (
        " (any batch size; every other input dimension is fixed to the example inputs)"
    )
