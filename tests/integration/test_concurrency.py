"""Concurrent loads end to end (SPEC section 5: "N processes loading the same repo at once MUST all
succeed and leave one consistent copy"), and `securehub lock` running beside loads.

Real git server, real artifact server, real sandbox, real torch. Each test starts from a cold hub
dir and checks afterwards: every load succeeded with the same weights; exactly one tree, one blob
and one result entry; the artifact was downloaded once (server request log); hub.lock parsed after
every writer and at the end (never torn, nothing lost); one valid JSON audit line per operation;
nothing left in the cache's tmp/; ``Cache.verify()`` finds nothing wrong.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import securehub
from securehub.config.lockfile import Lockfile
from securehub.store.cache import Cache
from tests._cold_runs import ColdRun, cold_run, linear_checkpoint, locked_template
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context, publish
from tests._servers import GitServer

pytestmark = [NEEDS_FULL_SANDBOX, pytest.mark.timeout(240)]

N = 8

_HUBCONF = """dependencies = ["torch"]
import torch
from torch import nn


def model():
    m = nn.Linear(4, 2)
    m.load_state_dict(torch.hub.load_state_dict_from_url("@URL@", progress=False))
    return m


def gated():
    # Fetches a second checkpoint the test server holds back: the test decides when this run ends.
    m = model()
    torch.hub.load_state_dict_from_url("@GATE@", progress=False)
    return m
"""

_LOAD_WORKER = textwrap.dedent(
    """
    import json, sys
    import securehub
    spec, lock = sys.argv[1:3]
    m = securehub.load(spec, "model", lock=lock, policy="default", verbose=False)
    print(json.dumps({"weight": m.weight.tolist(), "bias": m.bias.tolist()}))
    """
)


@dataclass(frozen=True)
class Published:
    spec: str
    weights_path: str
    weight: list[list[float]]


def _publish_model(env: HubEnv, stem: str, seed: int, gate_url: str = "") -> Published:
    url, path, weight = linear_checkpoint(env, stem, seed)
    repo = publish(env, stem, {"hubconf.py": _HUBCONF.replace("@URL@", url).replace("@GATE@", gate_url)})
    return Published(env.spec(repo), path, weight)


@dataclass(frozen=True)
class World:
    env: HubEnv
    locked: Published  # pinned in `lock_template` with -e model (so its result is cacheable)
    lock_template: bytes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    with hub_env_context(tmp_path_factory.mktemp("concurrency"), git_server) as env:
        locked = _publish_model(env, "conc-locked", seed=1)
        yield World(env, locked, locked_template(env, [locked.spec], ["model"]))


@pytest.fixture
def run(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ColdRun:
    run = cold_run(tmp_path, monkeypatch, world.lock_template)
    world.env.clear_logs()
    return run


class LockWatcher:
    """Parses hub.lock every time its bytes change while writers run: a torn write would fail here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: list[bytes] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        last = b""
        while not self._stop.wait(0.005):
            data = self.path.read_bytes()
            if data != last:
                last = data
                self.seen.append(data)
                try:
                    Lockfile.parse(data)
                except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def __enter__(self) -> LockWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _spawn_load(run: ColdRun, spec: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _LOAD_WORKER, spec, str(run.lock)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run.env,
    )


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=200)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _audit_lines(run: ColdRun) -> list[dict[str, Any]]:
    lines = run.audit.read_text().splitlines()
    return [json.loads(line) for line in lines]  # every line must be one complete JSON document


def _assert_one_consistent_copy(run: ColdRun, *, results: int = 1) -> None:
    assert len(list((run.hub / "trees").iterdir())) == 1
    assert len(list((run.hub / "artifacts" / "sha256").iterdir())) == 1
    assert len(list((run.hub / "results").iterdir())) == results
    assert _tmp_files(run) == []
    assert Cache(run.hub).verify() == []


def _tmp_files(run: ColdRun) -> list[Path]:
    """Files (and work dirs) left in the cache's tmp/; its empty ``downloads/`` dir is the store's own."""
    return [p for p in (run.hub / "tmp").rglob("*") if not (p.is_dir() and not any(p.iterdir()))]


