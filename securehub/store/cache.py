"""The content-addressed cache under the hub dir (SPEC section 5; layout in docs/cache.md).

Layout::

    <root>/trees/<tree_sha256>/                      exported trees, read-only, content-addressed
    <root>/index/commits/<sha256(remote NUL commit)>.json   {"remote", "commit", "tree_sha256"}
    <root>/artifacts/sha256/<sha256>                 downloaded blobs, read-only
    <root>/tmp/<random>/                             work in progress; never trusted
    <root>/locks/                                    filelock lock files
    <root>/results/<key>/                            verified sandbox results, read-only (see
                                                     securehub.pipeline.result_cache; key = sha256 of the inputs)

Guarantees:

* Nothing enters ``trees/``, ``artifacts/`` or ``index/`` before its digest
  was computed and (when the caller gave one) compared with the expected
  digest. Entries appear by ``os.rename``/``os.replace`` from ``tmp/`` on the
  same file system, so readers see either nothing or a complete entry.
* Every hit is re-verified (the tree or blob is re-hashed) before it is
  returned; a mismatch raises :class:`HashMismatch` and is never silently
  repaired (``force_reload=True`` repairs it on purpose).
* Concurrent processes serialise per commit (and per tree digest / artifact)
  with ``filelock`` locks; every one of them succeeds and one copy is kept.
* A process killed mid-fetch leaves only a ``tmp/`` directory, which no
  reader trusts and :meth:`Cache.prune` removes once its owner's lock is gone.
  Lock files in ``locks/`` are removed by :meth:`Cache.prune` once no live
  process holds them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from securehub._util.digest import file_sha256
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.errors import ArchiveUnsafe, HashMismatch, SecureHubError
from securehub.fetch.tree import tree_sha256
from securehub.store.results import verify_result_dir
from securehub.trust.tree import check_locked_tree_digest

__all__ = ["Cache", "CacheProblem", "CachedTree", "PruneReport", "TreeSource"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TMP_PREFIX = "w-"
_STALE_TMP_S = 3600.0
#: An index record is three short strings; anything bigger or deeper is a tampered entry, refused
#: without building it (json.loads would recurse on deep nesting and raise RecursionError).
_INDEX_LIMITS = JsonLimits(max_bytes=64 << 10, max_depth=2, max_items=16, max_str_bytes=16 << 10)
_LOCK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


#: Fills a scratch directory with one commit's exported tree: ``fetch(work) -> (exported dir, manifest digest)``.
#: Supplied by the pipeline (git), so the cache stores and verifies but never fetches.
TreeSource = Callable[[Path], tuple[Path, str]]


@dataclass(frozen=True)
class CachedTree:
    """A verified tree: ``path`` holds content whose digest is ``tree_sha256``.

    ``fetched`` is true when this call fetched it from the remote, false when
    it came (re-verified) from the cache.
    """

    path: Path
    tree_sha256: str
    fetched: bool


@dataclass(frozen=True)
class CacheProblem:
    """One finding of :meth:`Cache.verify`: what is wrong where."""

    path: Path
    expected: str
    found: str

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, found {self.found}"


@dataclass(frozen=True)
class PruneReport:
    """What :meth:`Cache.prune` removed: cache entries and ``tmp/`` work (``removed``), and the
    lock files no live process held (``removed_locks``, bookkeeping rather than content)."""

    removed: tuple[Path, ...]
    removed_locks: tuple[Path, ...] = ()


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _make_writable(root: Path) -> None:
    """Give the owner write permission on every directory under ``root`` (never following symlinks)."""
    if not _chmod_dir(root, 0o700):
        return
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            _chmod_dir(Path(dirpath) / d, 0o700)


def _check_own_dir(path: Path, root: Path) -> None:
    """Refuse a cache directory (``trees/``, ``artifacts/sha256/``, ``tmp/``, ...) that is not a real directory.

    Whoever can write the hub dir could replace ``trees/`` with a symlink to ``~/projects``: ``cache
    prune`` then deleted every directory there as a tree that fails verification, and loads wrote
    outside the hub dir (red team 7). The hub dir itself may be a symlink (the user chose it); the
    directories securehub creates inside it never are. Absent is fine (created later, then checked).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else f"a {stat.filemode(st.st_mode)} entry"
        raise HashMismatch(
            f"cache directory {path}: expected a directory securehub created, found {kind}. Something "
            f"other than securehub replaced it (securehub never follows it: pruning through it would "
            f"delete files outside the cache). Remove it and let securehub recreate it, or set "
            f"SECUREHUB_DIR to a directory on the disk you wanted to use; {root} itself may be a symlink."
        )


