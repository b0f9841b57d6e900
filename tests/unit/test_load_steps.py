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
from securehub.errors import SecureHubError
from securehub.pipeline.load import LoadOptions
from securehub.sandbox.config import IsolationReport
from securehub.sandbox.session import SandboxResult
from tests._reconstruct_helpers import record
from tests._spies import spy

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
