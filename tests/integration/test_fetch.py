"""Fetch at a pinned commit from the real git smart-HTTP server (and file://), export, digest, cache."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from securehub.errors import ArchiveUnsafe, HashMismatch, NetworkError, OfflineError
from securehub.fetch.gitfetch import fetch_commit
from securehub.fetch.tree import digest_entries, export_tree, manifest_sha256, tree_sha256
from securehub.pipeline.tree import fetch_tree
from securehub.store.cache import Cache
from tests._servers import Exec, GitServer, RepoFactory, RepoHandle, Symlink, clean_git_env

LIMITS = {"max_files": 1000, "max_bytes": 10_000_000}
FILES = {
    "hubconf.py": "dependencies = []\n",
    "models/net.py": "class Net: ...\n",
    "bin/run.sh": Exec("#!/bin/sh\necho hi\n"),
    "link.py": Symlink("models/net.py"),
    "models/up.py": Symlink("../hubconf.py"),
    "data.bin": bytes(range(256)) * 4,
}


def _digest_from_git_listing(repo: RepoHandle, commit: str) -> str:
    """tree_sha256 computed straight from git's own listing, independently of the exporter."""
    triples = []
    for rec in repo.git("ls-tree", "-r", "-z", "--full-tree", commit).split("\0"):
        if not rec:
            continue
        meta, path = rec.split("\t", 1)
        mode, _kind, oid = meta.split(" ")
        if mode == "160000":
            continue
        content = _blob_bytes(repo, oid)
        triples.append((path.encode(), mode, hashlib.sha256(content).hexdigest()))
    return digest_entries(triples)


def _blob_bytes(repo: RepoHandle, oid: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(repo.path), "cat-file", "blob", oid],
        capture_output=True,
        check=True,
        env=clean_git_env(),
    ).stdout


def _nothing_cached(hub: Path) -> None:
    assert list((hub / "trees").iterdir()) == []
    assert list((hub / "index" / "commits").iterdir()) == []
    assert list((hub / "tmp").iterdir()) == []


