"""Safe export of a git tree to disk, and the ``tree_sha256`` digest (SPEC section 5).

What this module guarantees:

* :func:`export_tree` writes exactly the regular files and symlinks of one
  commit's tree, read straight from the object store (``git ls-tree`` and
  ``git cat-file``): no checkout, so no hooks, filters, ``.gitattributes``,
  submodules or repository config are ever honoured.
* Every path is checked before anything is written (:func:`check_tree_path`,
  collisions, file-count and size limits); symlink targets are checked
  before the link is created and again, with the real file system, after
  the whole tree exists. Any problem raises :class:`ArchiveUnsafe` naming
  the path.
* Files are created with ``O_CREAT|O_EXCL|O_NOFOLLOW`` relative to directory
  descriptors opened with ``O_NOFOLLOW``, so a symlink written earlier in the
  export is never followed by a later write.
* :func:`tree_sha256` digests a directory on disk; :func:`manifest_sha256`
  digests the manifest that :func:`export_tree` returns. Both use the byte
  format documented in ``docs/cache.md`` and agree for an exported tree.
* :func:`snapshot_tree` copies exactly the files a directory's digest covers
  (never ``.git``) into a fresh read-only directory and re-verifies the copy,
  so code given the copy sees nothing the digest does not cover.

Gitlinks (mode ``160000``, submodules) are never fetched: they are skipped
and listed in :attr:`TreeManifest.skipped_submodules`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from securehub._util.digest import file_sha256
from securehub.errors import ArchiveUnsafe, HashMismatch
from securehub.fetch import gitfetch

__all__ = [
    "MODE_EXEC",
    "MODE_FILE",
    "MODE_GITLINK",
    "MODE_SYMLINK",
    "TreeEntry",
    "TreeManifest",
    "check_tree_path",
    "digest_entries",
    "export_tree",
    "manifest_sha256",
    "scan_tree",
    "snapshot_tree",
    "tree_sha256",
    "write_tree",
]

MODE_FILE = "100644"
MODE_EXEC = "100755"
MODE_SYMLINK = "120000"
MODE_GITLINK = "160000"

_FILE_MODES = {MODE_FILE: 0o444, MODE_EXEC: 0o555}
_DIR_MODE = 0o555
_NAME_MAX_BYTES = 255
_PATH_MAX_BYTES = 4095
#: Directory levels a path may have. Every walk of a tree is bounded by it: the writer keeps one
#: descriptor per level open, and a local directory 3000 levels deep made the recursive scan raise
#: RecursionError instead of a refusal (found by tests/fuzz/test_fuzz_tree.py). Real repositories
#: nest a few dozen levels at most.
_MAX_DEPTH = 256

# Code points HFS+ ignores when comparing names: ".g\u200cit" is ".git" there (CVE-2014-9390).
_HFS_IGNORABLE = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# NTFS 8.3 short names of ".git" ("GIT~1", "git~2", ...), also CVE-2014-9390 / CVE-2019-1353.
_NTFS_SHORT_GIT = re.compile(r"git~[0-9]+")


@dataclass(frozen=True)
class TreeEntry:
    """One regular file or symlink of a tree.

    ``path`` is relative, ``/``-separated and was checked by
    :func:`check_tree_path`; ``mode`` is ``100644``, ``100755`` or
    ``120000``; ``sha256`` is the hex digest of the content (for a symlink,
    of the target bytes); ``size`` is the content length in bytes.
    """

    path: str
    mode: str
    size: int
    sha256: str


@dataclass(frozen=True)
class TreeManifest:
    """What a tree holds, sorted by path bytes; ``tree_sha256`` is its digest."""

    entries: tuple[TreeEntry, ...]
    skipped_submodules: tuple[str, ...]
    total_bytes: int

    @property
    def tree_sha256(self) -> str:
        return manifest_sha256(self)


# --------------------------------------------------------------------------- digest


def digest_entries(entries: Iterable[tuple[bytes, str, str]]) -> str:
    """Digest ``(path_bytes, mode, hex_sha256)`` triples in the documented byte format.

    The triples are sorted by path bytes here; each contributes
    ``path + b"\\0" + mode + b"\\0" + hex_sha256 + b"\\n"``.
    """
    h = hashlib.sha256()
    for path, mode, content_sha in sorted(entries, key=lambda e: e[0]):
        h.update(path + b"\0" + mode.encode("ascii") + b"\0" + content_sha.encode("ascii") + b"\n")
    return h.hexdigest()


def manifest_sha256(manifest: TreeManifest) -> str:
    """The ``tree_sha256`` of a manifest, computed without touching the disk."""
    return digest_entries((e.path.encode("utf-8"), e.mode, e.sha256) for e in manifest.entries)


def tree_sha256(root: Path) -> str:
    """The ``tree_sha256`` of the directory ``root`` (see :func:`scan_tree`).

    Raises :class:`ArchiveUnsafe` for anything :func:`scan_tree` refuses.
    """
    return manifest_sha256(scan_tree(root))


# --------------------------------------------------------------------------- path rules


def _unsafe(path: str | bytes, why: str) -> ArchiveUnsafe:
    shown = path.decode("utf-8", "backslashreplace") if isinstance(path, bytes) else path
    return ArchiveUnsafe(
        f"unsafe repository tree: path {shown!r} {why}; expected a plain relative path inside the "
        "tree. The repository cannot be loaded safely; report it to its maintainers or pin another commit."
    )


def _is_dotgit_like(component: str) -> bool:
    """True for ``.git`` and every spelling some file system treats as ``.git``."""
    name = _HFS_IGNORABLE.sub("", component)
    name = name.split(":", 1)[0]  # NTFS alternate data stream: ".git::$INDEX_ALLOCATION"
    name = name.rstrip(" .").casefold()  # Windows drops trailing dots and spaces
    return name == ".git" or _NTFS_SHORT_GIT.fullmatch(name) is not None


def check_tree_path(raw: bytes) -> str:
    """Return ``raw`` decoded if it is a safe relative tree path, else raise :class:`ArchiveUnsafe`.

    Refused: empty, not UTF-8, absolute, backslashes, control characters
    (including NUL), empty / ``.`` / ``..`` components, any ``.git``-like
    component, over-long names, more than ``_MAX_DEPTH`` components. Collisions between paths are checked by the
    caller on the whole set (:func:`_check_structure`).
    """
    if not raw:
        raise _unsafe(raw, "is empty")
    try:
        path = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _unsafe(raw, "is not valid UTF-8") from None
    if path.startswith("/"):
        raise _unsafe(raw, "is absolute")
    if "\\" in path:
        raise _unsafe(raw, "contains a backslash")
    if any(unicodedata.category(c) == "Cc" for c in path):
        raise _unsafe(raw, "contains a control character")
    if len(raw) > _PATH_MAX_BYTES:
        raise _unsafe(raw, f"is longer than {_PATH_MAX_BYTES} bytes")
    components = path.split("/")
    if len(components) > _MAX_DEPTH:
        raise _unsafe(
            raw[:200] + b"...", f"is nested {len(components)} levels deep, more than the limit of {_MAX_DEPTH}"
        )
    for comp in components:
        if comp == "":
            raise _unsafe(raw, "has an empty component")
        if comp in (".", ".."):
            raise _unsafe(raw, f"has a {comp!r} component")
        if _is_dotgit_like(comp):
            raise _unsafe(raw, f"has a component {comp!r} that file systems may treat as '.git'")
        if len(comp.encode("utf-8")) > _NAME_MAX_BYTES:
            raise _unsafe(raw, f"has a component longer than {_NAME_MAX_BYTES} bytes")
    return path


def _parents(path: str) -> Iterator[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _check_structure(paths: Iterable[str]) -> None:
    """Refuse duplicates, a file used as a directory, and case/Unicode-normalisation collisions.

    Two names that differ only in case or in Unicode normalisation (NFC vs
    NFD) are one name on macOS and Windows; a tree holding both would be
    written differently there, so it is refused everywhere.
    """
    leaves: set[str] = set()
    dirs: set[str] = set()
    for p in paths:
        if p in leaves:
            raise _unsafe(p, "appears twice in the tree")
        leaves.add(p)
        dirs.update(_parents(p))
    for d in dirs:
        if d in leaves:
            raise _unsafe(d, "is both a file (or symlink) and a directory")
    folded: dict[str, str] = {}
    for p in sorted(leaves | dirs):
        key = unicodedata.normalize("NFC", p).casefold()
        other = folded.setdefault(key, p)
        if other != p:
            raise _unsafe(p, f"collides with {other!r} on case-insensitive or normalising file systems")


def _check_link_target(link: str, target: bytes) -> None:
    """Lexical check: ``target``, resolved from ``link``'s directory, stays inside the tree."""
    if not target:
        raise _unsafe(link, "is a symlink with an empty target")
    if b"\0" in target:
        raise _unsafe(link, "is a symlink whose target contains NUL")
    if len(target) > _PATH_MAX_BYTES:
        raise _unsafe(link, f"is a symlink whose target is longer than {_PATH_MAX_BYTES} bytes")
    if target.startswith(b"/"):
        raise _unsafe(link, f"is a symlink to the absolute path {target!r}; only relative targets are allowed")
    depth = link.count("/")  # number of directories between the tree root and the link
    for comp in target.split(b"/"):
        if comp in (b"", b"."):
            continue
        if comp == b"..":
            depth -= 1
            if depth < 0:
                raise _unsafe(link, f"is a symlink to {target!r}, which leaves the tree")
        else:
            depth += 1


