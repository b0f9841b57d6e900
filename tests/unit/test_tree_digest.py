"""tree_sha256: the documented byte format (golden), determinism, and the path rules (no git, no network)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from securehub.errors import ArchiveUnsafe
from securehub.fetch.tree import (
    TreeEntry,
    TreeManifest,
    _check_structure,
    _TreeWriter,
    check_tree_path,
    digest_entries,
    manifest_sha256,
    scan_tree,
    tree_sha256,
)

# a.txt = "hello\n" (100644), bin/run.sh = "#!/bin/sh\necho hi\n" (100755); see docs/cache.md.
GOLDEN_TWO_FILES = "66519dbaddf6112f584ebfa480c7e5e48f37d36acc94bf1f5dc2bb4df8fecb9e"


def _two_file_tree(root: Path) -> Path:
    root.mkdir()
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "bin").mkdir()
    (root / "bin" / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (root / "bin" / "run.sh").chmod(0o700)
    return root


def test_golden_digest_two_files_by_hand(tmp_path: Path) -> None:
    root = _two_file_tree(tmp_path / "t")
    a = hashlib.sha256(b"hello\n").hexdigest()
    b = hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()
    by_hand = hashlib.sha256(
        b"a.txt\x00100644\x00" + a.encode() + b"\n" + b"bin/run.sh\x00100755\x00" + b.encode() + b"\n"
    ).hexdigest()
    assert by_hand == GOLDEN_TWO_FILES
    assert tree_sha256(root) == GOLDEN_TWO_FILES


def test_digest_ignores_git_dir_empty_dirs_and_permission_details(tmp_path: Path) -> None:
    root = _two_file_tree(tmp_path / "t")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    (root / "empty").mkdir()
    (root / "a.txt").chmod(0o600)  # only "any x bit" matters
    (root / "bin" / "run.sh").chmod(0o100)
    assert tree_sha256(root) == GOLDEN_TWO_FILES


def test_digest_changes_with_content_mode_name_and_extra_file(tmp_path: Path) -> None:
    root = _two_file_tree(tmp_path / "t")
    seen = {tree_sha256(root)}
    (root / "a.txt").chmod(0o755)
    seen.add(tree_sha256(root))
    (root / "a.txt").chmod(0o644)
    (root / "a.txt").write_bytes(b"hello!\n")
    seen.add(tree_sha256(root))
    (root / "extra.py").write_bytes(b"")
    seen.add(tree_sha256(root))
    (root / "extra.py").rename(root / "extra2.py")
    seen.add(tree_sha256(root))
    assert len(seen) == 5


def test_symlink_digest_is_over_target_bytes(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "real.py").write_bytes(b"x")
    (root / "link.py").symlink_to("real.py")
    m = scan_tree(root)
    link = next(e for e in m.entries if e.path == "link.py")
    assert link == TreeEntry("link.py", "120000", len(b"real.py"), hashlib.sha256(b"real.py").hexdigest())
    assert tree_sha256(root) == digest_entries(
        [
            (b"real.py", "100644", hashlib.sha256(b"x").hexdigest()),
            (b"link.py", "120000", hashlib.sha256(b"real.py").hexdigest()),
        ]
    )


def test_entries_sorted_by_utf8_bytes_not_by_text_rules(tmp_path: Path) -> None:
    entries = [(b"b", "100644", "0" * 64), (b"B", "100644", "1" * 64), (b"a/z", "100644", "2" * 64)]
    expected = hashlib.sha256(
        b"".join(p + b"\0" + m.encode() + b"\0" + s.encode() + b"\n" for p, m, s in sorted(entries))
    ).hexdigest()
    assert digest_entries(entries) == expected
    assert digest_entries(reversed(entries)) == expected
    manifest = TreeManifest(tuple(TreeEntry(p.decode(), m, 0, s) for p, m, s in entries), (), 0)
    assert manifest_sha256(manifest) == expected


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"/etc/passwd", "absolute"),
        (b"../x", "'..'"),
        (b"a/../../x", "'..'"),
        (b"./x", "'.'"),
        (b"a//b", "empty component"),
        (b"a/", "empty component"),
        (b".git/config", ".git"),
        (b"sub/.GIT/hooks/post-checkout", ".git"),
        (b".git./config", ".git"),
        (b".git /config", ".git"),
        (b"GIT~1/config", ".git"),
        (b".git::$INDEX_ALLOCATION/config", ".git"),
        (".g\u200cit/config".encode(), ".git"),
        (b"a\\b", "backslash"),
        (b"a\x01b", "control"),
        (b"a\nb", "control"),
        (b"a\x00b", "control"),
        (b"\xff.py", "UTF-8"),
        (b"x" * 256, "longer"),
    ],
)
def test_path_checker_refuses(raw: bytes, why: str) -> None:
    with pytest.raises(ArchiveUnsafe) as info:
        check_tree_path(raw)
    assert info.value.code == "archive-unsafe"
    assert why in info.value.message


@pytest.mark.parametrize(
    "raw", [b"hubconf.py", b"a/b/c.py", b".github/workflows/x.yml", b"gitx/.gitignore", "é.py".encode()]
)
def test_path_checker_accepts(raw: bytes) -> None:
    assert check_tree_path(raw) == raw.decode()


@pytest.mark.parametrize(
    ("paths", "why"),
    [
        (["A.py", "a.py"], "collides"),
        (["Models/x.py", "models/y.py"], "collides"),
        (["\u00e9.py", "e\u0301.py"], "collides"),  # NFC vs NFD spelling of é.py
        (["x", "x"], "twice"),
        (["x", "x/y"], "both a file"),
    ],
)
def test_structure_refuses_collisions(paths: list[str], why: str) -> None:
    with pytest.raises(ArchiveUnsafe, match=why):
        _check_structure(paths)


def test_scan_refuses_symlink_leaving_tree(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "evil").symlink_to("../../outside")
    with pytest.raises(ArchiveUnsafe, match="leaves the tree") as info:
        tree_sha256(root)
    assert info.value.code == "archive-unsafe"


def test_scan_refuses_absolute_symlink(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveUnsafe, match="absolute"):
        tree_sha256(root)


def test_scan_refuses_symlink_chain_escaping_through_another_link(tmp_path: Path) -> None:
    # Lexically "a/up/../../x" stays inside; but a/up -> .. is the root, so the kernel leaves the tree.
    root = tmp_path / "t"
    (root / "a").mkdir(parents=True)
    (root / "a" / "up").symlink_to("..")
    (root / "esc").symlink_to("a/up/../../x")
    with pytest.raises(ArchiveUnsafe, match="outside the tree"):
        tree_sha256(root)


def test_scan_refuses_fifo_and_socket(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    os.mkfifo(root / "fifo")
    with pytest.raises(ArchiveUnsafe, match="special file"):
        tree_sha256(root)
    (root / "fifo").unlink()
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        with pytest.raises(ArchiveUnsafe, match="special file"):
            tree_sha256(root)
    finally:
        sock.close()


def test_scan_limits(tmp_path: Path) -> None:
    root = _two_file_tree(tmp_path / "t")
    with pytest.raises(ArchiveUnsafe, match="more than the limit of 1"):
        scan_tree(root, max_files=1)
    with pytest.raises(ArchiveUnsafe, match="more than the limit of 10"):
        scan_tree(root, max_bytes=10)
    assert scan_tree(root, max_files=2, max_bytes=100).tree_sha256 == GOLDEN_TWO_FILES


def test_writer_never_follows_a_symlink_written_earlier(tmp_path: Path) -> None:
    """Symlink-then-write-through-it: a later write below a symlink must fail, not land outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    writer = _TreeWriter(tmp_path / "dest")
    try:
        writer.symlink("lnk", str(outside).encode())
        with pytest.raises(ArchiveUnsafe, match="plain directory"):
            writer.create_file("lnk/pwned.py")
        writer.symlink("f", b"../outside/file.py")
        with pytest.raises(ArchiveUnsafe, match="new plain file"):
            writer.create_file("f")
    finally:
        writer.close()
    assert list(outside.iterdir()) == []
