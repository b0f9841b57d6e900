"""Crash safety end to end: the loading process is SIGKILLed at chosen points (SPEC section 5: "a
process killed mid-download leaves nothing that a later load trusts"; section 2: hub.lock is never
half-written).

No hooks in product code. The points are reached from outside: the artifact server stalls mid-body
(mid-download), a hubconf that sleeps (mid-sandbox); or by a test-only bootstrap (``_WORKER``) that
wraps one named product function in the loader subprocess and SIGKILLs its own process when it is
entered (mid-result-store) or right after it returns (hub.lock renamed into place), or writes half
of the new hub.lock into the temp file and dies (mid-lock-write). After each kill: the next run
succeeds; ``Cache.verify()`` finds nothing (or the entry is absent); hub.lock is the old bytes or
the new bytes; nothing is left in the cache's tmp/ after a prune. (A tree fetch killed mid-export is
covered in test_cache_concurrency.py.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import securehub
from securehub.config.lockfile import Lockfile
from securehub.errors import SecureHubError
from securehub.store.cache import Cache
from tests._cold_runs import ColdRun, cold_run, linear_checkpoint, locked_template
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context, publish
from tests._servers import GitServer

pytestmark = [NEEDS_FULL_SANDBOX, pytest.mark.timeout(180)]


_HUBCONF = """dependencies = ["torch"]
import os
import torch
from torch import nn


def model():
    m = nn.Linear(4, 2)
    m.load_state_dict(torch.hub.load_state_dict_from_url("@URL@", progress=False))
    return m


def held():
    # Asks the parent for a checkpoint the test's server holds back: the child waits inside the sandbox.
    torch.hub.load_state_dict_from_url("@GATE@", progress=False)
    return model()


def self_kill():
    os.kill(os.getpid(), 9)
    return model()
"""

# The loader, run as a subprocess. argv: point action spec lock [entrypoint] [json kwargs].
_WORKER = textwrap.dedent(
    """
    import io, json, os, pathlib, signal, sys
    point, action, spec, lock = sys.argv[1:5]
    entrypoint = sys.argv[5] if len(sys.argv) > 5 else "model"
    kwargs = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "result-store":  # every file of the entry written in tmp/, not yet moved to results/
        from securehub.store.cache import Cache
        Cache.install_result = lambda *a, **k: die()
    elif point == "lock-half":  # half of the new hub.lock in the temp file beside it, then death
        import securehub._util.atomic as atomic
        real = atomic.replace_file
        def half(target, write, *, mode=None):
            buf = io.BytesIO()
            write(buf)
            data = buf.getvalue()
            def partial(fh):
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
                die()
            return real(target, partial, mode=mode)
        atomic.replace_file = half
    elif point == "lock-renamed":  # the new hub.lock renamed into place, before the directory fsync
        real_replace = pathlib.Path.replace
        def replace(self, target):
            out = real_replace(self, target)
            if pathlib.Path(target).name == "hub.lock":
                die()
            return out
        pathlib.Path.replace = replace
    elif point != "none":
        raise SystemExit("unknown point " + point)

    import securehub
    if action == "load":
        m = securehub.load(spec, entrypoint, lock=lock, policy="default", verbose=False, **kwargs)
        print(json.dumps({"weight": m.weight.tolist()}))
    else:
        from securehub.pipeline.lock import lock_repos
        lock_repos([spec], entrypoints=[entrypoint], lock=lock, policy="default")
        print(json.dumps({"locked": spec}))
    """
)


@dataclass(frozen=True)
class World:
    env: HubEnv
    spec: str  # locked with -e model in `template` (its result is cacheable)
    other: str  # not in `template`: what the lock-write tests lock
    weights_path: str
    gate_path: str
    weight: list[list[float]]
    template: bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("crash"), git_server) as env:
        url, path, weight = linear_checkpoint(env, "crash", seed=7)
        gate_url, gate_path, _ = linear_checkpoint(env, "crash-gate", seed=7)
        hubconf = _HUBCONF.replace("@URL@", url).replace("@GATE@", gate_url)
        repo = publish(env, "crash", {"hubconf.py": hubconf})
        other = publish(env, "crash-other", {"hubconf.py": hubconf})
        template = locked_template(env, [env.spec(repo)], ["model"])
        yield World(env, env.spec(repo), env.spec(other), path, gate_path, weight, template)


@pytest.fixture
def run(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ColdRun:
    run = cold_run(tmp_path, monkeypatch, world.template)
    world.env.clear_logs()
    world.env.put(world.weights_path, world.env.artifacts._files[world.weights_path])  # no stall left over
    return run


def _worker(run: ColdRun, point: str, action: str, spec: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, point, action, spec, str(run.lock), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run.env,
    )


def _killed(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=150)
    assert proc.returncode == -signal.SIGKILL, err


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Bounded wait (the pytest-timeout marker is the real bound) until ``cond()`` or the worker exits."""
    tick = threading.Event()
    while not cond():
        assert proc.poll() is None, proc.communicate()[1]
        tick.wait(0.02)


def _next_load_succeeds(world: World, run: ColdRun) -> None:
    m = securehub.load(world.spec, "model", lock=str(run.lock), policy="default", verbose=False)
    assert m.weight.tolist() == world.weight