def _check_link_resolves_inside(root_real: str, link_abs: str, rel: str) -> None:
    """Real-file-system check once the tree exists: catches chains of in-tree links that escape."""
    real = os.path.realpath(link_abs)
    if real != root_real and not real.startswith(root_real + os.sep):
        raise _unsafe(rel, f"is a symlink that resolves to {real!r}, outside the tree")


# --------------------------------------------------------------------------- local directories


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every non-directory under ``root`` (``.git`` skipped), depth first in name order.

    Iterative, and a directory deeper than ``_MAX_DEPTH`` levels or with a path longer than
    ``_PATH_MAX_BYTES`` is refused before it is opened: the walk's cost is bounded by what
    :func:`check_tree_path` would accept anyway. An unreadable directory is ``archive-unsafe``.
    """
    stack: list[str] = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(f"{root}/{rel}" if rel else root) as it:
                children = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
        except OSError as exc:
            raise _unsafe(rel or ".", f"cannot be listed ({exc.strerror})") from None
        dirs: list[str] = []
        for name, st in children:
            child_rel = f"{rel}/{name}" if rel else name
            if name == ".git":
                continue  # never part of the tree (git's own data, at any depth)
            if stat.S_ISDIR(st.st_mode):
                too_long = len(child_rel.encode("utf-8", "surrogateescape")) > _PATH_MAX_BYTES
                if child_rel.count("/") + 1 >= _MAX_DEPTH or too_long:
                    raise _unsafe(
                        child_rel[:200] + "...",
                        f"is a directory nested deeper than {_MAX_DEPTH} levels or {_PATH_MAX_BYTES} bytes",
                    )
                dirs.append(child_rel)
            else:
                yield child_rel, st
        stack.extend(reversed(dirs))


def scan_tree(root: Path, *, max_files: int | None = None, max_bytes: int | None = None) -> TreeManifest:
    """Manifest of a directory on disk (a cached tree or a ``source="local"`` repo).

    Regular files and symlinks are listed; directories are walked without
    following symlinks; entries named ``.git`` (at any depth) are skipped.
    Refused with :class:`ArchiveUnsafe`: device files, fifos, sockets,
    unsafe names (:func:`check_tree_path`), collisions, symlinks that leave
    the tree (lexically or through other links), more than ``max_files``
    entries or ``max_bytes`` of content (checked from ``lstat`` before any
    file is read). ``mode`` is ``100755`` when any execute bit is set.
    """
    root_s = os.fspath(root)
    root_real = os.path.realpath(root_s)
    listed = list(_walk(root_s))
    names = [check_tree_path(rel.encode("utf-8", "surrogateescape")) for rel, _ in listed]
    _check_structure(names)
    if max_files is not None and len(listed) > max_files:
        raise _unsafe(root_s, f"holds {len(listed)} files, more than the limit of {max_files}")
    total = sum(st.st_size for _, st in listed)
    if max_bytes is not None and total > max_bytes:
        raise _unsafe(root_s, f"holds {total} bytes, more than the limit of {max_bytes}")
    entries: list[TreeEntry] = []
    for rel, st in listed:
        if not (stat.S_ISLNK(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise _unsafe(rel, f"is a special file (mode {stat.filemode(st.st_mode)}), not a file or symlink")
        try:
            entries.append(_scan_entry(root_s, root_real, rel, st))
        except OSError as exc:  # e.g. a path longer than the OS allows, or a file removed meanwhile
            raise _unsafe(rel, f"cannot be read ({exc.strerror})") from None
    entries.sort(key=lambda e: e.path.encode("utf-8"))
    return TreeManifest(tuple(entries), (), sum(e.size for e in entries))


def _scan_entry(root: str, root_real: str, rel: str, st: os.stat_result) -> TreeEntry:
    """The manifest entry of one listed file or symlink (links checked to stay inside the tree)."""
    full = f"{root}/{rel}"
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(os.fsencode(full))  # noqa: PTH115 - the target's exact bytes
        _check_link_target(rel, target)
        _check_link_resolves_inside(root_real, full, rel)
        return TreeEntry(rel, MODE_SYMLINK, len(target), hashlib.sha256(target).hexdigest())
    mode = MODE_EXEC if st.st_mode & 0o111 else MODE_FILE
    return TreeEntry(rel, mode, st.st_size, file_sha256(full))


# --------------------------------------------------------------------------- writing


class _TreeWriter:
    """Creates files under a fresh directory without ever following a symlink.

    Directories are opened component by component with ``O_NOFOLLOW``
    relative to their parent's descriptor; files are created with
    ``O_CREAT|O_EXCL|O_NOFOLLOW``. Only the descriptors of the current
    directory chain are kept open.
    """

    def __init__(self, dest: Path) -> None:
        dest.mkdir(mode=0o700)  # must not exist: we never write into something we did not create
        self._dest = dest
        self._stack: list[tuple[str, int]] = [("", os.open(dest, _DIR_FLAGS))]
        self._dirs: list[str] = []

    def _dir_fd(self, rel_dir: str) -> int:
        parts = rel_dir.split("/") if rel_dir else []
        keep = 0
        while keep < len(parts) and keep + 1 < len(self._stack) and self._stack[keep + 1][0] == parts[keep]:
            keep += 1
        while len(self._stack) > keep + 1:
            os.close(self._stack.pop()[1])
        for depth in range(keep, len(parts)):
            name = parts[depth]
            parent = self._stack[-1][1]
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
                self._dirs.append("/".join(parts[: depth + 1]))
            except FileExistsError:
                pass  # opened below with O_NOFOLLOW: a symlink or file in the way fails there
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                raise _unsafe(rel_dir, f"cannot be created as a plain directory ({exc.strerror})") from None
            self._stack.append((name, fd))
        return self._stack[-1][1]

    def create_file(self, rel: str) -> int:
        """A new file's descriptor, opened for writing; the caller closes it."""
        head, _, name = rel.rpartition("/")
        parent = self._dir_fd(head)
        try:
            return os.open(name, _FILE_FLAGS, 0o600, dir_fd=parent)
        except OSError as exc:
            raise _unsafe(rel, f"cannot be created as a new plain file ({exc.strerror})") from None

    def symlink(self, rel: str, target: bytes) -> None:
        head, _, name = rel.rpartition("/")
        parent = self._dir_fd(head)
        try:
            os.symlink(target, name.encode("utf-8"), dir_fd=parent)
        except OSError as exc:
            raise _unsafe(rel, f"cannot be created as a symlink ({exc.strerror})") from None

    def close(self) -> None:
        while self._stack:
            os.close(self._stack.pop()[1])

    def seal(self) -> None:
        """Make every directory read-only (deepest first), then the root."""
        self.close()
        for rel in sorted(self._dirs, key=lambda d: d.count("/"), reverse=True):
            (self._dest / rel).chmod(_DIR_MODE, follow_symlinks=False)
        self._dest.chmod(_DIR_MODE)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# --------------------------------------------------------------------------- local snapshots


