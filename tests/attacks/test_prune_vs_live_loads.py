"""``cache prune`` never deletes a live load's work dir in ``tmp/`` or lock file in ``locks/``; stale ones go.

Issue 13, item 4.

The attack that needed a fix: the working directories a load keeps in ``tmp/`` while the sandbox
runs (``result-*`` for the child's output, ``local-*`` for a local tree's snapshot, ``lock-*`` for
``lock -e``) were plain ``TemporaryDirectory``s. ``prune`` spares a directory only while its owner
holds its ``flock``, so these were deleted once their mtime passed the grace period -- and a
directory's mtime does not move while a file inside it is written: a sandbox run longer than an
hour (``sandbox.timeout_s`` allows a day) lost its output dir, or its *tree*, to a concurrent
prune. Now every such directory comes from ``Cache.temp_dir`` (flock-ed while its owner lives).

End to end: real git server, sandbox and torch; the load runs in a thread (the flock is per open
file, so the same process's prune contends like another process's would) or, for the crash side,
in a subprocess that is SIGKILLed mid-sandbox.

Lock files: ``locks/`` used to grow forever (one flock file per tree, artifact, result and
download ever touched). ``prune`` now removes each one no live process holds -- a non-blocking
``flock`` succeeds -- and never one a live load holds (here: the download lock of a checkpoint
whose request the artifact server holds open).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import securehub
from securehub.store.cache import Cache
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context, publish
from tests._servers import GitServer

pytestmark = [NEEDS_FULL_SANDBOX, pytest.mark.timeout(180)]

HUBCONF = """
import time
from torch import nn


def slow(seconds=6):
    time.sleep(seconds)  # long enough for the test to age the load's tmp dirs and prune beside it
    return nn.Linear(3, 2)


def fetch(url):
    import torch.hub

    model = nn.Linear(3, 2)
    model.load_state_dict(torch.hub.load_state_dict_from_url(url))
    return model
"""

_TWO_HOURS = 2 * 3600


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("prune"), git_server) as env:
        yield env


def _work_dirs(hub: Path) -> list[Path]:
    """The per-load working directories under ``tmp/`` (either level: ``tmp/`` or ``tmp/downloads/``)."""
    tmp = hub / "tmp"
    found = [*tmp.glob("*-*"), *tmp.glob("downloads/*-*")] if tmp.is_dir() else []
    return sorted(p for p in found if p.is_dir() and p.name.split("-")[0] in ("result", "local", "lock", "w"))


def _held(path: Path) -> bool:
    """Whether ``path``'s owner holds its flock (Cache.temp_dir takes it just after the mkdir)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return False


def _age(paths: list[Path]) -> None:
    old = time.time() - _TWO_HOURS
    for p in paths:
        os.utime(p, (old, old), follow_symlinks=False)


def _wait_for(cond: object, alive: object, what: str) -> None:
    deadline = time.monotonic() + 120
    while not cond():  # type: ignore[operator]
        assert alive(), f"the load ended before {what}"  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize("source", ["github", "local"])
def test_prune_during_a_long_load_never_deletes_its_live_work_dirs(env: HubEnv, tmp_path: Path, source: str) -> None:
    if source == "local":
        (tmp_path / "repo").mkdir()
        (tmp_path / "repo" / "hubconf.py").write_text(HUBCONF)
        spec, kw = str(tmp_path / "repo"), {"source": "local"}
    else:
        spec, kw = env.spec(publish(env, "prune-live", {"hubconf.py": HUBCONF})), {}
    outcome: dict[str, object] = {}

    def load() -> None:
        try:
            outcome["model"] = securehub.load(spec, "slow", policy="default", verbose=False, **kw)  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    worker = threading.Thread(target=load)
    worker.start()
    try:
        # The sandbox is running once the load's output dir exists (made just before the child starts).
        # ... and its owner holds the directory's lock: between temp_dir's mkdir and its flock a directory
        # is unprotected, which only the grace period covers (it is seconds old there); the test ages it
        # below, so it must not look before the lock is taken (seen once on a loaded machine).
        _wait_for(
            lambda: any(p.name.startswith("result-") and _held(p) for p in _work_dirs(env.hub)),
            worker.is_alive,
            "a locked result- dir",
        )
        live = [p for p in _work_dirs(env.hub) if _held(p)]
        if source == "local":
            assert any(p.name.startswith("local-") for p in live), live
        _age(live)  # older than any grace period: only the owner's lock can protect them now
        removed = Cache(env.hub).prune(tmp_older_than_s=3600).removed
        assert not set(removed) & set(live), f"prune deleted a live load's work dir: {removed}"
        assert all(p.is_dir() for p in live)
    finally:
        worker.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert isinstance(outcome["model"], nn.Linear)
    assert _work_dirs(env.hub) == []  # the load removed its own work dirs when it ended