def _chmod_dir(path: Path, mode: int) -> bool:
    """``chmod`` the directory ``path`` itself, never what a symlink there points to; ``False`` if it is none.

    The cache's parents are writable by whoever may tamper with it: a ``trees/<digest>`` replaced by a
    symlink to one of the user's directories made ``Path.chmod`` (which follows links) change that
    directory's mode (red team 7). Opened with ``O_NOFOLLOW | O_DIRECTORY`` and changed through the fd.
    """
    try:
        fd = os.open(path, _DIR_FLAGS)
    except (NotADirectoryError, FileNotFoundError):
        return False
    except PermissionError:
        # A directory we may not read (mode 0): only its owner's chmod helps, and it is no link now.
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        path.chmod(mode)
        return True
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink
            return False
        raise
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return True


def _remove_tree(path: Path) -> None:
    """Delete ``path`` (file, symlink or read-only directory tree); absent is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        _make_writable(path)
        shutil.rmtree(path)
    else:
        path.unlink()


class Cache:
    """The cache rooted at ``root`` (normally ``<hub dir>``); see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.dir = Path(root).absolute()
        self._trees = self.dir / "trees"
        self._index = self.dir / "index" / "commits"
        self._artifacts = self.dir / "artifacts" / "sha256"
        self._tmp = self.dir / "tmp"
        self._locks = self.dir / "locks"
        self._results = self.dir / "results"  # created on first store
        for d in (self._trees, self._index, self._artifacts, self._tmp, self._locks):
            d.mkdir(parents=True, exist_ok=True)
        for d in (
            self._trees, self._index.parent, self._index, self._artifacts.parent, self._artifacts,
            self._tmp, self._tmp / "downloads", self._locks, self._results,
        ):  # fmt: skip
            _check_own_dir(d, self.dir)

    # ----------------------------------------------------------------------- locks and tmp

    def _lock(self, name: str) -> FileLock:
        return FileLock(str(self._locks / f"{name}.lock"))

    @contextlib.contextmanager
    def temp_dir(self, prefix: str = _TMP_PREFIX) -> Iterator[Path]:
        """A fresh private directory under ``tmp/`` (same file system as the store), removed on exit.

        The directory itself is ``flock``-ed for as long as the context is
        open, so a concurrent :meth:`prune` never removes it; the kernel drops
        the lock when the owner dies, which is what makes its leftovers
        removable. Every working directory a load, lock or command keeps in
        the cache must come from here: :meth:`prune` removes an *unlocked*
        directory once it is older than the grace period, and the mtime of a
        directory does not move while a file inside it is written (a sandbox
        run may last ``sandbox.timeout_s``, up to a day). ``prefix`` names the
        work in listings (``result-``, ``lock-``, ``local-``).
        """
        if not _LOCK_NAME.fullmatch(prefix + "x"):
            raise ValueError(f"temp_dir prefix must be a plain name, got {prefix!r}")
        path = self._tmp / (prefix + secrets.token_hex(12))
        path.mkdir(mode=0o700)
        fd = os.open(path, _DIR_FLAGS)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield path
        finally:
            try:
                _remove_tree(path)
            finally:
                os.close(fd)

    # ----------------------------------------------------------------------- trees

    def _index_path(self, remote: str, commit: str) -> Path:
        key = _sha256_bytes(remote.encode("utf-8") + b"\0" + commit.encode("utf-8"))
        return self._index / f"{key}.json"

    def _read_index(self, path: Path, remote: str, commit: str) -> str | None:
        """The tree digest recorded for (remote, commit), None when there is no entry."""
        try:
            raw = _read_index_bytes(path)
        except FileNotFoundError:
            return None
        doc = _index_doc(raw)
        digest = doc.get("tree_sha256") if isinstance(doc, dict) else None
        if (
            not isinstance(doc, dict)
            or doc.get("remote") != remote
            or doc.get("commit") != commit
            or not isinstance(digest, str)
            or not _HEX64.fullmatch(digest)
        ):
            raise HashMismatch(
                f"cache index entry {path} is not the record for {remote} @ {commit} (found {raw[:200]!r}); "
                "expected {remote, commit, tree_sha256}. The cache was tampered with or corrupted: "
                "run `securehub cache verify`, then delete the entry or reload with force_reload=True."
            )
        return digest

    def _write_index(self, path: Path, remote: str, commit: str, digest: str, work: Path) -> None:
        """Atomically (re)place the index record; ``work`` is a locked :meth:`temp_dir`."""
        data = json.dumps({"commit": commit, "remote": remote, "tree_sha256": digest}, sort_keys=True) + "\n"
        tmp = work / "index.json"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def _verify_tree(self, path: Path, digest: str, expected: str | None) -> None:
        try:
            found = tree_sha256(path)
        except ArchiveUnsafe as exc:
            raise HashMismatch(
                f"cached tree {path} no longer passes the tree safety checks ({exc.message}); expected a "
                f"read-only tree with digest {digest}. The cache was tampered with: run `securehub cache "
                "verify` and reload with force_reload=True."
            ) from exc
        if found != digest:
            raise HashMismatch(
                f"cached tree {path}: expected tree_sha256 {digest}, found {found}. The cache was tampered "
                "with or corrupted: run `securehub cache verify` and reload with force_reload=True."
            )
        check_locked_tree_digest(expected, digest, fetched_from=None)

    def get_tree(
        self,
        remote: str,
        commit: str,
        *,
        expected_tree_sha256: str | None,
        fetch: TreeSource,
        force_reload: bool = False,
    ) -> CachedTree:
        """The verified, read-only tree of ``commit`` at ``remote``; on a miss, ``fetch`` supplies it.

        The cache stores and verifies; it never fetches. ``fetch(work)`` is the
        caller's (:func:`securehub.pipeline.tree.fetch_tree` passes its fetcher's, git's in production): it
        writes the exported tree under the scratch directory ``work`` and
        returns it with the digest of the manifest it exported.
        A cached tree is re-hashed on every call and must match both its
        index entry and ``expected_tree_sha256`` (when given), else
        :class:`HashMismatch` (no refetch). A cache hit calls no ``fetch``, so
        it works with ``SECUREHUB_OFFLINE=1``. A miss exports into ``tmp/``,
        checks the bytes on disk against the exported manifest, compares with
        ``expected_tree_sha256`` (``HashMismatch``: nothing is cached) and
        only then moves the tree into ``trees/`` and writes the index.
        ``force_reload`` re-fetches and replaces a cached copy that fails
        verification.
        """
        index_path = self._index_path(remote, commit)
        with self._lock(f"commit-{index_path.stem}"):
            if not force_reload:
                digest = self._read_index(index_path, remote, commit)
                if digest is not None:
                    path = self._trees / digest
                    with self._lock(f"tree-{digest}"):
                        if os.path.lexists(path):
                            self._verify_tree(path, digest, expected_tree_sha256)
                            return CachedTree(path, digest, fetched=False)
                    # The index points at a tree that is gone (pruned): fetch it again below.
            with self.temp_dir() as work:
                exported, digest = fetch(work)
                on_disk = tree_sha256(exported)
                if on_disk != digest:
                    raise HashMismatch(
                        f"exported tree of {commit}: expected tree_sha256 {digest} (from git), "
                        f"found {on_disk} on disk. Something modified the cache's tmp/ directory during "
                        "the export; try again."
                    )
                check_locked_tree_digest(expected_tree_sha256, digest, fetched_from=(remote, commit))
                path = self._install_tree(exported, digest, replace_bad=force_reload)
                self._write_index(index_path, remote, commit, digest, work)
            return CachedTree(path, digest, fetched=True)

    def verify_cached_tree(self, remote: str, commit: str, expected_tree_sha256: str) -> bool:
        """Re-verify the cached tree of (``remote``, ``commit``) against a locked digest, without fetching.

        Returns ``False`` when nothing is cached for it, ``True`` when the cached
        copy verifies; raises :class:`HashMismatch` when the cached copy or its
        index entry differs from ``expected_tree_sha256``. Never runs git.
        """
        index_path = self._index_path(remote, commit)
        digest = self._read_index(index_path, remote, commit)
        if digest is None:
            return False
        path = self._trees / digest
        with self._lock(f"tree-{digest}"):
            if not os.path.lexists(path):
                return False
            self._verify_tree(path, digest, expected_tree_sha256)
        return True

    def admit_tree(self, staged: Path, digest: str, *, sources: Sequence[tuple[str, str]], work: Path) -> Path:
        """Install a tree built outside git (``cache import``) for every (``remote``, ``commit``) in ``sources``.

        ``staged`` is a finished tree inside ``work``, a locked :meth:`temp_dir`.
        It is re-hashed here (:class:`HashMismatch` when it is not ``digest``,
        :class:`ArchiveUnsafe` when it is unsafe); a cached copy that fails
        verification is replaced, a verified one kept. Then an index entry
        is written for each source (hub.lock may pin one tree at several
        commits, e.g. two tags around an empty commit), so later loads of each
        pinned commit find the tree without git.
        """
        if not sources:
            raise ValueError("admit_tree needs at least one (remote, commit)")
        found = tree_sha256(staged)
        if found != digest:
            remote, commit = sources[0]
            raise HashMismatch(
                f"imported tree for {remote} @ {commit}: expected tree_sha256 {digest} (from hub.lock), found "
                f"{found}. Nothing was cached."
            )
        path = self._install_tree(staged, digest, replace_bad=True)
        for remote, commit in sources:
            index_path = self._index_path(remote, commit)
            with self._lock(f"commit-{index_path.stem}"):
                self._write_index(index_path, remote, commit, digest, work)
        return path

    def _install_tree(self, exported: Path, digest: str, *, replace_bad: bool) -> Path:
        """Move ``exported`` to ``trees/<digest>`` unless a verified copy is already there."""
        final = self._trees / digest
        with self._lock(f"tree-{digest}"):
            if os.path.lexists(final):
                try:
                    self._verify_tree(final, digest, None)
                    return final  # same content already cached (another process or commit); drop ours
                except HashMismatch:
                    if not replace_bad:
                        raise
                # force_reload: move the bad copy aside (into tmp/, removed with it), then install ours.
                # A directory moving to another parent must be writable; a symlink or file there moves
                # as it is (never chmod through a link into the user's files).
                _chmod_dir(final, 0o700)
                final.rename(exported.parent / "replaced")
            # Moving a directory to another parent needs write access to it (its ".." entry changes).
            fd = os.open(exported, _DIR_FLAGS)  # our own tmp dir: sealed through this fd, whatever `final` becomes
            try:
                os.fchmod(fd, 0o755)
                exported.rename(final)
                os.fchmod(fd, 0o555)  # read-only for everyone is the point
            finally:
                os.close(fd)
            return final

    # ----------------------------------------------------------------------- artifacts

    def artifact_path(self, sha256: str) -> Path:
        """Where the blob with this digest lives (``artifacts/sha256/<sha256>``); it may not exist.

        This is only a location: callers must verify the content (see
        :meth:`verified_artifact`), as the downloader does on every use.
        """
        _check_hex64(sha256)
        return self._artifacts / sha256

    def verified_artifact(self, sha256: str) -> Path | None:
        """The cached blob with this digest, re-hashed now; None when absent.

        Raises :class:`HashMismatch` when the cached file's content no longer
        has that digest (tampering); the entry is left in place for
        inspection (``securehub cache verify`` / ``prune``).
        """
        path = self.artifact_path(sha256)
        with self._lock(f"artifact-{sha256}"):
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                return None
            found = file_sha256(path) if stat.S_ISREG(st.st_mode) else f"a {stat.filemode(st.st_mode)} entry"
            if found != sha256:
                raise HashMismatch(
                    f"cached artifact {path}: expected sha256 {sha256}, found {found}. The cache was "
                    "tampered with or corrupted: run `securehub cache verify`, delete the file and download "
                    "it again."
                )
            return path

    def tmp_dir(self) -> Path:
        """Where partial downloads go (``tmp/downloads/``, same file system as ``artifacts/``).

        Files there are junk unless moved away by :meth:`put_artifact_from_temp`;
        :meth:`prune` removes the ones not written to for ``tmp_older_than_s``.
        """
        path = self._tmp / "downloads"
        path.mkdir(mode=0o700, exist_ok=True)
        _check_own_dir(path, self.dir)
        return path

    def lock_path(self, name: str) -> Path:
        """A lock file path for a caller-chosen key (a digest or ``url-<sha256>``); its directory exists.

        Names are namespaced (``dl-``) so they never clash with the cache's own locks.
        """
        safe = name if _LOCK_NAME.fullmatch(name) else "h-" + _sha256_bytes(name.encode("utf-8"))
        return self._locks / f"dl-{safe}.lock"

    def put_artifact_from_temp(self, tmp_path: Path, sha256: str) -> Path:
        """Move a fully downloaded file from ``tmp/`` into ``artifacts/sha256/<sha256>``, read-only.

        ``tmp_path`` must be a regular file under ``tmp/`` (same file system,
        so the final rename is atomic). It is re-hashed here: on mismatch
        :class:`HashMismatch` is raised, the temp file deleted and nothing
        stored. If a verified copy already exists, ``tmp_path`` is deleted
        and the existing path returned; a tampered existing copy is replaced.
        """
        final = self.artifact_path(sha256)
        tmp_real = Path(os.path.realpath(tmp_path))
        if not tmp_real.is_relative_to(os.path.realpath(self._tmp)) or not tmp_path.is_file():
            raise ValueError(f"{tmp_path} must be a regular file under {self._tmp}")
        found = file_sha256(tmp_path)
        if found != sha256:
            tmp_path.unlink()
            raise HashMismatch(
                f"downloaded file: expected sha256 {sha256}, found {found}. Nothing was cached; the "
                "server sent other bytes than were locked."
            )
        with self._lock(f"artifact-{sha256}"):
            if final.is_file() and not final.is_symlink() and file_sha256(final) == sha256:
                tmp_path.unlink()
                return final
            tmp_path.chmod(0o444)
            tmp_path.replace(final)
            return final

    def tree_path(self, digest: str) -> Path:
        """Where the tree with ``tree_sha256`` ``digest`` lives (``trees/<digest>``); it may not exist.

        Only a location: the path a sandbox child sees the tree at, which a config digest replaces by
        its placeholder (:func:`securehub.pipeline.state_digest.config_sha256`).
        """
        _check_hex64(digest)
        return self._trees / digest

    # ----------------------------------------------------------------------- results

    def result_path(self, key: str) -> Path:
        """Where the result entry for ``key`` lives (``results/<key>/``); it may not exist.

        Only a location: :func:`securehub.pipeline.result_cache.load_result` verifies
        the entry on every use.
        """
        _check_hex64(key)
        return self._results / key

    @contextlib.contextmanager
    def result_lock(self, key: str) -> Iterator[None]:
        """Hold the lock of result ``key``: entries are read, installed and removed under it."""
        _check_hex64(key)
        with self._lock(f"result-{key}"):
            yield

    def install_result(self, built: Path, key: str, *, replace: bool, check: Callable[[Path], str | None]) -> Path:
        """Move the finished directory ``built`` (inside a :meth:`temp_dir`) to ``results/<key>``, read-only.

        If an entry already exists it is kept when ``check`` finds nothing
        wrong with it (another process stored the same result; ``built`` is
        dropped), and :class:`HashMismatch` is raised when it is broken --
        unless ``replace`` is set, which moves it aside and installs ``built``.
        """
        final = self.result_path(key)
        if not Path(os.path.realpath(built)).is_relative_to(os.path.realpath(self._tmp)) or not built.is_dir():
            raise ValueError(f"{built} must be a directory under {self._tmp}")
        self._results.mkdir(exist_ok=True)
        _check_own_dir(self._results, self.dir)
        with self._lock(f"result-{key}"):
            if os.path.lexists(final):
                problem = None if replace else check(final)
                if problem is None and not replace:
                    return final
                if not replace:
                    raise HashMismatch(
                        f"cached result {final}: expected an entry matching its manifest, found: {problem}. "
                        "The cache was tampered with or corrupted: run `securehub cache prune` or load with "
                        "force_reload=True."
                    )
                _chmod_dir(final, 0o700)  # a directory moving to another parent must be writable
                final.rename(built.parent / "replaced")
            fd = os.open(built, _DIR_FLAGS)
            try:
                built.rename(final)
                os.fchmod(fd, 0o555)
            finally:
                os.close(fd)
            return final

    def remove_result(self, key: str) -> bool:
        """Delete result ``key`` (under its lock); ``True`` if there was one."""
        final = self.result_path(key)
        with self._lock(f"result-{key}"):
            if not os.path.lexists(final):
                return False
            _remove_tree(final)
            return True

    def _result_entries(self) -> list[Path]:
        return sorted(self._results.iterdir()) if self._results.is_dir() else []

    def _result_problem(self, entry: Path) -> str | None:
        if not _HEX64.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            return "an unexpected entry"
        return verify_result_dir(entry)

    # ----------------------------------------------------------------------- maintenance

    def verify(self) -> list[CacheProblem]:
        """Re-hash every cached tree and artifact and check every index entry; return what is wrong."""
        problems: list[CacheProblem] = []
        for entry in sorted(self._trees.iterdir()):
            if (tree_problem := _tree_problem(entry)) is not None:
                problems.append(tree_problem)
        for entry in sorted(self._artifacts.iterdir()):
            if (artifact_problem := _artifact_problem(entry)) is not None:
                problems.append(artifact_problem)
        for entry in sorted(self._index.iterdir()):
            problems.extend(self._check_index_entry(entry))
        for entry in self._result_entries():
            problem = self._result_problem(entry)
            if problem is not None:
                problems.append(CacheProblem(entry, "a result entry matching its manifest and key", problem))
        return problems

    def _check_index_entry(self, entry: Path) -> list[CacheProblem]:
        expected = "an index record {remote, commit, tree_sha256} named by sha256(remote NUL commit)"
        try:
            doc = _index_doc(_read_index_bytes(entry))
        except OSError:
            doc = None
        if doc is None:
            return [CacheProblem(entry, expected, "unreadable or unbounded JSON")]
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("remote", "commit")):
            return [CacheProblem(entry, expected, "a malformed record")]
        if self._index_path(doc["remote"], doc["commit"]) != entry:
            return [CacheProblem(entry, expected, "a record for another remote/commit")]
        digest = doc.get("tree_sha256")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            return [CacheProblem(entry, expected, f"tree_sha256 {digest!r}")]
        if not (self._trees / digest).is_dir():
            return [CacheProblem(entry, f"a cached tree {digest}", "no such tree (it will be fetched again)")]
        return []

    def prune(self, keep: set[str] | None = None, *, tmp_older_than_s: float = _STALE_TMP_S) -> PruneReport:
        """Remove stale ``tmp/`` work, everything that fails verification, and (with ``keep``) the unlisted.

        A ``tmp/`` entry is removed only if it is older than
        ``tmp_older_than_s`` and no live process holds its lock (a process
        killed mid-fetch releases it). Every tree, artifact and result that
        fails the checks :meth:`verify` makes (SPEC section 10, ``cache
        prune``) is deleted, as are index entries pointing at removed or
        missing trees, each under its lock. With ``keep`` (a set of tree and
        artifact digests, e.g. everything hub.lock references), unlisted
        trees and artifacts are deleted too. Last, every file in ``locks/``
        that no live process holds (a non-blocking ``flock`` succeeds) is
        removed (``PruneReport.removed_locks``); a held one never is. After
        a prune, :meth:`verify` finds nothing (unless something changed the
        cache meanwhile).
        """
        removed: list[Path] = []
        now = time.time()
        downloads = self._tmp / "downloads"
        for entry in sorted([*self._tmp.iterdir(), *(downloads.iterdir() if downloads.is_dir() else [])]):
            if entry != downloads and _remove_stale_tmp(entry, now - tmp_older_than_s):
                removed.append(entry)
        for entry in sorted(self._trees.iterdir()):
            with self._lock(f"tree-{_lock_safe(entry.name)}"):
                if (keep is not None and entry.name not in keep) or _tree_problem(entry) is not None:
                    _remove_tree(entry)
                    removed.append(entry)
        for entry in sorted(self._artifacts.iterdir()):
            with self._lock(f"artifact-{_lock_safe(entry.name)}"):
                if (keep is not None and entry.name not in keep) or _artifact_problem(entry) is not None:
                    _remove_tree(entry)
                    removed.append(entry)
        for entry in sorted(self._index.iterdir()):
            if self._check_index_entry(entry):
                with self._lock(f"commit-{entry.stem}"):
                    if self._check_index_entry(entry):
                        entry.unlink()
                        removed.append(entry)
        for entry in self._result_entries():
            # Results are derived data: drop every broken one, and with ``keep`` every one that was
            # built from a tree or artifact not kept.
            with self._lock(f"result-{entry.name}"):
                if self._result_problem(entry) is not None or (keep is not None and not _result_refs(entry) <= keep):
                    _remove_tree(entry)
                    removed.append(entry)
        # Last, once this prune's own entry locks are released: every lock file no live process holds.
        locks = tuple(entry for entry in sorted(self._locks.iterdir()) if _remove_unheld_lock(entry))
        return PruneReport(tuple(removed), locks)