def snapshot_tree(root: Path, dest: Path, *, max_files: int, max_bytes: int) -> TreeManifest:
    """Copy exactly what ``root``'s ``tree_sha256`` covers into the new directory ``dest``, read-only.

    Why: a ``source="local"`` directory also holds what the digest excludes
    (``.git/config`` with a token in a remote URL, other ``.git`` dirs), and
    the sandboxed hubconf must see only digested files (red-team finding 6).
    ``root`` is scanned (:func:`scan_tree`: symlinks leaving the tree, special
    files, limits -> ``archive-unsafe``), each listed entry is copied (files
    opened with ``O_NOFOLLOW``, read at most their listed size + 1 byte), and
    ``dest`` is scanned again: its digest must equal the first scan's, else
    :class:`HashMismatch` (the directory changed while it was copied). Returns
    the manifest ``dest`` was verified against. On error ``dest`` may remain
    partially written; the caller removes it.
    """
    manifest = scan_tree(root, max_files=max_files, max_bytes=max_bytes)
    writer = _TreeWriter(dest)
    try:
        for entry in manifest.entries:
            _copy_entry(writer, os.fspath(root), entry)
    finally:
        writer.close()
    writer.seal()
    copied = scan_tree(dest, max_files=max_files, max_bytes=max_bytes)
    if copied.tree_sha256 != manifest.tree_sha256:
        raise HashMismatch(
            f"the local directory {os.fspath(root)!r} changed while it was copied for loading: expected "
            f"tree_sha256 {manifest.tree_sha256}, found {copied.tree_sha256} in the copy. Nothing was run; "
            "load again once the directory is no longer being modified."
        )
    return manifest


