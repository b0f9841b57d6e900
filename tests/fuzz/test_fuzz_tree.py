"""Fuzz tree export/extraction (securehub/fetch/tree.py): path checks, writing a tree from entries
(what ``export_tree`` and ``cache import`` do), and scanning/snapshotting a directory on disk (cached
trees, ``source="local"``).

Property: a manifest or ``archive-unsafe`` (``hash-mismatch`` only when the directory changes during
a snapshot), never another exception (``RecursionError`` on a deep directory, ``OSError`` on a path
longer than the OS allows); whatever is written stays inside the destination, and its digest on disk
equals the manifest's.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from securehub.errors import ArchiveUnsafe
from securehub.fetch.tree import (
    MODE_EXEC,
    MODE_FILE,
    MODE_GITLINK,
    MODE_SYMLINK,
    TreeEntry,
    check_tree_path,
    scan_tree,
    snapshot_tree,
    tree_sha256,
    write_tree,
)
from tests.fuzz._harness import run_parser

_COMPONENTS = st.sampled_from(
    ["a", "b", "A", "hubconf.py", ".git", ".GIT", "git~1", ".g\u200cit", "..", ".", "", "é", "e\u0301", "x" * 256,
     "a\\b", "a\x00b", "a\nb", " ", "~", "-rf", ".gitmodules", "\u202e"]
)  # fmt: skip
_PATHS = st.lists(_COMPONENTS, min_size=1, max_size=6).map("/".join)
_TARGETS = st.sampled_from(["a", "../a", "../../etc/passwd", "/etc/passwd", "", "b/../../x", "./a", "a\x00", "."])


@given(st.one_of(_PATHS.map(lambda p: p.encode("utf-8", "surrogatepass")), st.binary(max_size=64)))
@example(b"a/" * 3000 + b"f")
@example(b"a" * 5000)
@example(b"\xff\xfe")
def test_fuzz_tree_path(raw: bytes) -> None:
    path = run_parser("tree.check_path", lambda: check_tree_path(raw), (ArchiveUnsafe,))
    if path is not None:
        parts = path.split("/")
        assert not path.startswith("/") and ".." not in parts and "" not in parts
        assert not any(ord(c) < 0x20 for c in path)


@st.composite
def _entries(draw: st.DrawFn) -> list[tuple[str, str, bytes]]:
    out = []
    for _ in range(draw(st.integers(1, 6))):
        mode = draw(st.sampled_from([MODE_FILE, MODE_EXEC, MODE_SYMLINK, MODE_GITLINK, "040000", "100664"]))
        path = draw(st.one_of(_PATHS, st.sampled_from(["a", "a/b", "a/b/c", "b", "link", "link/x"])))
        content = draw(_TARGETS).encode() if mode == MODE_SYMLINK else draw(st.binary(max_size=32))
        out.append((path, mode, content))
    return out


def _write(spec: list[tuple[str, str, bytes]], tmp: Path) -> None:
    blobs = tmp / "blobs"
    blobs.mkdir()
    entries = []
    for path, mode, content in spec:
        digest = hashlib.sha256(content).hexdigest()
        (blobs / digest).write_bytes(content)
        entries.append(TreeEntry(path, mode, len(content), digest))
    dest = tmp / "dest"
    manifest = write_tree(dest, entries, lambda sha: blobs / sha, max_files=100, max_bytes=10_000)
    root = os.path.realpath(dest)
    for entry in manifest.entries:
        assert os.path.realpath(dest / entry.path).startswith(root + os.sep)
    assert tree_sha256(dest) == manifest.tree_sha256


@given(_entries())
@example([("a/" * 1500 + "f", MODE_FILE, b"x")])
@example([("/".join(["d" * 250] * 16) + "/f", MODE_FILE, b"x")])
@example([("a", MODE_SYMLINK, b"b"), ("b", MODE_SYMLINK, b"../x")])
def test_fuzz_write_tree(spec: list[tuple[str, str, bytes]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_parser("tree.write", lambda: _write(spec, Path(tmp)), (ArchiveUnsafe,))
        _make_writable(Path(tmp))


def _make_writable(root: Path) -> None:
    """Undo the tree's read-only seal so the temp dir can be removed (deep trees need dir fds)."""
    stack = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while stack:
            fd = stack.pop()
            os.fchmod(fd, 0o700)
            for entry in os.scandir(fd):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd))
            os.close(fd)
    finally:
        for fd in stack:
            os.close(fd)


def _remove(root: Path) -> None:
    """Remove a possibly very deep tree without recursion: hoist every subdirectory to the top first."""
    _make_writable(root)
    queue, moved = [str(root)], 0
    while queue:
        current = queue.pop()
        for entry in list(os.scandir(current)):
            if entry.is_dir(follow_symlinks=False):
                moved += 1
                hoisted = f"{root}/.hoisted-{moved}"
                os.rename(entry.path, hoisted)
                queue.append(hoisted)
    shutil.rmtree(root)


def _build(root: Path, spec: list[tuple[str, str, bytes]], depth: int) -> None:
    """Create ``spec`` under ``root`` (file, exec, symlink, fifo, dir), then a ``depth``-deep ``deep/`` chain."""
    for path, kind, content in spec:
        target = root / path
        if os.path.lexists(target):
            continue  # never write into what an earlier entry made (a fifo would block the writer)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "symlink":
                target.symlink_to(content.decode("utf-8", "surrogateescape"))
            elif kind == "fifo":
                os.mkfifo(target)
            elif kind == "dir":
                target.mkdir()
            else:
                target.write_bytes(content)
                target.chmod(0o755 if kind == "exec" else 0o644)
        except (OSError, ValueError):
            continue  # a name the file system itself refuses: nothing to scan
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("deep", dir_fd=fd)
        child = os.open("deep", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)


_LOCAL = st.lists(
    st.tuples(
        st.sampled_from(["a", "b/c", ".git/config", "x/.git/hooks/h", "hubconf.py", "d/e/f", "l", "b/l"]),
        st.sampled_from(["file", "exec", "symlink", "fifo", "dir"]),
        _TARGETS.map(str.encode),
    ),
    max_size=6,
)


@given(_LOCAL, st.sampled_from([0, 1, 5, 40]))
@example([], 1500)
@example([], 3000)
# Building and copying a 3000-deep tree took 7.7 s on the shared 2-core machine under load (about 1 s
# when quiet); the bound catches a super-linear scan (minutes), not a busy file system.
@settings(deadline=30000)
def test_fuzz_scan_and_snapshot_local_directory(spec: list[tuple[str, str, bytes]], depth: int) -> None:
    tmp = tempfile.mkdtemp()
    try:
        root = Path(tmp) / "src"
        root.mkdir()
        _build(root, spec, depth)
        manifest = run_parser("tree.scan", lambda: scan_tree(root, max_files=100, max_bytes=10_000), (ArchiveUnsafe,))
        copy = Path(tmp) / "copy"
        snap = run_parser(
            "tree.snapshot", lambda: snapshot_tree(root, copy, max_files=100, max_bytes=10_000), (ArchiveUnsafe,)
        )
        assert (manifest is None) == (snap is None)
        if manifest is not None and snap is not None:
            assert snap.tree_sha256 == manifest.tree_sha256
    finally:
        _remove(Path(tmp))
