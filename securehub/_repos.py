"""From a spec string to a verified tree: policy gates, ref resolution, pinned fetch.

This is the one place where a repo spec meets the policy and the lock, so the
order is fixed: parse (no I/O) -> policy on the repo -> lock lookup (a locked
entry wins over the ref's current target) -> ``not-locked`` under
``lock.mode: required`` before any network access -> resolve -> fetch at the
pinned commit -> tree digest against the lock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from securehub._context import Context
from securehub.errors import LockDrift, NotLocked, RefNotAllowed, RepoNotAllowed
from securehub.fetch.tree import manifest_sha256, scan_tree
from securehub.lockfile import RepoEntry
from securehub.policy import Policy
from securehub.resolve.resolver import ResolvedRef, resolve
from securehub.resolve.spec import RepoSpec, parse_spec


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


def check_repo_allowed(spec: RepoSpec, policy: Policy) -> None:
    """``repo-not-allowed`` unless the policy's repo rules admit ``spec``."""
    if spec.kind == "local":
        if not policy.repos.local:
            raise RepoNotAllowed(
                f"{spec.key!r} is a local directory, and the policy {policy.name!r} refuses local sources "
                "(repos.local: false). Publish the repo to a git remote and lock a tag, or use a policy "
                "with repos.local: true."
            )
        return
    if not policy.repo_allowed(spec.name, spec.remote):
        raise RepoNotAllowed(
            f"{spec.name!r} is not allowed by the policy {policy.name!r} (repos.allow: "
            f"{list(policy.repos.allow)}, repos.deny: {list(policy.repos.deny)}). Ask for the repo to be "
            "added to repos.allow, or use another repo."
        )


def resolve_under_policy(spec: RepoSpec, policy: Policy) -> ResolvedRef:
    """Resolve ``spec``'s ref on its remote, applying the policy's ref rules."""
    return resolve(spec, refs_policy_allow=policy.refs.allow, tag_pattern=policy.refs.tag_pattern)


def pinned_spec(spec: RepoSpec, entry: RepoEntry) -> RepoSpec:
    """``spec`` with its ref replaced by the unambiguous ``heads/``/``tags/`` form of the locked ref."""
    namespace = "heads" if entry.ref_type == "branch" else "tags"
    return dataclasses.replace(spec, ref=f"{namespace}/{entry.ref}")


def check_remote_matches(spec: RepoSpec, entry: RepoEntry) -> None:
    """A lock entry names the remote it was resolved on; a spec now pointing elsewhere is drift."""
    if entry.remote != spec.remote:
        raise LockDrift(
            f"{spec.key}: hub.lock pins the remote {entry.remote!r} but the spec now resolves to "
            f"{spec.remote!r} (check SECUREHUB_GITHUB_URL). Run `securehub lock --upgrade {spec.key}` "
            "if the new remote is intended."
        )


def verified_tree(
    ctx: Context, repo_or_dir: str, *, source: str = "github", force_reload: bool = False
) -> VerifiedTree:
    """The verified, read-only tree for ``repo_or_dir`` under ``ctx``'s policy and lock.

    Guarantees: the repo passed the policy; with a lock entry, the tree is the
    pinned commit's and its digest equals the lock's (``hash-mismatch``
    otherwise); without one, ``not-locked`` under ``lock.mode: required``
    before any network access. Under ``lock.mode: auto`` the caller records the
    returned values into the lock.
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
        if not policy.ref_allowed(entry.ref, entry.ref_type):
            raise RefNotAllowed(
                f"{spec.key}: hub.lock pins the {entry.ref_type} {entry.ref!r}, which the policy {policy.name!r} "
                f"does not allow (refs.allow: {policy.refs.allow}, tag_pattern: {policy.refs.tag_pattern!r}). "
                "Lock a tag that matches the policy."
            )
        cached = ctx.cache.get_tree(
            entry.remote,
            entry.commit,
            expected_tree_sha256=entry.tree_sha256,
            force_reload=force_reload,
            **limits,
        )
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
    if policy.lock.mode == "required":
        where = str(ctx.lock_path) if ctx.lock_path else "no hub.lock was found"
        raise NotLocked(
            f"{spec.key!r} is not in hub.lock ({where}), and the policy {policy.name!r} requires every repo to be "
            f"locked (lock.mode: required). Run `securehub lock {spec.key}` and commit hub.lock."
        )
    resolved = resolve_under_policy(spec, policy)
    cached = ctx.cache.get_tree(
        spec.remote, resolved.commit, expected_tree_sha256=None, force_reload=force_reload, **limits
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
