"""From a spec string to a verified tree: policy gates, ref resolution, pinned fetch.

This is the one place where a repo spec meets the policy and the lock, so the
order is fixed: parse (no I/O) -> policy on the repo -> lock lookup (a locked
entry wins over the ref's current target) -> ``not-locked`` under
``lock.mode: required`` before any network access -> resolve -> fetch at the
pinned commit -> tree digest against the lock. Each decision is a pure
function of :mod:`securehub.trust.tree`; this module does the I/O between
them (refs and trees come from a :class:`~securehub.fetch.fetcher.Fetcher`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from securehub._util.storage import storage_exhaustion
from securehub.config.lockfile import RepoEntry
from securehub.config.policy import Policy
from securehub.errors import HashMismatch, NetworkError, RepoNotAllowed
from securehub.fetch.addrguard import AddressRefused, normalize_host, resolve_public
from securehub.fetch.fetcher import GIT, Fetcher
from securehub.fetch.tree import manifest_sha256, scan_tree, snapshot_tree
from securehub.pipeline.context import Context
from securehub.resolve.git import git_limits, network_timeout, pack_file_cap, pinned_resolution, sanitize_git_output
from securehub.resolve.resolver import ResolvedRef
from securehub.resolve.spec import RepoSpec, parse_spec
from securehub.store.cache import Cache, CachedTree
from securehub.trust.tree import (
    check_file_remote_named,
    check_locked_ref_allowed,
    check_remote_matches,
    check_repo_allowed,
    check_unlocked_allowed,
    explicit_repo_hosts,
)


@dataclass(frozen=True)
class VerifiedTree:
    """A repo tree that passed every check. ``entry`` is the lock entry it was checked against
    (``None`` for unlocked loads and local dirs)."""

    spec: RepoSpec
    path: Path
    ref: str | None
    ref_type: str | None
    commit: str | None
    tree_sha256: str
    entry: RepoEntry | None
    fetched: bool


@contextlib.contextmanager
def repo_chosen_remote(spec: RepoSpec, policy: Policy) -> Iterator[None]:
    """Admit a remote that repository code chose (a nested ``torch.hub.load``) and is not locked.

    SSRF (red-team finding 5): a hubconf's ``torch.hub.load("git+http://127.0.0.1:PORT/x.git@v1")``
    must not make the parent connect to a loopback, private, link-local (cloud metadata) or other
    non-public address. ``owner/repo`` specs use the user's configured GitHub base URL and pass.
    A ``git+`` remote passes when ``repos.allow`` names its host literally; otherwise its host is
    resolved here, every address must be public (``repo-not-allowed`` naming the address), and for
    http(s) git is pinned to exactly those addresses while the block runs. ``git+file://``
    (a path on this machine) needs a literal ``repos.allow`` entry for the remote. Residual risk:
    git's ssh transport cannot be pinned, so an ssh host's DNS answer may change between this
    check and ssh's own lookup.
    """
    if spec.kind != "git":
        yield
        return
    parts = urlsplit(spec.remote)
    scheme = parts.scheme.lower()
    if scheme == "file":
        check_file_remote_named(spec, policy)
        yield
        return
    host = normalize_host(parts.hostname or "")
    if host in explicit_repo_hosts(policy):
        yield
        return
    port = parts.port or {"https": 443, "http": 80, "ssh": 22}[scheme]
    try:
        addresses = resolve_public(host, port)
    except AddressRefused as exc:
        raise RepoNotAllowed(
            f"the repository asked for a nested load of {sanitize_git_output(spec.key)!r}, whose host {exc.host} "
            f"resolves to {exc.address}, which is not a public address ({exc.reason}); refused before "
            "connecting. A remote chosen by repository code and not locked in hub.lock may reach only public "
            f"addresses. If this host is yours, name it literally in the policy's repos.allow (e.g. {exc.host!r} "
            "or a URL pattern with that host; the '*' glob does not count), or lock the repo first."
        ) from None
    except (socket.gaierror, UnicodeError) as exc:
        raise NetworkError(
            f"could not resolve the host {host!r} of {sanitize_git_output(spec.key)!r} ({exc}); expected a "
            "resolvable git host. Check the name and the network."
        ) from None
    if scheme in ("http", "https") and not _is_ip_literal(host):
        with pinned_resolution(host, port, addresses):
            yield
        return
    yield


def _is_ip_literal(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def local_snapshot(ctx: Context, tree: VerifiedTree) -> Iterator[VerifiedTree]:
    """``tree`` itself, or for a local directory a private read-only copy of what its digest covers.

    Red-team finding 6: a ``source="local"`` directory holds files the tree
    digest excludes (``.git/config`` with a token in a remote URL); the
    sandbox may read the repo tree, so it must be handed a tree holding only
    digested files. The copy (:func:`securehub.fetch.tree.snapshot_tree`) is
    made in the cache's ``tmp/``, verified against ``tree.tree_sha256``
    (``hash-mismatch`` if the directory changed since it was hashed), and
    removed when the block ends, whatever happened.
    """
    if tree.spec.kind != "local":
        yield tree
        return
    # flock-ed for the whole load: a concurrent `cache prune` never deletes the tree the sandbox runs.
    with ctx.cache.temp_dir("local-") as work:
        policy = ctx.policy
        copy = work / "tree"
        manifest = snapshot_tree(
            tree.path, copy, max_files=policy.repos.max_files, max_bytes=policy.repos.max_tree_bytes
        )
        if manifest.tree_sha256 != tree.tree_sha256:
            raise HashMismatch(
                f"the local directory {str(tree.path)!r} changed after it was hashed: expected tree_sha256 "
                f"{tree.tree_sha256}, found {manifest.tree_sha256}. Nothing was run; load again once the "
                "directory is no longer being modified."
            )
        yield dataclasses.replace(tree, path=copy)


@contextlib.contextmanager
def _git_bounds(policy: Policy) -> Iterator[None]:
    """The policy's bounds on every git process: wall clock (``repos.git_timeout_s``), memory
    (``repos.git_memory_mb``) and largest file (the pack a tree within ``repos.max_tree_bytes``
    and ``repos.max_files`` can need)."""
    repos = policy.repos
    with (
        network_timeout(repos.git_timeout_s),
        git_limits(repos.git_memory_mb, pack_file_cap(repos.max_tree_bytes, repos.max_files)),
    ):
        yield


def resolve_under_policy(spec: RepoSpec, policy: Policy, fetcher: Fetcher = GIT) -> ResolvedRef:
    """Resolve ``spec``'s ref on its remote with ``fetcher``, applying the policy's ref rules.

    Bounded by ``repos.git_timeout_s`` and ``repos.git_memory_mb`` (a server stalling or sending
    an endless ref advertisement fails with ``network``; git's process group is killed).
    """
    with _git_bounds(policy):
        return fetcher.resolve(spec, refs_policy_allow=policy.refs.allow, tag_pattern=policy.refs.tag_pattern)


def cached_tree(
    ctx: Context,
    remote: str,
    commit: str,
    *,
    expected_tree_sha256: str | None,
    force_reload: bool = False,
    fetcher: Fetcher = GIT,
) -> CachedTree:
    """``ctx.cache.get_tree`` under the policy's tree limits and git bounds (see ``_git_bounds``).

    The one way the pipeline gets a tree: a fetch from a server that stalls mid-pack or sends an
    endless pack fails with ``network`` at the policy's bound (time, or the pack's size for the
    tree limits), git's process group is killed, and
    nothing is cached (the cache admits only a complete, verified tree). A full disk while the tree
    is extracted is ``network`` too, never a raw ``OSError``.
    """
    policy = ctx.policy
    with _git_bounds(policy), storage_exhaustion("the fetched tree", ctx.cache.dir):
        return fetch_tree(
            ctx.cache,
            remote,
            commit,
            expected_tree_sha256=expected_tree_sha256,
            max_files=policy.repos.max_files,
            max_bytes=policy.repos.max_tree_bytes,
            force_reload=force_reload,
            fetcher=fetcher,
        )


def pinned_spec(spec: RepoSpec, entry: RepoEntry) -> RepoSpec:
    """``spec`` with its ref replaced by the unambiguous ``heads/``/``tags/`` form of the locked ref."""
    namespace = "heads" if entry.ref_type == "branch" else "tags"
    return dataclasses.replace(spec, ref=f"{namespace}/{entry.ref}")


def fetch_tree(
    cache: Cache,
    remote: str,
    commit: str,
    *,
    expected_tree_sha256: str | None,
    max_files: int,
    max_bytes: int,
    force_reload: bool = False,
    fetcher: Fetcher = GIT,
) -> CachedTree:
    """The verified tree of ``commit`` at ``remote`` from the cache, fetched by ``fetcher`` (git) on a miss.

    The decision to fetch lives here, in the pipeline; the cache only stores
    and verifies (see :meth:`securehub.store.cache.Cache.get_tree`).
    """
    source = fetcher.tree_source(remote, commit, max_files=max_files, max_bytes=max_bytes)
    return cache.get_tree(
        remote, commit, expected_tree_sha256=expected_tree_sha256, fetch=source, force_reload=force_reload
    )


def verified_tree(
    ctx: Context,
    repo_or_dir: str,
    *,
    source: str = "github",
    force_reload: bool = False,
    chosen_by_repo: bool = False,
    fetcher: Fetcher = GIT,
) -> VerifiedTree:
    """The verified, read-only tree for ``repo_or_dir`` under ``ctx``'s policy and lock.

    Guarantees: the repo passed the policy; with a lock entry, the tree is the
    pinned commit's and its digest equals the lock's (``hash-mismatch``
    otherwise); without one, ``not-locked`` under ``lock.mode: required``
    before any network access. Under ``lock.mode: auto`` the caller records the
    returned values into the lock. ``chosen_by_repo``: the spec comes from
    repository code (a nested load); an unlocked remote must then pass
    :func:`repo_chosen_remote` (public addresses only) before git runs. ``fetcher``: where refs
    and trees come from (:data:`securehub.fetch.fetcher.GIT` unless a unit test passes a simulator).
    """
    spec = parse_spec(repo_or_dir, source)
    policy = ctx.policy
    check_repo_allowed(spec, policy)
    limits = {"max_files": policy.repos.max_files, "max_bytes": policy.repos.max_tree_bytes}
    if spec.kind == "local":
        assert spec.local_path is not None  # noqa: S101 - parse_spec guarantees it for local specs
        manifest = scan_tree(spec.local_path, **limits)
        return VerifiedTree(spec, spec.local_path, None, None, None, manifest_sha256(manifest), None, False)

    entry = ctx.lock.repo(spec.key)
    if entry is not None:
        check_remote_matches(spec, entry)
        check_locked_ref_allowed(spec.key, entry, policy)
        cached = cached_tree(
            ctx, entry.remote, entry.commit, expected_tree_sha256=entry.tree_sha256, force_reload=force_reload,
            fetcher=fetcher,
        )  # fmt: skip
        return VerifiedTree(
            spec,
            cached.path,
            entry.ref,
            entry.ref_type,
            entry.commit,
            cached.tree_sha256,
            entry,
            cached.fetched,
        )
    check_unlocked_allowed(spec.key, policy, ctx.lock_path)
    with repo_chosen_remote(spec, policy) if chosen_by_repo else contextlib.nullcontext():
        resolved = resolve_under_policy(spec, policy, fetcher)
        cached = cached_tree(
            ctx, spec.remote, resolved.commit, expected_tree_sha256=None, force_reload=force_reload, fetcher=fetcher
        )
    return VerifiedTree(
        spec,
        cached.path,
        resolved.ref,
        resolved.ref_type,
        resolved.commit,
        cached.tree_sha256,
        None,
        cached.fetched,
    )
