"""A sandbox child started ahead of its call (``securehub/sandbox/parent/prepared.py``), through the real sandbox.

``securehub lock -e`` starts the second run's child while the first run works, so its ``import torch``
overlaps that run. What must hold: the waiting child's wall-clock limit starts with its call (not at
launch), it still has one; it serves exactly one call; one launched for another tree or
configuration is refused; and a child that is never used (the first run failed) is killed and leaves
nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent import prepared as prepared_mod
from securehub.sandbox.parent.prepared import PreparedChild
from securehub.sandbox.parent.session import run_in_sandbox
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context, publish
from tests._sandbox_helpers import make_repo_fixture, no_fetch, out_dir_fixture  # noqa: F401 - fixtures by name
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

SLEEPY = """
    import time
    from torch import nn

    dependencies = ["torch"]


    def quick():
        return nn.Linear(2, 2)


    def slow():
        time.sleep(30)
        return nn.Linear(2, 2)
"""


def _alive(child: PreparedChild) -> bool:
    return child._child is not None and child._child.exit_info() is None


def test_a_held_child_waits_past_its_timeout_then_gets_the_whole_limit_from_its_call(
    make_repo: Callable[[str], Path], out_dir: Path
) -> None:
    tree = make_repo(SLEEPY)
    config = SandboxConfig(timeout_s=3)
    with PreparedChild(tree, config) as ahead:
        time.sleep(4)  # longer than timeout_s: a limit counted from the launch would have killed it
        assert _alive(ahead)
        result = run_in_sandbox(
            "load", tree, "quick", (), {}, config=config, broker=no_fetch, out_dir=out_dir, prepared=ahead
        )
        assert result.state is not None and sorted(result.state.tensors) == ["bias", "weight"]
        assert ahead._child is None  # taken by the call; dead when it returned


def test_a_held_child_still_has_its_limit_once_the_call_is_sent(
    make_repo: Callable[[str], Path], out_dir: Path
) -> None:
    tree = make_repo(SLEEPY)
    config = SandboxConfig(timeout_s=3)
    with PreparedChild(tree, config) as ahead:
        started = time.monotonic()
        with pytest.raises(SecureHubError) as info:
            run_in_sandbox(
                "load", tree, "slow", (), {}, config=config, broker=no_fetch, out_dir=out_dir, prepared=ahead
            )
        assert info.value.code == "sandbox-timeout"
        assert time.monotonic() - started < 20  # killed at its limit, not after the 30 s sleep
    assert list(out_dir.iterdir()) == []


def test_a_prepared_child_serves_one_call_for_its_own_tree_and_configuration_only(
    make_repo: Callable[[str], Path], out_dir: Path
) -> None:
    tree, other = make_repo(SLEEPY), make_repo(SLEEPY)
    config = SandboxConfig(timeout_s=60)
    for wrong in ({"tree": other, "config": config}, {"tree": tree, "config": SandboxConfig(timeout_s=61)}):
        ahead = PreparedChild(tree, config)
        with pytest.raises(ValueError, match="another tree, configuration or entry"):
            run_in_sandbox(
                "list",
                wrong["tree"],
                None,
                (),
                {},
                config=wrong["config"],
                broker=no_fetch,
                out_dir=out_dir,
                prepared=ahead,
            )
        assert ahead._child is None and not ahead.handoff.exists()  # killed and removed, not left running
    ahead = PreparedChild(tree, config)
    run_in_sandbox("list", tree, None, (), {}, config=config, broker=no_fetch, out_dir=out_dir, prepared=ahead)
    with pytest.raises(RuntimeError, match="each serves one call"):
        ahead.take()


def _leftovers(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.name.startswith(("securehub-sandbox-", "securehub-handoff-")))


@pytest.fixture
def env(tmp_path: Path, git_server: GitServer) -> HubEnv:  # type: ignore[misc]
    (tmp_path / "env").mkdir()
    with hub_env_context(tmp_path / "env", git_server) as hub_env:
        yield hub_env


class _Spy:
    """Every PreparedChild built and taken during a test (the real ones: only recorded)."""

    def __init__(self) -> None:
        self.started: list[PreparedChild] = []
        self.taken: list[PreparedChild] = []

    @property
    def held(self) -> list[PreparedChild]:
        return [p for p in self.started if p.held]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    record = _Spy()
    real_init, real_take = PreparedChild.__init__, PreparedChild.take

    def spy_init(self: PreparedChild, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        record.started.append(self)

    def spy_take(self: PreparedChild) -> object:
        record.taken.append(self)
        return real_take(self)

    monkeypatch.setattr(prepared_mod.PreparedChild, "__init__", spy_init)
    monkeypatch.setattr(prepared_mod.PreparedChild, "take", spy_take)
    return record


def test_lock_e_runs_its_second_run_in_the_child_started_ahead(env: HubEnv, tmp_path: Path, spy: _Spy) -> None:
    spec = env.spec(publish(env, "ahead", {"hubconf.py": textwrap.dedent(SLEEPY)}))
    lock = tmp_path / "hub.lock"
    lock_repos([spec], entrypoints=["quick"], policy="default", lock=lock)
    assert len(spy.held) == 1 and spy.held[0] in spy.taken  # the second run used the child started ahead
    assert len(spy.taken) == 2  # two runs: the first launched its own (hold=False), the second the held one
    assert '"quick"' in lock.read_text() and '"outputs"' in lock.read_text()


def test_lock_e_whose_first_run_fails_kills_the_child_started_ahead_and_leaves_nothing(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spy: _Spy
) -> None:
    spec = env.spec(
        publish(
            env,
            "ahead-fails",
            {
                "hubconf.py": (
                    "from torch import nn\n\ndependencies = ['torch']\n\n\n"
                    "def broken():\n    raise RuntimeError('boom')\n"
                )
            },
        )
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    lock = tmp_path / "hub.lock"
    with pytest.raises(SecureHubError) as info:
        lock_repos([spec], entrypoints=["broken"], policy="default", lock=lock)
    assert info.value.code == "entrypoint-error"
    assert len(spy.held) == 1 and spy.held[0] not in spy.taken
    assert spy.held[0]._child is None  # closed, never taken
    assert _leftovers(scratch) == []
    # its process is gone: no process of ours still runs the sandbox bootstrap
    mine = str(os.getpid())
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        assert not (ppid == mine and b"bootstrap.py" in cmdline), f"sandbox child {pid} still running"