def _copy_entry(writer: _TreeWriter, root: str, entry: TreeEntry) -> None:
    source = f"{root}/{entry.path}"
    if entry.mode == MODE_SYMLINK:
        target = os.readlink(os.fsencode(source))  # noqa: PTH115 - the target's exact bytes
        _check_link_target(entry.path, target)
        writer.symlink(entry.path, target)
        return
    try:
        src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _unsafe(entry.path, f"cannot be opened as a plain file for copying ({exc.strerror})") from None
    with os.fdopen(src_fd, "rb") as src:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise _unsafe(entry.path, "is no longer a regular file")
        fd = writer.create_file(entry.path)
        with os.fdopen(fd, "wb") as out:
            left = entry.size + 1  # one byte more shows a file that grew; the re-scan refuses it
            while left > 0:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
                out.write(chunk)
            out.flush()
            os.fchmod(out.fileno(), _FILE_MODES[entry.mode])


# --------------------------------------------------------------------------- trees from a manifest


def write_tree(
    dest: Path, entries: Iterable[TreeEntry], content: Callable[[str], Path], *, max_files: int, max_bytes: int
) -> TreeManifest:
    """Write a tree described by ``entries`` to the new directory ``dest`` (``cache import``).

    ``content(sha256)`` names a local file holding the bytes of an entry
    (for a symlink: its target); the caller has verified that its content has
    that digest. The same rules as :func:`export_tree` apply, all checked
    before the first byte is written: safe paths (:func:`check_tree_path`),
    no collisions, modes ``100644``/``100755``/``120000`` only, symlinks
    inside the tree, every file's listed size equal to its content's, the
    file-count and size limits. Raises
    :class:`ArchiveUnsafe`; a partial ``dest`` must then be discarded.
    """
    listed = list(entries)
    paths = [check_tree_path(e.path.encode("utf-8", "surrogateescape")) for e in listed]
    _check_structure(paths)
    if len(listed) > max_files:
        raise _unsafe(".", f"holds {len(listed)} entries, more than the limit of {max_files} files")
    total = sum(e.size for e in listed)
    if total > max_bytes:
        raise _unsafe(".", f"holds {total} bytes of content, more than the limit of {max_bytes} bytes")
    for e in listed:
        if e.mode not in (MODE_FILE, MODE_EXEC, MODE_SYMLINK):
            raise _unsafe(e.path, f"has mode {e.mode!r}; only files, executables and symlinks are allowed")
        if e.mode == MODE_SYMLINK:
            _check_link_target(e.path, content(e.sha256).read_bytes())
        elif (found := content(e.sha256).stat().st_size) != e.size:
            # The size limit above added up the listed sizes: a listing that under-states them
            # (a hostile bundle manifest) would otherwise write past max_bytes.
            raise _unsafe(e.path, f"is listed with {e.size} bytes, but its content has {found} bytes")
    writer = _TreeWriter(dest)
    try:
        for e in listed:
            if e.mode == MODE_SYMLINK:
                writer.symlink(e.path, content(e.sha256).read_bytes())
                continue
            fd = writer.create_file(e.path)
            with os.fdopen(fd, "wb") as out, content(e.sha256).open("rb") as inp:
                while chunk := inp.read(1 << 20):
                    out.write(chunk)
                out.flush()
                os.fchmod(out.fileno(), _FILE_MODES[e.mode])
    finally:
        writer.close()
    root_real = os.path.realpath(dest)
    for e in listed:
        if e.mode == MODE_SYMLINK:
            _check_link_resolves_inside(root_real, f"{dest}/{e.path}", e.path)
    writer.seal()
    ordered = tuple(sorted(listed, key=lambda e: e.path.encode("utf-8")))
    return TreeManifest(ordered, (), total)


