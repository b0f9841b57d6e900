"""Hostile repository trees, served by the real git server. Each is refused with archive-unsafe
and leaves nothing in the cache (no tree, no index entry, no tmp leftovers), nothing outside it.

Trees are written byte for byte (``commit_raw_tree``), so they hold what a worktree never could.
Names git refuses to even read back (a leading ``/``, NUL) are covered by the path-checker unit
tests in tests/unit/test_tree_digest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import securehub.fetch.tree as tree_mod
from securehub.errors import ArchiveUnsafe
from securehub.pipeline.tree import fetch_tree
from securehub.store.cache import Cache
from tests._servers import RepoFactory

LIMITS = {"max_files": 100, "max_bytes": 1_000_000}
OK = ("hubconf.py", "100644", "dependencies = []\n")


def _assert_refused(
    repo_factory: RepoFactory,
    hub_dir: Path,
    entries: list[tuple[str, str, str | bytes]],
    why: str,
    **limits: int,
) -> None:
    repo = repo_factory.make_repo("mallory/model")
    commit = repo.commit_raw_tree([OK, *entries])
    with pytest.raises(ArchiveUnsafe) as info:
        fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **{**LIMITS, **limits})
    assert info.value.code == "archive-unsafe"
    assert why in info.value.message
    assert list((hub_dir / "trees").iterdir()) == []
    assert list((hub_dir / "index" / "commits").iterdir()) == []
    assert list((hub_dir / "tmp").iterdir()) == []


def test_symlink_escaping_tree_to_etc_passwd(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("models/passwd", "120000", "../../etc/passwd")], "leaves the tree")


def test_symlink_with_absolute_target(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("passwd", "120000", "/etc/passwd")], "absolute")


def test_symlink_chain_escaping_through_in_tree_link(repo_factory: RepoFactory, hub_dir: Path) -> None:
    # a/up -> ".." is the tree root; "a/up/../../etc" is lexically inside but really outside.
    _assert_refused(
        repo_factory,
        hub_dir,
        [("a/up", "120000", ".."), ("esc", "120000", "a/up/../../etc/passwd")],
        "outside the tree",
    )


def test_symlink_then_write_through_it(repo_factory: RepoFactory, hub_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    _assert_refused(
        repo_factory,
        hub_dir,
        [("x", "120000", str(outside)), ("x/pwned.py", "100644", "evil\n")],
        "both a file",
    )
    assert list(outside.iterdir()) == []


def test_symlink_then_write_through_in_tree_link(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(
        repo_factory,
        hub_dir,
        [("d/keep.py", "100644", ""), ("x", "120000", "d"), ("x/hubconf.py", "100644", "evil\n")],
        "both a file",
    )


def test_dotdot_path_component(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("../evil.py", "100644", "evil\n")], "'..'")


def test_dot_path_component(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("./evil.py", "100644", "evil\n")], "'.'")


@pytest.mark.parametrize(
    "name", [".git/hooks/post-checkout", ".GIT/config", "sub/.git/config", ".git./config", "GIT~1/config"]
)
def test_dotgit_component(repo_factory: RepoFactory, hub_dir: Path, name: str) -> None:
    _assert_refused(repo_factory, hub_dir, [(name, "100755", "#!/bin/sh\nid\n")], ".git")


def test_backslash_in_name(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("..\\evil.py", "100644", "evil\n")], "backslash")


def test_control_character_in_name(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("evil\x1b[2J.py", "100644", "evil\n")], "control")


def test_non_utf8_name(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("evil\udcff.py", "100644", "evil\n")], "UTF-8")


def test_case_collision(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(repo_factory, hub_dir, [("A.py", "100644", "a\n"), ("a.py", "100644", "b\n")], "collides")


def test_unicode_normalisation_collision(repo_factory: RepoFactory, hub_dir: Path) -> None:
    _assert_refused(
        repo_factory, hub_dir, [("\u00e9.py", "100644", "a\n"), ("e\u0301.py", "100644", "b\n")], "collides"
    )


def test_file_count_bomb(repo_factory: RepoFactory, hub_dir: Path) -> None:
    bomb = [(f"f{i}.py", "100644", "") for i in range(20)]
    _assert_refused(repo_factory, hub_dir, bomb, "more than the limit of 10 files", max_files=10)


def test_size_bomb_checked_before_writing(
    repo_factory: RepoFactory, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[object] = []
    real_init = tree_mod._TreeWriter.__init__

    def spy(self: tree_mod._TreeWriter, dest: Path) -> None:
        writers.append(dest)
        real_init(self, dest)

    monkeypatch.setattr(tree_mod._TreeWriter, "__init__", spy)
    _assert_refused(
        repo_factory,
        hub_dir,
        [("weights.bin", "100644", b"\0" * 200_000)],
        "more than the limit of 100000 bytes",
        max_bytes=100_000,
    )
    assert writers == []  # refused from the listing's sizes: not one byte written


def test_device_file_mode_never_becomes_a_device(repo_factory: RepoFactory, hub_dir: Path) -> None:
    # git reads any odd mode (here a char device, 020000) back as a gitlink: skipped, never created.
    repo = repo_factory.make_repo("mallory/model")
    commit = repo.commit_raw_tree([OK, ("dev/mem", "20000", "4" * 40)])
    tree = fetch_tree(Cache(hub_dir), repo.url, commit, expected_tree_sha256=None, **LIMITS)
    assert not (tree.path / "dev").exists()
    assert sorted(p.name for p in tree.path.iterdir()) == ["hubconf.py"]