def test_fetch_and_export_modes_and_symlinks(repo_factory: RepoFactory, tmp_path: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    gitdir = fetch_commit(repo.url, commit, tmp_path)
    manifest = export_tree(gitdir, commit, tmp_path / "tree", **LIMITS)
    root = tmp_path / "tree"

    assert stat.S_IMODE(os.lstat(root / "hubconf.py").st_mode) == 0o444
    assert stat.S_IMODE(os.lstat(root / "bin" / "run.sh").st_mode) == 0o555
    assert stat.S_IMODE(os.lstat(root / "models").st_mode) == 0o555
    assert stat.S_IMODE(os.lstat(root).st_mode) == 0o555
    assert os.readlink(root / "link.py") == "models/net.py"
    assert os.readlink(root / "models" / "up.py") == "../hubconf.py"
    assert (root / "data.bin").read_bytes() == bytes(range(256)) * 4
    assert not (root / ".git").exists()
    assert sorted(e.path for e in manifest.entries) == sorted(FILES)
    # Three views of the digest agree: the manifest, the disk, and git's own listing.
    assert manifest_sha256(manifest) == tree_sha256(root) == _digest_from_git_listing(repo, commit)


def test_fetch_over_file_url(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    via_http = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    via_file = fetch_tree(Cache(hub_dir), repo.file_url, commit, expected_tree_sha256=None, **LIMITS)
    assert via_file.fetched and via_http.fetched
    assert via_file.tree_sha256 == via_http.tree_sha256
    assert via_file.path == via_http.path  # content-addressed: one copy
    assert len(list((hub_dir / "trees").iterdir())) == 1
    assert len(list((hub_dir / "index" / "commits").iterdir())) == 2


def test_branch_moved_after_pinning_yields_pinned_tree(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": "v = 1\n"})
    pinned = repo.head_commit()
    repo.commit({"hubconf.py": "v = 2  # moved\n", "new.py": "x\n"})
    tree = fetch_tree(Cache(hub_dir), repo.url, pinned, expected_tree_sha256=None, **LIMITS)
    assert (tree.path / "hubconf.py").read_text() == "v = 1\n"
    assert not (tree.path / "new.py").exists()


def test_commit_not_on_server_is_network_error(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": "v = 1\n"})
    with pytest.raises(NetworkError) as info:
        fetch_tree(Cache(hub_dir), repo.url, "1" * 40, expected_tree_sha256=None, **LIMITS)
    assert info.value.code == "network"
    _nothing_cached(hub_dir)


def test_submodule_is_skipped_and_recorded(repo_factory: RepoFactory, tmp_path: Path) -> None:
    repo = repo_factory.make_repo("alice/model")
    commit = repo.commit_raw_tree([("hubconf.py", "100644", "x = 1\n"), ("vendor/lib", "160000", "2" * 40)])
    manifest = export_tree(fetch_commit(repo.url, commit, tmp_path), commit, tmp_path / "t", **LIMITS)
    assert manifest.skipped_submodules == ("vendor/lib",)
    assert [e.path for e in manifest.entries] == ["hubconf.py"]
    assert not (tmp_path / "t" / "vendor").exists()


def test_cache_hit_is_reverified_and_makes_no_request(
    repo_factory: RepoFactory, git_server: GitServer, hub_dir: Path
) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    first = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    git_server.clear_log()
    again = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=first.tree_sha256, **LIMITS)
    assert (again.path, again.tree_sha256, again.fetched) == (first.path, first.tree_sha256, False)
    assert git_server.requests == []
    index = json.loads(next((hub_dir / "index" / "commits").iterdir()).read_text())
    assert index == {"remote": repo.url, "commit": commit, "tree_sha256": first.tree_sha256}


def test_expected_digest_mismatch_caches_nothing(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    with pytest.raises(HashMismatch) as info:
        fetch_tree(Cache(hub_dir), repo.url, repo.head_commit(), expected_tree_sha256="ab" * 32, **LIMITS)
    assert info.value.code == "hash-mismatch"
    assert "ab" * 32 in info.value.message
    _nothing_cached(hub_dir)


def test_tampered_cached_file_is_hash_mismatch(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    tree = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    target = tree.path / "hubconf.py"
    os.chmod(target, 0o644)  # we are root: read-only modes do not stop an attacker with our rights
    target.write_text("import os; os.system('id')\n")
    with pytest.raises(HashMismatch) as info:
        fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=tree.tree_sha256, **LIMITS)
    assert info.value.code == "hash-mismatch"
    assert "tampered" in info.value.message
    # Not silently repaired:
    assert target.read_text() == "import os; os.system('id')\n"
    problems = Cache(hub_dir).verify()
    assert [p.path for p in problems] == [tree.path]
    # force_reload repairs it on purpose.
    fixed = fetch_tree(
        Cache(hub_dir), repo.url, commit, expected_tree_sha256=tree.tree_sha256, force_reload=True, **LIMITS
    )
    assert fixed.fetched and (fixed.path / "hubconf.py").read_text() == FILES["hubconf.py"]
    assert Cache(hub_dir).verify() == []
    assert list((hub_dir / "tmp").iterdir()) == []


def test_extra_file_dropped_into_cached_tree_is_hash_mismatch(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    tree = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    os.chmod(tree.path, 0o755)
    (tree.path / "torchvision.py").write_text("evil = True\n")
    with pytest.raises(HashMismatch):
        fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)


def test_tampered_index_is_hash_mismatch(repo_factory: RepoFactory, hub_dir: Path) -> None:
    good = repo_factory.make_repo("alice/model", {"hubconf.py": "good = 1\n"})
    evil = repo_factory.make_repo("mallory/model", {"hubconf.py": "evil = 1\n"})
    cache = Cache(hub_dir)
    g = fetch_tree(cache, good.url, good.head_commit(), expected_tree_sha256=None, **LIMITS)
    e = fetch_tree(cache, evil.url, evil.head_commit(), expected_tree_sha256=None, **LIMITS)
    index = cache._index_path(good.url, good.head_commit())
    # Point alice's commit at mallory's (valid, cached) tree.
    index.chmod(0o644)
    index.write_text(json.dumps({"remote": good.url, "commit": good.head_commit(), "tree_sha256": e.tree_sha256}))
    with pytest.raises(HashMismatch, match=g.tree_sha256):
        fetch_tree(cache, good.url, good.head_commit(), expected_tree_sha256=g.tree_sha256, **LIMITS)
    # A record for another commit, or garbage, is refused even without an expected digest.
    index.write_text(json.dumps({"remote": good.url, "commit": "3" * 40, "tree_sha256": g.tree_sha256}))
    with pytest.raises(HashMismatch, match="not the record"):
        fetch_tree(cache, good.url, good.head_commit(), expected_tree_sha256=None, **LIMITS)
    index.write_text("{not json")
    with pytest.raises(HashMismatch):
        fetch_tree(cache, good.url, good.head_commit(), expected_tree_sha256=None, **LIMITS)
    assert [p.path for p in cache.verify()] == [index]


def test_offline_cached_works_without_any_git(
    repo_factory: RepoFactory, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    tree = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    monkeypatch.setenv("PATH", "/nonexistent")  # any git call would now fail
    again = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=tree.tree_sha256, **LIMITS)
    assert (again.path, again.fetched) == (tree.path, False)


def test_offline_uncached_is_offline_error_and_contacts_nothing(
    repo_factory: RepoFactory, git_server: GitServer, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    git_server.clear_log()
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        fetch_tree(Cache(hub_dir), repo.url, repo.head_commit(), expected_tree_sha256=None, **LIMITS)
    assert info.value.code == "offline"
    assert git_server.connections == 0
    _nothing_cached(hub_dir)


def test_index_pointing_at_pruned_tree_refetches(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    cache = Cache(hub_dir)
    tree = fetch_tree(cache, repo.url, commit, expected_tree_sha256=None, **LIMITS)
    report = cache.prune(keep=set())
    assert tree.path in report.removed
    assert list((hub_dir / "index" / "commits").iterdir()) == []
    again = fetch_tree(cache, repo.url, commit, expected_tree_sha256=tree.tree_sha256, **LIMITS)
    assert again.fetched and again.path == tree.path
    assert cache.prune(keep={tree.tree_sha256}).removed == ()


def test_partial_tmp_leftover_is_ignored_and_pruned(repo_factory: RepoFactory, hub_dir: Path) -> None:
    """What a fetch SIGKILLed mid-export leaves behind: a half-written tmp dir. Nothing trusts it."""
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    cache = Cache(hub_dir)
    leftover = hub_dir / "tmp" / "w-deadbeef" / "tree"
    leftover.mkdir(parents=True)
    (leftover / "hubconf.py").write_text("half")
    tree = fetch_tree(cache, repo.url, commit, expected_tree_sha256=None, **LIMITS)
    assert (tree.path / "hubconf.py").read_text() == FILES["hubconf.py"]
    assert cache.prune(tmp_older_than_s=3600).removed == ()  # too young to be called stale
    assert cache.prune(tmp_older_than_s=0).removed == (hub_dir / "tmp" / "w-deadbeef",)
    assert list((hub_dir / "tmp").iterdir()) == []


def test_over_limits_is_archive_unsafe(repo_factory: RepoFactory, hub_dir: Path) -> None:
    repo = repo_factory.make_repo("alice/model", FILES)
    with pytest.raises(ArchiveUnsafe):
        fetch_tree(
            Cache(hub_dir), repo.url, repo.head_commit(), expected_tree_sha256=None, max_files=3, max_bytes=10**6
        )
    _nothing_cached(hub_dir)


def test_artifact_store_round_trip_and_tamper(hub_dir: Path) -> None:
    cache = Cache(hub_dir)
    data = b"weights" * 1000
    digest = hashlib.sha256(data).hexdigest()
    assert cache.verified_artifact(digest) is None
    tmp = cache.tmp_dir() / "download-1.part"
    tmp.write_bytes(data)
    final = cache.put_artifact_from_temp(tmp, digest)
    assert final == cache.artifact_path(digest) and final.read_bytes() == data and not tmp.exists()
    assert stat.S_IMODE(final.stat().st_mode) == 0o444
    assert cache.verified_artifact(digest) == final
    bad = cache.tmp_dir() / "download-2.part"
    bad.write_bytes(b"other")
    with pytest.raises(HashMismatch):
        cache.put_artifact_from_temp(bad, "0" * 64)
    assert not bad.exists() and not cache.artifact_path("0" * 64).exists()
    final.chmod(0o644)
    final.write_bytes(b"tampered")
    with pytest.raises(HashMismatch, match="tampered"):
        cache.verified_artifact(digest)
    assert [p.path for p in cache.verify()] == [final]
    assert cache.lock_path("url-" + "a" * 64).parent.is_dir()


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"remote": "' + b"x" * (1 << 20) + b'"}', b"[" + b"0," * 100 + b"0]"],
    ids=["100000-deep", "1-MiB-string", "long-list"],
)
def test_hostile_cache_index_entry_is_hash_mismatch_not_a_crash(
    repo_factory: RepoFactory, hub_dir: Path, body: bytes
) -> None:
    # An index record rewritten by someone with write access to the cache: json.loads recursed on
    # the deep one (RecursionError escaped as an internal error). Refused before it is built,
    # reported by `cache verify`, and the load names the entry and what to do.
    repo = repo_factory.make_repo("alice/model", FILES)
    commit = repo.head_commit()
    first = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    entry = next((hub_dir / "index" / "commits").iterdir())
    entry.write_bytes(body)
    with pytest.raises(HashMismatch) as info:
        fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=first.tree_sha256, **LIMITS)
    assert info.value.code == "hash-mismatch" and "cache verify" in info.value.message
    problems = Cache(hub_dir).verify()
    assert [(p.path, p.found) for p in problems] == [(entry, "unreadable or unbounded JSON")]