def _pruned_clean(run: ColdRun) -> None:
    cache = Cache(run.hub)
    cache.prune(tmp_older_than_s=0)
    left = [p for p in (run.hub / "tmp").rglob("*") if not (p.is_dir() and not any(p.iterdir()))]
    assert left == []
    assert cache.verify() == []


def _trusted_entries(run: ColdRun) -> list[Path]:
    return [
        p
        for sub in ("trees", "artifacts/sha256", "results")
        if (run.hub / sub).is_dir()
        for p in (run.hub / sub).iterdir()
    ]


def test_crash_mid_download_leaves_nothing_trusted(world: World, run: ColdRun) -> None:
    world.env.artifacts.set_stall(world.weights_path, after_bytes=200)
    proc = _worker(run, "none", "load", world.spec)
    try:
        downloads = run.hub / "tmp" / "downloads"
        _wait_for(lambda: downloads.is_dir() and any(downloads.glob("*.part")), proc)
        proc.kill()
    finally:
        proc.kill()
    _killed(proc)
    assert list((run.hub / "artifacts" / "sha256").iterdir()) == []
    assert not (run.hub / "results").exists() or list((run.hub / "results").iterdir()) == []
    assert Cache(run.hub).verify() == []
    assert run.lock.read_bytes() == world.template
    world.env.put(world.weights_path, world.env.artifacts._files[world.weights_path])
    _next_load_succeeds(world, run)
    _pruned_clean(run)


def test_crash_mid_sandbox_kills_the_child_and_leaves_nothing(world: World, run: ColdRun) -> None:
    gate = world.env.artifacts.set_gate(world.gate_path)
    proc = _worker(run, "none", "load", world.spec, "held")
    try:
        _wait_for(lambda: bool(world.env.artifacts.requests_for(world.gate_path)), proc)
        sandbox = _descendants(proc.pid)
        assert sandbox, "the loader has no child processes while its sandbox waits"
        proc.kill()
    finally:
        proc.kill()
        gate.set()
    _killed(proc)
    # The sandbox dies with its parent (parent-death signal): no orphan keeps running repo code.
    for pid in sandbox:
        _wait_for_gone(pid)
    assert not (run.hub / "results").exists() or list((run.hub / "results").iterdir()) == []
    assert Cache(run.hub).verify() == []
    assert run.lock.read_bytes() == world.template
    _next_load_succeeds(world, run)
    _pruned_clean(run)


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (walking /proc parent links)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        current = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == current]
        found += kids
        frontier += kids
    return found


def _wait_for_gone(pid: int) -> None:
    tick = threading.Event()
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in ("Z", "X"):
            return
        tick.wait(0.02)


def test_crash_mid_result_store_leaves_no_result_and_the_next_load_stores_one(world: World, run: ColdRun) -> None:
    proc = _worker(run, "result-store", "load", world.spec)
    _killed(proc)
    assert not (run.hub / "results").exists() or list((run.hub / "results").iterdir()) == []
    leftovers = [p for p in (run.hub / "tmp").iterdir() if p.name != "downloads"]
    assert leftovers, "the kill should have left the half-stored work dir in tmp/"
    assert Cache(run.hub).verify() == []
    assert run.lock.read_bytes() == world.template
    _next_load_succeeds(world, run)
    assert len(list((run.hub / "results").iterdir())) == 1
    _pruned_clean(run)
    assert len(list((run.hub / "results").iterdir())) == 1  # the sound entry survives the prune


def test_crash_mid_lock_write_leaves_the_old_hub_lock(world: World, run: ColdRun) -> None:
    proc = _worker(run, "lock-half", "lock", world.other)
    _killed(proc)
    assert run.lock.read_bytes() == world.template  # never half
    # The torn temp file is beside hub.lock, under a dot name nothing reads (see the report).
    assert len(list(run.lock.parent.glob(".hub.lock.*.tmp"))) == 1
    done = _worker(run, "none", "lock", world.other)
    out, err = done.communicate(timeout=150)
    assert done.returncode == 0, err
    final = Lockfile.parse(run.lock.read_bytes())
    assert set(final.repos) == {world.spec, world.other}
    _pruned_clean(run)


def test_crash_right_after_lock_rename_leaves_the_new_hub_lock(world: World, run: ColdRun) -> None:
    proc = _worker(run, "lock-renamed", "lock", world.other)
    _killed(proc)
    final = Lockfile.parse(run.lock.read_bytes())  # the complete new file
    assert set(final.repos) == {world.spec, world.other}
    assert list(run.lock.parent.glob(".hub.lock.*.tmp")) == []
    _next_load_succeeds(world, run)
    _pruned_clean(run)


def test_sandbox_child_killed_by_sigkill_fails_cleanly(world: World, run: ColdRun) -> None:
    """A hubconf that SIGKILLs itself: a clean sandbox error, never a hang, nothing stored or locked."""
    with pytest.raises(SecureHubError) as exc:
        securehub.load(world.spec, "self_kill", lock=str(run.lock), policy="default", verbose=False)
    assert exc.value.code in ("sandbox-resource", "sandbox-violation"), exc.value
    assert "SIGKILL" in str(exc.value) or "signal" in str(exc.value)
    assert run.lock.read_bytes() == world.template
    assert not (run.hub / "results").exists() or list((run.hub / "results").iterdir()) == []
