"""Concurrent processes sharing one hub dir, and a fetch killed mid-export (SPEC section 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

from securehub.pipeline.tree import fetch_tree
from securehub.store.cache import Cache
from tests._servers import RepoFactory

N_PROCESSES = 8
LIMITS = {"max_files": 1000, "max_bytes": 10_000_000}
REPO_ROOT = Path(__file__).resolve().parents[2]

_WORKER = """
import json, sys
from pathlib import Path
from securehub.pipeline.tree import fetch_tree
from securehub.store.cache import Cache
hub, remote, commit = sys.argv[1:4]
t = fetch_tree(Cache(Path(hub)), remote, commit, expected_tree_sha256=None, max_files=1000, max_bytes=10_000_000)
print(json.dumps({"path": str(t.path), "digest": t.tree_sha256, "fetched": t.fetched}))
"""

# Blocks inside the export after the first file is written, so the parent can SIGKILL it there.
_STALLING_WORKER = """
import sys, time
from pathlib import Path
import securehub.fetch.tree as tree_mod
from securehub.pipeline.tree import fetch_tree
from securehub.store.cache import Cache
hub, remote, commit, marker = sys.argv[1:5]
real = tree_mod._write_entry
def stall(writer, reader, b):
    entry = real(writer, reader, b)
    Path(marker).write_text("mid-export")
    time.sleep(600)
    return entry
tree_mod._write_entry = stall
fetch_tree(Cache(Path(hub)), remote, commit, expected_tree_sha256=None, max_files=1000, max_bytes=10_000_000)
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def test_concurrent_processes_share_one_tree(repo_factory: RepoFactory, hub_dir: Path) -> None:
    files = {f"pkg/m{i}.py": f"x = {i}\n" for i in range(200)}
    files["hubconf.py"] = "dependencies = []\n"
    repo = repo_factory.make_repo("alice/model", files)
    commit = repo.head_commit()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(hub_dir), repo.url, commit],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        for _ in range(N_PROCESSES)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err.decode()
        results.append(json.loads(out))

    digests = {r["digest"] for r in results}
    assert len(digests) == 1
    (digest,) = digests
    assert {r["path"] for r in results} == {str(hub_dir / "trees" / digest)}
    assert sum(r["fetched"] for r in results) >= 1
    assert [p.name for p in (hub_dir / "trees").iterdir()] == [digest]
    assert len(list((hub_dir / "index" / "commits").iterdir())) == 1
    assert list((hub_dir / "tmp").iterdir()) == []
    assert Cache(hub_dir).verify() == []


def test_fetch_killed_mid_export_leaves_nothing_trusted(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", {"a.py": "a\n", "b.py": "b\n", "hubconf.py": "x\n"})
    commit = repo.head_commit()
    marker = hub_dir.parent / "marker"
    proc = subprocess.Popen(
        [sys.executable, "-c", _STALLING_WORKER, str(hub_dir), repo.url, commit, str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    try:
        for _ in range(6000):  # wait (bounded) until the child is mid-export
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "worker never started"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    leftovers = list((hub_dir / "tmp").iterdir())
    assert len(leftovers) == 1  # the half-written work dir, and nothing else anywhere
    assert (leftovers[0] / "tree" / "a.py").exists()
    assert list((hub_dir / "trees").iterdir()) == []
    assert list((hub_dir / "index" / "commits").iterdir()) == []

    cache = Cache(hub_dir)
    tree = fetch_tree(cache, repo.url, commit, expected_tree_sha256=None, **LIMITS)
    assert tree.fetched
    assert sorted(p.name for p in tree.path.iterdir()) == ["a.py", "b.py", "hubconf.py"]
    # The dead owner's lock is gone, so the leftover can be pruned; our own tmp use is finished.
    assert cache.prune(tmp_older_than_s=0).removed == (leftovers[0],)
    assert list((hub_dir / "tmp").iterdir()) == []
    assert cache.verify() == []


def test_prune_never_removes_a_live_work_dir(hub_dir: Path) -> None:
    cache = Cache(hub_dir)
    with cache.temp_dir() as work:
        (work / "partial").write_text("in progress")
        assert cache.prune(tmp_older_than_s=0).removed == ()
        assert (work / "partial").exists()
    assert list((hub_dir / "tmp").iterdir()) == []


def test_prune_removes_only_lock_files_nobody_holds(hub_dir: Path) -> None:
    cache = Cache(hub_dir)
    locks = hub_dir / "locks"
    held, stale = locks / "tree-held.lock", locks / "tree-stale.lock"
    stale.touch()
    (locks / "link.lock").symlink_to(stale)  # never a lock (filelock opens with O_NOFOLLOW)
    (locks / "odd-dir").mkdir()  # not a lock file: left alone
    with FileLock(str(held)):  # held through another open file: the flock conflicts like another process's
        report = cache.prune()
        assert report.removed == ()
        assert sorted(p.name for p in report.removed_locks) == ["link.lock", "tree-stale.lock"]
        assert held.is_file()
    assert sorted(p.name for p in locks.iterdir()) == ["odd-dir", "tree-held.lock"]
    assert cache.prune().removed_locks == (held,)
    assert [p.name for p in locks.iterdir()] == ["odd-dir"]