# --------------------------------------------------------------------------- git export


@dataclass(frozen=True)
class _Listed:
    path: str
    mode: str
    oid: str
    size: int


def _parse_ls_tree(out: bytes) -> tuple[list[_Listed], list[str]]:
    """Parse ``git ls-tree -r -z -l`` output: ``<mode> SP <type> SP <oid> SP+ <size> TAB <path> NUL``."""
    blobs: list[_Listed] = []
    gitlinks: list[str] = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, tab, raw_path = record.partition(b"\t")
        fields = meta.split()
        if not tab or len(fields) != 4:
            raise ArchiveUnsafe(
                f"unexpected `git ls-tree` output {record[:200]!r}; expected '<mode> <type> <id> <size>\\t<path>'"
            )
        mode, otype, oid, size = (f.decode("ascii", "replace") for f in fields)
        path = check_tree_path(raw_path)
        if mode == MODE_GITLINK and otype == "commit":
            gitlinks.append(path)
        elif mode in (MODE_FILE, MODE_EXEC, MODE_SYMLINK) and otype == "blob" and size.isdigit():
            blobs.append(_Listed(path, mode, oid, int(size)))
        else:
            raise _unsafe(
                path,
                f"has git mode {mode} ({otype}); only files, executables, symlinks and submodules are allowed",
            )
    return blobs, gitlinks


