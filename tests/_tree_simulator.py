"""An in-memory :class:`~securehub.fetch.fetcher.Fetcher`: remotes, refs and trees without a git server.

Modelled on python-tuf's ``RepositorySimulator``: a test publishes file sets
under a remote and a tag or branch, and passes the simulator to
``securehub.pipeline.load.load(..., fetcher=sim)``. Resolution runs the real
ref rules (:func:`securehub.resolve.resolver.resolve`) over the simulated
advertisement; a fetch writes the commit's files into the cache's scratch
directory and reports their real ``tree_sha256``, so the cache verifies and
stores them exactly as it does a git export. ``calls`` records every resolve
and fetch, so a test can assert that a refusal happened before any network
access. The git server tests (integration, attacks) stay the real thing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from securehub.errors import NetworkError
from securehub.fetch.tree import tree_sha256
from securehub.resolve.git import RemoteRefs
from securehub.resolve.resolver import ResolvedRef, resolve
from securehub.resolve.spec import RepoSpec
from securehub.store.cache import TreeSource


@dataclass
class _Remote:
    heads: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Mapping[str, bytes]] = field(default_factory=dict)


@dataclass
class TreeSimulator:
    """Remotes -> refs -> commits -> files, all in memory (see the module docstring)."""

    remotes: dict[str, _Remote] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def publish(self, remote: str, files: Mapping[str, bytes], *, tag: str | None = None,
                branch: str | None = None) -> str:  # fmt: skip
        """Add a commit holding ``files`` to ``remote`` and point ``tag``/``branch`` at it; its id."""
        repo = self.remotes.setdefault(remote, _Remote())
        commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()  # noqa: S324 - an id, not security
        repo.commits[commit] = dict(files)
        if tag is not None:
            repo.tags[tag] = commit
        if branch is not None:
            repo.heads[branch] = commit
        return commit

    def resolve(self, spec: RepoSpec, *, refs_policy_allow: str, tag_pattern: str) -> ResolvedRef:
        self.calls.append(("resolve", spec.remote))
        return resolve(spec, refs_policy_allow=refs_policy_allow, tag_pattern=tag_pattern, ls_remote=self._ls_remote)

    def tree_source(self, remote: str, commit: str, *, max_files: int, max_bytes: int) -> TreeSource:
        def fetch(work: Path) -> tuple[Path, str]:
            self.calls.append(("fetch", remote, commit))
            files = self._remote(remote).commits.get(commit)
            if files is None:
                raise NetworkError(f"simulated remote {remote!r} has no commit {commit}")
            assert len(files) <= max_files and sum(map(len, files.values())) <= max_bytes
            tree = work / "tree"
            for name, data in files.items():
                path = tree / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            return tree, tree_sha256(tree)

        return fetch

    def tree_digest(self, remote: str, commit: str, scratch: Path) -> str:
        """The ``tree_sha256`` a fetch of ``commit`` reports (what ``securehub lock`` would record)."""
        source = self.tree_source(remote, commit, max_files=1 << 20, max_bytes=1 << 30)
        digest = source(scratch)[1]
        self.calls.pop()
        return digest

    def _remote(self, remote: str) -> _Remote:
        if remote not in self.remotes:
            raise NetworkError(f"simulated remote {remote!r} does not exist")
        return self.remotes[remote]

    def _ls_remote(self, remote: str) -> RemoteRefs:
        repo = self._remote(remote)
        return RemoteRefs(heads=dict(repo.heads), tags=dict(repo.tags), head_symref=next(iter(repo.heads), None))
