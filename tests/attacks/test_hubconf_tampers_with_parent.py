"""A hubconf that goes after the *parent* process: rlimits, signals, scheduling (issue 8, finding 2).

The red team lowered the loading process's RLIMIT_NOFILE, set its RLIMIT_CPU to (1, 1) (which kills
it) and could signal it, because the child shared the parent's uid and PID namespace. The child now
runs in its own PID namespace (the parent has no pid there) as another outside uid, and seccomp
refuses pid-targeted process syscalls on anything but itself. Each test loads a hostile entrypoint
through the real git server and sandbox, hands it the parent's real pid (an attacker can guess pids)
and asserts the exact code and that the parent is untouched: same rlimits, same nice value, alive.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator

import pytest

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = """
import os
import resource
import signal

from torch import nn

dependencies = ["torch"]


def _targets(pid):
    return [pid, os.getppid(), 1]


def report_parent():
    # getppid() inside the namespace is securehub's own init (1) or 0, never the parent.
    raise ValueError("ppid=%d pid=%d uid=%d" % (os.getppid(), os.getpid(), os.getuid()))


def lower_parent_nofile(pid=0):
    for target in _targets(pid):
        resource.prlimit(target, resource.RLIMIT_NOFILE, (16, 16))
    return nn.Linear(1, 1)


def kill_parent_with_cpu_limit(pid=0):
    for target in _targets(pid):
        resource.prlimit(target, resource.RLIMIT_CPU, (1, 1))
    return nn.Linear(1, 1)


def signal_parent(pid=0):
    for target in _targets(pid):
        os.kill(target, signal.SIGSTOP)
    return nn.Linear(1, 1)


def renice_parent(pid=0):
    for target in _targets(pid):
        os.setpriority(os.PRIO_PROCESS, target, 19)
    return nn.Linear(1, 1)


def pin_parent_cpu(pid=0):
    for target in _targets(pid):
        os.sched_setaffinity(target, {0})
    return nn.Linear(1, 1)
"""


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.lock = env.root / "hub.lock"
        self.spec = env.spec(publish(env, "parent-tamper", {"hubconf.py": HUBCONF}))
        lock_repos([self.spec], policy="strict", lock=self.lock)

    def expect_refused(self, entrypoint: str, code: str) -> str:
        """Run ``entrypoint`` against this process; assert ``code`` and that the parent is untouched."""
        limits = {r: resource.getrlimit(r) for r in (resource.RLIMIT_NOFILE, resource.RLIMIT_CPU)}
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        affinity = os.sched_getaffinity(0)
        before = Snapshot.take(self.env.hub, self.lock)
        with pytest.raises(SecureHubError) as excinfo:
            securehub.load(self.spec, entrypoint, pid=os.getpid(), policy="default", lock=self.lock, verbose=False)
        assert {r: resource.getrlimit(r) for r in limits} == limits
        assert os.getpriority(os.PRIO_PROCESS, 0) == nice
        assert os.sched_getaffinity(0) == affinity
        before.assert_unchanged(self.env.hub, self.lock)
        assert excinfo.value.code == code, str(excinfo.value)
        return str(excinfo.value)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("parent-tamper"), git_server) as env:
        yield World(env)


def test_child_cannot_see_the_parent_pid_or_uid(world: World) -> None:
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(world.spec, "report_parent", policy="default", lock=world.lock, verbose=False)
    msg = str(excinfo.value)
    assert excinfo.value.code == "entrypoint-error", msg
    assert f"ppid={os.getpid()}" not in msg
    assert f"pid={os.getpid()} " not in msg


@pytest.mark.parametrize(
    ("entrypoint", "named"),
    [("lower_parent_nofile", "prlimit"), ("kill_parent_with_cpu_limit", "prlimit"), ("signal_parent", "kill")],
)
def test_hubconf_cannot_change_or_kill_the_parent_named_as_violation(world: World, entrypoint: str, named: str) -> None:
    """Attempts the child's audit hook sees are named: ``prlimit <pid>`` / ``kill <pid>``."""
    msg = world.expect_refused(entrypoint, "sandbox-violation")
    assert f"{named} {os.getpid()}" in msg, msg
    assert "Operation not permitted" in msg, msg


@pytest.mark.parametrize("entrypoint", ["renice_parent", "pin_parent_cpu"])
def test_hubconf_cannot_reschedule_the_parent(world: World, entrypoint: str) -> None:
    """No audit event exists for these; seccomp's EPERM surfaces as the entrypoint's own error."""
    msg = world.expect_refused(entrypoint, "entrypoint-error")
    assert "PermissionError" in msg and "Operation not permitted" in msg, msg
