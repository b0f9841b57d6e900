"""Red team 7: a cache directory replaced by a symlink to the user's files.

Whoever can write the hub dir (the *cache tamperer* of docs/threat-model.md) replaced ``trees/`` with
a symlink to a directory of the user's: ``securehub cache prune`` then deleted everything in it, as
trees "failing verification" (``tmp/``, ``locks/``, ``artifacts/sha256/``, ``index/commits/`` and
``results/`` likewise), escalating write access to the cache into deleting files anywhere the user
can. Every directory securehub creates in the hub dir must be a real directory: anything else is
refused (``hash-mismatch``, exit 1) before the cache is used, and nothing outside it is touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from securehub.errors import SecureHubError
from securehub.store.cache import Cache

SUBDIRS = [
    "trees", "artifacts", "artifacts/sha256", "index", "index/commits", "tmp", "tmp/downloads", "locks", "results",
]  # fmt: skip


def _victim(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    victim = tmp_path / "victim"
    (victim / "project").mkdir(parents=True)
    files = {"project/notes.txt": b"precious\n", "id_ed25519": b"key", "a" * 64: b"digest-named"}
    for name, data in files.items():
        (victim / name).write_bytes(data)
    old = 1_000_000_000  # 2001: older than any tmp/ grace period
    for p in [victim / "project", *(victim / n for n in files)]:
        os.utime(p, (old, old))
    return victim, files


def _hub(tmp_path: Path, subdir: str, victim: Path) -> Path:
    hub = tmp_path / "hub"
    cache = Cache(hub)
    cache.tmp_dir()  # tmp/downloads exists, as after a download
    (hub / "results").mkdir()
    target = hub / subdir
    shutil.rmtree(target)
    target.symlink_to(victim)
    return hub


def _untouched(victim: Path, files: dict[str, bytes]) -> None:
    assert {n: (victim / n).read_bytes() for n in files} == files
    assert (victim / "project").is_dir()


@pytest.mark.parametrize("subdir", SUBDIRS)
@pytest.mark.parametrize("verb", ["prune", "verify"])
def test_cache_verb_through_a_symlinked_cache_dir_touches_nothing_outside(
    tmp_path: Path, subdir: str, verb: str
) -> None:
    victim, files = _victim(tmp_path)
    hub = _hub(tmp_path, subdir, victim)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    env.update(SECUREHUB_DIR=str(hub), SECUREHUB_AUDIT_LOG=str(tmp_path / "audit.jsonl"))
    r = subprocess.run(
        [sys.executable, "-m", "securehub", "cache", verb], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("error[hash-mismatch]: cache directory "), r.stderr
    assert "found a symlink" in r.stderr
    _untouched(victim, files)
    assert (hub / subdir).is_symlink()  # reported, not "repaired" by following it


@pytest.mark.parametrize("subdir", SUBDIRS)
def test_opening_the_cache_through_a_symlinked_cache_dir_is_refused(tmp_path: Path, subdir: str) -> None:
    victim, files = _victim(tmp_path)
    hub = _hub(tmp_path, subdir, victim)
    with pytest.raises(SecureHubError) as info:
        Cache(hub).prune(tmp_older_than_s=0)
    assert info.value.code == "hash-mismatch"
    _untouched(victim, files)


def test_a_symlinked_hub_dir_itself_is_the_users_choice(tmp_path: Path) -> None:
    real = tmp_path / "big-disk" / "securehub"
    real.mkdir(parents=True)
    link = tmp_path / "hub"
    link.symlink_to(real)
    Cache(link).prune()
    assert (real / "trees").is_dir()
