"""The :class:`Fetcher` protocol: where a repository's refs and trees come from (issue 9).

The pipeline asks a fetcher two things, each under the policy's bounds:
``resolve`` (a spec's ref -> the commit the remote advertises, under the ref
policy) and ``tree_source`` (a :data:`~securehub.store.cache.TreeSource` that
writes one commit's exported tree into a scratch directory and returns it
with the digest of the manifest it exported). Every decision against the
policy and hub.lock stays in :mod:`securehub.trust` and the pipeline; the
cache verifies and stores what a source wrote (``tree_sha256`` on disk,
against the lock) whatever the fetcher is.

:data:`GIT` (:class:`GitFetcher`) is the production fetcher: ``git
ls-remote`` and a fetch of exactly the pinned commit, exported safely.
Pipeline unit tests pass an in-memory simulator instead
(``tests/_tree_simulator.py``); the git server tests stay the integration
and attack tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol

from securehub.fetch.gitfetch import fetch_commit
from securehub.fetch.tree import export_tree, manifest_sha256
from securehub.resolve.resolver import ResolvedRef, resolve
from securehub.resolve.spec import RepoSpec
from securehub.store.cache import TreeSource

__all__ = ["GIT", "Fetcher", "GitFetcher"]


class Fetcher(Protocol):
    """Where refs and trees come from (see the module docstring)."""

    def resolve(self, spec: RepoSpec, *, refs_policy_allow: str, tag_pattern: str) -> ResolvedRef:
        """``spec``'s ref resolved to a commit under the ref policy (the errors of
        :func:`securehub.resolve.resolver.resolve`)."""
        ...

    def tree_source(self, remote: str, commit: str, *, max_files: int, max_bytes: int) -> TreeSource:
        """A source that writes exactly ``commit``'s tree, within the file/byte limits (``archive-unsafe``)."""
        ...


class GitFetcher:
    """The production :class:`Fetcher`: ``git ls-remote``, then a fetch of exactly the pinned commit."""

    def resolve(self, spec: RepoSpec, *, refs_policy_allow: str, tag_pattern: str) -> ResolvedRef:
        """:func:`securehub.resolve.resolver.resolve` over ``git ls-remote``."""
        return resolve(spec, refs_policy_allow=refs_policy_allow, tag_pattern=tag_pattern)

    def tree_source(self, remote: str, commit: str, *, max_files: int, max_bytes: int) -> TreeSource:
        """A :data:`~securehub.store.cache.TreeSource` that fetches exactly ``commit`` with git and exports it
        safely (``ArchiveUnsafe`` on unsafe trees, the policy's file/byte limits)."""

        def fetch(work: Path) -> tuple[Path, str]:
            gitdir = fetch_commit(remote, commit, work)
            exported = work / "tree"
            manifest = export_tree(gitdir, commit, exported, max_files=max_files, max_bytes=max_bytes)
            return exported, manifest_sha256(manifest)

        return fetch


#: The fetcher every operation uses unless a pipeline unit test passes another.
GIT: Final[Fetcher] = GitFetcher()
