"""Fetch exactly one pinned commit into a fresh bare repository (SPEC section 5).

Guarantees:

* Only ``git init --bare``, ``git fetch`` of one commit id (depth 1, no tags,
  no submodules, no FETCH_HEAD) and read-only plumbing (``cat-file``,
  ``ls-tree``) ever run. Nothing is checked out, so hooks, filters,
  ``.gitattributes``, submodules and the remote repository's config are never
  run or honoured (a fetched repository's config is not even transferred).
* Every git process goes through the hardened runner in
  :mod:`securehub.resolve.git` (scrubbed environment, no system/global
  config, protocol allowlist, offline switch, tokens only to the GitHub host).
* :func:`fetch_commit` returns only after checking that the object named by
  the pinned id is a commit whose id is exactly the pinned one.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from securehub.errors import ArchiveUnsafe, NetworkError, OfflineError, RefNotFound
from securehub.resolve import git as _git

__all__ = ["BlobReader", "fetch_commit", "git_output", "is_commit_id"]

_COMMIT_RE = re.compile(r"(?:[0-9a-f]{40}|[0-9a-f]{64})")
_LOCAL_TIMEOUT_S = 600.0
_CHUNK = 1 << 20
#: Object types a ref can name that are not a revision (annotated tags are peeled by ls-remote).
_NOT_A_COMMIT = frozenset({b"tree", b"blob", b"tag"})


def is_commit_id(value: str) -> bool:
    """True for a full lowercase SHA-1 (40 hex) or SHA-256 (64 hex) object id."""
    return _COMMIT_RE.fullmatch(value) is not None


@contextlib.contextmanager
def _hardened_popen(
    args: Sequence[str], *, stdin: int, stderr: int = subprocess.PIPE
) -> Iterator[subprocess.Popen[bytes]]:
    """A local git process with binary pipes, hardened exactly like :func:`securehub.resolve.git.run_git`.

    ``run_git`` returns decoded text, which cannot carry blob bytes or
    non-UTF-8 paths exactly; this reuses its environment and ``-c`` hardening
    (never a network remote: no token, no offline question arises).
    """
    with tempfile.TemporaryDirectory(prefix="securehub-git-") as private_dir:
        cmd, env = _git.local_git_command(args, private_dir)
        proc = subprocess.Popen(
            cmd,
            cwd=private_dir,
            env=env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


def git_output(gitdir: Path, args: list[str]) -> bytes:
    """Run a local, read-only git command against the bare repo ``gitdir``; return raw stdout bytes.

    Raises :class:`NetworkError` (like ``run_git``) when git fails.
    """
    with _hardened_popen(["--git-dir", str(gitdir), *args], stdin=subprocess.DEVNULL) as proc:
        try:
            out, err = proc.communicate(timeout=_LOCAL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise NetworkError(
                f"git {args[0]} on the local cache copy did not finish in {_LOCAL_TIMEOUT_S:g} s"
            ) from None
    if proc.returncode != 0:
        detail = _git.sanitize_git_output(err.decode("utf-8", "replace")) or "(no output)"
        raise NetworkError(
            f"git {args[0]} on the fetched copy failed with exit code {proc.returncode}: expected success; "
            f"git said: {detail}. Fetch again with force_reload=True."
        )
    return out


#: Keep every fetched pack as one file (never exploded into loose objects), so the largest-file
#: limit on git (securehub.resolve._git_limits) bounds what a fetch can write to disk.
_FETCH_CONFIG = {"fetch.unpackLimit": "1"}


def _run(args: list[str], *, remote: str | None = None) -> None:
    # A network fetch gets the active network_timeout (policy repos.git_timeout_s); run_git kills
    # git's process group when it ends, so a stalled or endless pack leaves no index-pack behind.
    timeout_s = _LOCAL_TIMEOUT_S if remote is None else None
    _git.run_git(args, remote=remote, timeout_s=timeout_s, config=_FETCH_CONFIG if remote is not None else None)


def fetch_commit(remote: str, commit: str, workdir: Path) -> Path:
    """Fetch ``commit`` (a full object id) from ``remote`` into a new bare repo under ``workdir``.

    Returns the bare git dir. Raises :class:`OfflineError` when
    ``SECUREHUB_OFFLINE=1`` (from the runner, before any connection),
    :class:`RefNotFound` when the id names a tree, blob or tag object (a
    tag pointing at a tree or blob: no commit to load),
    :class:`NetworkError` when git fails (unreachable remote, unknown
    commit, server refusing to serve an unadvertised id), and
    :class:`ValueError` for a ``commit`` that is not a full hex id (the
    lock parser is expected to have refused it already).
    """
    if not is_commit_id(commit):
        raise ValueError(f"commit must be a full 40 or 64 hex-digit object id, got {commit!r}")
    gitdir = workdir / "repo.git"
    fmt = "sha256" if len(commit) == 64 else "sha1"
    if _git.is_offline() and not remote.lower().startswith("file://"):
        # The runner refuses the fetch too; checking first means nothing at all runs offline.
        raise OfflineError(
            f"fetching commit {commit} from {_git.sanitize_git_output(remote)!r} refused: SECUREHUB_OFFLINE "
            "is set and the tree is not in the cache. Expected it locked and cached; unset "
            "SECUREHUB_OFFLINE or populate the cache while online."
        )
    _run(["init", "--quiet", "--bare", f"--object-format={fmt}", str(gitdir)])
    _run(
        [
            "--git-dir", str(gitdir), "fetch", "--quiet", "--depth=1", "--no-tags",
            "--no-recurse-submodules", "--no-write-fetch-head", "--", remote, commit,
        ],
        remote=remote,
    )  # fmt: skip
    kind = git_output(gitdir, ["cat-file", "-t", commit]).strip()
    if kind in _NOT_A_COMMIT:
        # A tag may point at a tree or a blob (`git tag t <tree>`): ls-remote advertises it like
        # any tag, and only the object's type tells. It names no revision to load, so the ref is
        # as absent as a missing one (red-team finding 7c: this used to surface as `network`).
        raise RefNotFound(
            f"{remote} serves {commit} as a {kind.decode('ascii')}, not a commit: expected the branch or tag "
            "(or the hub.lock entry) to name a commit. A tag pointing at a tree or blob cannot be loaded; "
            "nothing was cached. Use a tag on a commit."
        )
    resolved = git_output(gitdir, ["rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}"])
    resolved = resolved.strip()
    if kind != b"commit" or resolved.decode("ascii", "replace") != commit:
        raise NetworkError(
            f"fetching {commit} from {remote} produced a {kind.decode('ascii', 'replace')!r} object "
            f"resolving to {resolved.decode('ascii', 'replace')!r}; expected that exact commit. "
            "The remote may be misbehaving; try again or check the pinned commit in hub.lock."
        )
    return gitdir


class BlobReader:
    """Streams blob contents out of a bare repo with one ``git cat-file --batch`` process.

    Use as a context manager. :meth:`read_blob` checks that the object is a
    blob of exactly the announced size before yielding any of its bytes.
    """

    def __init__(self, gitdir: Path) -> None:
        self._cm = _hardened_popen(
            ["--git-dir", str(gitdir), "cat-file", "--batch"],
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        proc = self._cm.__enter__()
        if proc.stdin is None or proc.stdout is None:  # pragma: no cover - both are PIPE above
            raise RuntimeError("git cat-file pipes were not created")
        self._stdin = proc.stdin
        self._stdout = proc.stdout

    def __enter__(self) -> BlobReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cm.__exit__(exc_type, exc, tb)

    def read_blob(self, oid: str, expected_size: int) -> Iterator[bytes]:
        """Yield the content of blob ``oid`` in chunks; the caller must consume it entirely."""
        self._stdin.write(oid.encode("ascii") + b"\n")
        self._stdin.flush()
        header = self._stdout.readline()
        fields = header.split()
        if len(fields) != 3 or fields[1] != b"blob" or fields[0].decode("ascii", "replace") != oid:
            raise ArchiveUnsafe(
                f"git object {oid} read back as {header[:200]!r}; expected '{oid} blob {expected_size}'. "
                "The fetched repository is inconsistent; fetch it again with force_reload=True."
            )
        if int(fields[2]) != expected_size:
            raise ArchiveUnsafe(
                f"blob {oid} has {int(fields[2])} bytes but was listed with {expected_size}; "
                "the fetched repository is inconsistent; fetch it again with force_reload=True."
            )
        left = expected_size
        while left:
            chunk = self._stdout.read(min(left, _CHUNK))
            if not chunk:
                raise ArchiveUnsafe(f"blob {oid} ended {left} bytes early while reading it from git")
            left -= len(chunk)
            yield chunk
        if self._stdout.read(1) != b"\n":
            raise ArchiveUnsafe(f"blob {oid}: unexpected data after its content in `git cat-file` output")
