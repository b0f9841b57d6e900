"""Attacks: a ``source="local"`` hubconf reads files the tree digest does not cover (red-team finding 6).

The user's directory holds more than the digest covers: ``.git/config`` with a token in a remote
URL, other ``.git`` entries deeper down. The sandbox may read "the repo tree", so it must be given a
private, read-only snapshot of exactly the digested files -- verified against the digest after
copying and removed afterwards. Symlinks leaving the tree are refused (``archive-unsafe``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.context import load_context
from securehub.pipeline.tree import local_snapshot, verified_tree
from tests._hub_helpers import NEEDS_FULL_SANDBOX

TOKEN = "ghp_" + "L0c4lS0urc3T0k3n" * 2
UNDIGESTED = "undigested-" + "s3cr3t" * 4

HUBCONF = '''
import os

from torch import nn

dependencies = ["torch"]

HERE = os.path.dirname(os.path.abspath(__file__))


def peek():
    """Succeeds only if none of the undigested files can be seen from the child."""
    found = []
    for rel in (".git/config", "vendor/.git", "vendor/.git/secret"):
        try:
            with open(os.path.join(HERE, rel)) as fh:
                found.append(fh.read())
        except OSError:
            pass
    for name in os.listdir(HERE):
        if name == ".git":
            found.append("listdir shows .git: " + ", ".join(os.listdir(os.path.join(HERE, ".git"))))
    if found:
        raise RuntimeError("LEAKED " + " | ".join(found))
    model = nn.Linear(2, 1)
    return model
'''


def _local_repo(root: Path) -> Path:
    repo = root / "myrepo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "config").write_text(
        f'[remote "origin"]\n\turl = https://x-access-token:{TOKEN}@github.com/acme/private.git\n'
    )
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (repo / "vendor").mkdir()
    (repo / "vendor" / ".git").write_text(f"gitdir: ../.git/modules/vendor\n# {UNDIGESTED}\n")
    (repo / "hubconf.py").write_text(HUBCONF)
    (repo / "README.md").write_text("a local repo\n")
    return repo


@pytest.fixture
def repo(hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    return _local_repo(tmp_path)


def _snapshots(hub_dir: Path) -> list[Path]:
    tmp = hub_dir / "tmp"
    return sorted(tmp.glob("local-*")) if tmp.exists() else []


@NEEDS_FULL_SANDBOX
def test_local_source_hubconf_cannot_see_git_config_or_undigested_files(repo: Path, hub_dir: Path) -> None:
    model = securehub.load(str(repo), "peek", source="local", policy="default", verbose=False)
    assert isinstance(model, torch.nn.Linear)
    for value in model.state_dict().values():
        assert TOKEN.encode() not in value.numpy().tobytes()
    assert _snapshots(hub_dir) == []  # the private copy is gone
    assert (repo / ".git" / "config").read_text().count(TOKEN) == 1  # the user's dir is untouched


@NEEDS_FULL_SANDBOX
def test_local_source_leak_attempt_error_carries_no_secret(repo: Path, hub_dir: Path) -> None:
    """Even an entrypoint that fails (after looking) reports nothing of the undigested files."""
    (repo / "hubconf.py").write_text(HUBCONF + "\n\ndef boom():\n    peek()\n    raise ValueError('nothing found')\n")
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(str(repo), "boom", source="local", policy="default", verbose=False)
    assert excinfo.value.code == "entrypoint-error"
    assert "nothing found" in str(excinfo.value)
    assert TOKEN not in str(excinfo.value) and UNDIGESTED not in str(excinfo.value)
    assert _snapshots(hub_dir) == []


@NEEDS_FULL_SANDBOX
def test_local_source_symlink_leaving_the_tree_is_archive_unsafe(repo: Path, hub_dir: Path) -> None:
    (repo / "secret_link").symlink_to(repo / ".git" / "config")
    with pytest.raises(SecureHubError) as excinfo:
        securehub.load(str(repo), "peek", source="local", policy="default", verbose=False)
    assert excinfo.value.code == "archive-unsafe"
    assert TOKEN not in str(excinfo.value)
    assert _snapshots(hub_dir) == []


def test_local_source_changed_after_hashing_is_hash_mismatch(repo: Path, hub_dir: Path) -> None:
    """TOCTOU: the directory changes between hashing and copying; the copy is verified and dropped."""
    ctx = load_context("default", None)
    tree = verified_tree(ctx, str(repo), source="local")
    (repo / "hubconf.py").write_text(HUBCONF + "\nimport os  # swapped after hashing\n")
    with pytest.raises(SecureHubError) as excinfo, local_snapshot(ctx, tree):
        pytest.fail("the snapshot must not be handed out")
    assert excinfo.value.code == "hash-mismatch"
    assert _snapshots(hub_dir) == []


def test_local_source_snapshot_holds_exactly_the_digested_files(repo: Path, hub_dir: Path) -> None:
    ctx = load_context("default", None)
    tree = verified_tree(ctx, str(repo), source="local")
    with local_snapshot(ctx, tree) as snap:
        listed = sorted(
            os.path.relpath(os.path.join(d, f), snap.path) for d, _dirs, files in os.walk(snap.path) for f in files
        )
        assert listed == ["README.md", "hubconf.py"]
        assert not os.access(snap.path, os.W_OK) or os.geteuid() == 0
        assert oct(snap.path.stat().st_mode & 0o777) == oct(0o555)
        assert snap.tree_sha256 == tree.tree_sha256
        assert snap.path != repo
    assert _snapshots(hub_dir) == []


@pytest.mark.parametrize("depth", [300, 3000])
def test_deep_directory_local_source_is_archive_unsafe_not_a_recursion_error(
    repo: Path, hub_dir: Path, depth: int
) -> None:
    """A local directory thousands of levels deep made the recursive tree scan raise RecursionError
    (found by tests/fuzz/test_fuzz_tree.py). It is refused before anything runs or is copied, and
    no directory deeper than the limit is even opened."""
    canary = repo / "canary"
    (repo / "hubconf.py").write_text(f"open({str(canary)!r}, 'w').close()\n" + HUBCONF)
    fd = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    lock = repo.parent / "hub.lock"
    try:
        with pytest.raises(SecureHubError) as excinfo:
            securehub.load(str(repo), "peek", source="local", policy="default", verbose=False)
        assert excinfo.value.code == "archive-unsafe"
        assert "nested deeper than" in str(excinfo.value)
        assert not canary.exists()
        assert not lock.exists()
        assert _snapshots(hub_dir) == []
    finally:
        _unnest(repo / "d")


def _unnest(top: Path) -> None:
    """Flatten the chain so pytest's (recursive) temp-dir cleanup can remove it."""
    moved = 0
    queue = [top]
    while queue:
        current = queue.pop()
        for entry in list(os.scandir(current)):
            moved += 1
            hoisted = top.parent / f".hoisted-{moved}"
            os.rename(entry.path, hoisted)
            queue.append(hoisted)