def _lock_safe(name: str) -> str:
    """A lock-file name for a cache entry name (a stray, oddly named entry gets a hashed one)."""
    return name if _HEX64.fullmatch(name) else "x-" + _sha256_bytes(name.encode("utf-8", "surrogateescape"))


def _tree_problem(entry: Path) -> CacheProblem | None:
    """What is wrong with ``trees/<entry>`` (a directory whose content hashes to its name), if anything."""
    if not _HEX64.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
        return CacheProblem(entry, "a directory named by its tree_sha256", "an unexpected entry")
    try:
        found = tree_sha256(entry)
    except SecureHubError as exc:
        found = f"an unsafe tree ({exc.message})"
    return None if found == entry.name else CacheProblem(entry, f"tree_sha256 {entry.name}", found)


def _artifact_problem(entry: Path) -> CacheProblem | None:
    """What is wrong with ``artifacts/sha256/<entry>`` (a regular file whose sha256 is its name), if anything."""
    if not _HEX64.fullmatch(entry.name) or entry.is_symlink() or not entry.is_file():
        return CacheProblem(entry, "a file named by its sha256", "an unexpected entry")
    found = file_sha256(entry)
    return None if found == entry.name else CacheProblem(entry, f"sha256 {entry.name}", found)


def _remove_stale_tmp(entry: Path, cutoff: float) -> bool:
    """Remove one ``tmp/`` leftover if it is older than ``cutoff`` and nobody holds its lock."""
    try:
        st = os.lstat(entry)
    except FileNotFoundError:
        return False
    if st.st_mtime >= cutoff:
        return False
    if not stat.S_ISDIR(st.st_mode):
        # A partial download: a live downloader keeps writing it (mtime moves), so an old one is junk.
        entry.unlink(missing_ok=True)
        return True
    try:
        fd = os.open(entry, _DIR_FLAGS)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its owner is alive
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(entry))
        except FileNotFoundError:
            return False  # another prune removed it meanwhile
        if not same:
            return False
        _remove_tree(entry)
        return True
    finally:
        os.close(fd)