def test_concurrency_8_processes_cold_load_one_copy_one_download(world: World, run: ColdRun) -> None:
    with LockWatcher(run.lock) as watcher:
        procs = [_spawn_load(run, world.locked.spec) for _ in range(N)]
        outputs = [_finish(p) for p in procs]
    assert watcher.errors == []
    assert {json.dumps(o["weight"]) for o in outputs} == {json.dumps(world.locked.weight)}
    _assert_one_consistent_copy(run)
    assert len(world.env.artifacts.requests_for(world.locked.weights_path)) == 1
    assert run.lock.read_bytes() == world.lock_template  # a locked load records nothing
    records = _audit_lines(run)
    assert [(r["action"], r["outcome"]) for r in records] == [("load", "ok")] * N


def test_concurrency_8_threads_cold_load_one_copy_one_download(world: World, run: ColdRun) -> None:
    def load(_: int) -> list[list[float]]:
        m = securehub.load(world.locked.spec, "model", lock=str(run.lock), policy="default", verbose=False)
        weight: list[list[float]] = m.weight.tolist()
        return weight

    with LockWatcher(run.lock) as watcher, ThreadPoolExecutor(max_workers=N) as pool:
        weights = list(pool.map(load, range(N)))
    assert watcher.errors == []
    assert all(w == world.locked.weight for w in weights)
    _assert_one_consistent_copy(run)
    assert len(world.env.artifacts.requests_for(world.locked.weights_path)) == 1
    assert run.lock.read_bytes() == world.lock_template
    records = _audit_lines(run)
    assert [(r["action"], r["outcome"]) for r in records] == [("load", "ok")] * N


def test_concurrency_securehub_lock_beside_recording_loads_loses_nothing(world: World, run: ColdRun) -> None:
    """`securehub lock NEW -e model` and loads that auto-record another repo write the same hub.lock.

    Both are read-modify-write. The lock's entrypoint run is held (its second checkpoint is gated on
    the server) until the loads have recorded their repo, so `lock` read hub.lock before they wrote
    and writes after them: without merging under the same cross-process lock, it would drop their
    entries (a lost update). Parsed after every write, and everything must be there.
    """
    gate_url, gate_path, _ = linear_checkpoint(world.env, "conc-gate", seed=4)
    gate = world.env.artifacts.set_gate(gate_path)
    new = _publish_model(world.env, "conc-new", seed=2, gate_url=gate_url)
    auto = _publish_model(world.env, "conc-auto", seed=3)
    with LockWatcher(run.lock) as watcher:
        locker = subprocess.Popen(
            [sys.executable, "-m", "securehub", "lock", new.spec, "-e", "gated", "--lock", str(run.lock)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=run.env,
        )
        try:
            for _ in range(12000):  # bounded wait until the lock run is inside the sandbox, held
                if world.env.artifacts.requests_for(gate_path) or locker.poll() is not None:
                    break
                threading.Event().wait(0.01)
            assert world.env.artifacts.requests_for(gate_path), "the lock run never reached the gate"
            loads = [_spawn_load(run, auto.spec) for _ in range(3)]
            outputs = [_finish(p) for p in loads]
        finally:
            gate.set()
        _, err = locker.communicate(timeout=200)
        assert locker.returncode == 0, err
    assert watcher.errors == []
    assert all(o["weight"] == auto.weight for o in outputs)
    final = Lockfile.parse(run.lock.read_bytes())
    assert set(final.repos) == {world.locked.spec, new.spec, auto.spec}
    assert "gated" in final.repos[new.spec].entrypoints
    assert len(final.artifacts) == 4
    for data in watcher.seen:  # every state a reader could see kept the pre-existing entry
        assert world.locked.spec in Lockfile.parse(data).repos
    assert _tmp_files(run) == []
    assert Cache(run.hub).verify() == []
    records = _audit_lines(run)
    assert [r["outcome"] for r in records] == ["ok"] * len(records)
    assert sum(r["action"] == "load" for r in records) == 3