def export_tree(gitdir: Path, commit: str, dest: Path, *, max_files: int, max_bytes: int) -> TreeManifest:
    """Write the tree of ``commit`` (in the bare repo ``gitdir``) to the new directory ``dest``.

    ``dest`` must not exist. Modes: ``100644`` -> file ``0o444``,
    ``100755`` -> file ``0o555``, ``120000`` -> symlink (target relative and
    inside the tree), ``160000`` -> skipped (listed in
    ``skipped_submodules``); anything else is refused. Directories end up
    ``0o555``. Every check on names, counts and sizes runs before the first
    byte is written; on :class:`ArchiveUnsafe` a partial ``dest`` may remain
    and must be discarded by the caller (the cache does this: it only ever
    exports into its ``tmp/``).
    """
    blobs, gitlinks = _parse_ls_tree(gitfetch.git_output(gitdir, ["ls-tree", "-r", "-z", "-l", "--full-tree", commit]))
    _check_structure([b.path for b in blobs] + gitlinks)
    count = len(blobs) + len(gitlinks)
    if count > max_files:
        raise _unsafe(".", f"holds {count} entries, more than the limit of {max_files} files")
    total = sum(b.size for b in blobs)
    if total > max_bytes:
        raise _unsafe(".", f"holds {total} bytes of content, more than the limit of {max_bytes} bytes")
    for b in blobs:
        if b.mode == MODE_SYMLINK and b.size > _PATH_MAX_BYTES:
            raise _unsafe(b.path, f"is a symlink whose target is longer than {_PATH_MAX_BYTES} bytes")

    entries: list[TreeEntry] = []
    writer = _TreeWriter(dest)
    try:
        with gitfetch.BlobReader(gitdir) as reader:
            for b in blobs:
                entries.append(_write_entry(writer, reader, b))
    finally:
        writer.close()
    root_real = os.path.realpath(dest)
    for e in entries:
        if e.mode == MODE_SYMLINK:
            _check_link_resolves_inside(root_real, f"{dest}/{e.path}", e.path)
    writer.seal()
    entries.sort(key=lambda e: e.path.encode("utf-8"))
    return TreeManifest(tuple(entries), tuple(sorted(gitlinks)), total)


def _write_entry(writer: _TreeWriter, reader: gitfetch.BlobReader, b: _Listed) -> TreeEntry:
    h = hashlib.sha256()
    if b.mode == MODE_SYMLINK:
        target = b"".join(reader.read_blob(b.oid, b.size))
        _check_link_target(b.path, target)
        writer.symlink(b.path, target)
        h.update(target)
        return TreeEntry(b.path, b.mode, len(target), h.hexdigest())
    fd = writer.create_file(b.path)
    with os.fdopen(fd, "wb") as f:
        for chunk in reader.read_blob(b.oid, b.size):
            h.update(chunk)
            f.write(chunk)
        f.flush()
        os.fchmod(f.fileno(), _FILE_MODES[b.mode])
    return TreeEntry(b.path, b.mode, b.size, h.hexdigest())