_CRASHING_LOAD = """
import sys
import securehub
securehub.load(sys.argv[1], "slow", 120, policy="default", verbose=False)
"""


def test_prune_removes_a_crashed_loads_work_dir_only_after_the_grace_period(env: HubEnv, tmp_path: Path) -> None:
    spec = env.spec(publish(env, "prune-crash", {"hubconf.py": HUBCONF}))
    before = set(_work_dirs(env.hub))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_LOAD, spec],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(
            lambda: any(p.name.startswith("result-") for p in set(_work_dirs(env.hub)) - before),
            lambda: proc.poll() is None,
            "the crashing load's result- dir",
        )
        time.sleep(0.5)  # inside the sandbox call
    finally:
        proc.send_signal(signal.SIGKILL)  # the crash
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    leftovers = sorted(set(_work_dirs(env.hub)) - before)
    assert leftovers, "the crash left no work dir to test prune on"
    cache = Cache(env.hub)
    # Young: could be a live load between mkdir and flock -- kept for the grace period.
    assert not set(cache.prune(tmp_older_than_s=3600).removed) & set(leftovers)
    assert all(p.exists() for p in leftovers)
    _age(leftovers)
    removed = set(cache.prune(tmp_older_than_s=3600).removed)
    assert set(leftovers) <= removed, f"stale leftovers kept: {sorted(set(leftovers) - removed)}"
    assert not any(p.exists() for p in leftovers)


def test_prune_removes_unheld_lock_files_and_never_a_live_loads(env: HubEnv, tmp_path: Path) -> None:
    spec = env.spec(publish(env, "prune-locks", {"hubconf.py": HUBCONF}))
    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "w.pth")
    path = f"prune-locks/w{os.getpid()}x{time.monotonic_ns()}.pth"  # no "-<hex>": not a hash prefix
    url = env.put(path, (tmp_path / "w.pth").read_bytes())
    gate = env.artifacts.set_gate("/" + path)  # the download hangs (its lock held) until the gate opens
    locks = env.hub / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    stale = locks / f"tree-{'0' * 64}.lock"
    stale.touch()  # left by a process that is gone: nobody holds it
    outcome: dict[str, object] = {}

    def load() -> None:
        try:
            outcome["model"] = securehub.load(spec, "fetch", url, policy="default", verbose=False)
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    worker = threading.Thread(target=load)
    worker.start()
    try:
        requested = lambda: any(r.path == "/" + path for r in env.artifacts.requests)  # noqa: E731
        _wait_for(requested, worker.is_alive, "the download request")
        (live,) = locks.glob("dl-url-*.lock")  # the download's lock, held while the request hangs
        inode = live.stat().st_ino
        removed = set(Cache(env.hub).prune().removed_locks)
        assert live not in removed and live.stat().st_ino == inode, "prune removed a live load's lock file"
        assert stale in removed and not stale.exists(), "a stale lock file was kept"
    finally:
        gate.set()
        worker.join(120)
    assert "error" not in outcome, outcome.get("error")
    assert isinstance(outcome["model"], nn.Linear)
    removed = set(Cache(env.hub).prune().removed_locks)
    assert live in removed and not live.exists(), "the finished load's lock file was kept"
    assert [p for p in locks.iterdir() if p.name.startswith("dl-url-")] == []