def _remove_unheld_lock(entry: Path) -> bool:
    """Remove one ``locks/`` file if no live process holds its ``flock``; a symlink (never a lock) goes too.

    Taken without waiting and removed while held, and only if the path still names the inode that
    was locked. A process that opened the file before the removal and locks it afterwards holds
    an unlinked inode: ``filelock`` sees ``st_nlink == 0`` and opens the path again, so it never
    shares a lock with a newcomer on a fresh file. Directories and other odd entries are left.
    """
    try:
        st = os.lstat(entry)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        entry.unlink(missing_ok=True)
        return True
    if not stat.S_ISREG(st.st_mode):
        return False
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # gone, replaced by a symlink, unreadable: not this prune's to judge
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live process holds it
        try:
            if not os.path.samestat(os.fstat(fd), os.lstat(entry)):
                return False  # replaced meanwhile: the new file may be held
        except FileNotFoundError:
            return False  # another prune removed it meanwhile
        entry.unlink()
        return True
    finally:
        os.close(fd)


def _read_index_bytes(path: Path) -> bytes:
    """At most one byte over the index cap (a larger file is refused by :func:`_index_doc`)."""
    with path.open("rb") as fh:
        return fh.read(_INDEX_LIMITS.max_bytes + 1)


def _index_doc(raw: bytes) -> object:
    """An index record's JSON, or None when it is not bounded, strict JSON."""
    try:
        doc: object = strict_loads(raw, _INDEX_LIMITS)
    except JsonRefusedError:
        return None
    return doc


def _result_refs(entry: Path) -> set[str]:
    """The tree and artifact digests a (verified) result entry was built from."""
    doc = json.loads((entry / "manifest.json").read_bytes())
    inputs = doc["inputs"]
    return {inputs["tree_sha256"], *inputs["artifacts"].values()}


def _check_hex64(value: str) -> None:
    if not _HEX64.fullmatch(value):
        raise ValueError(f"expected a lowercase 64-hex-digit sha256, got {value!r}")
