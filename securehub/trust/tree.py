"""Admission of a repository tree: repo allowed, remote and ref against the lock, lock mode, tree digest.

Pure decisions (SPEC sections 2, 3 and 5): each function takes the spec's
identity, the policy and the lock entry as plain values and returns or raises
the coded :class:`~securehub.errors.SecureHubError`; fetching, resolving and
hashing stay in :mod:`securehub.pipeline.tree` and :mod:`securehub.store.cache`.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from securehub._util.net import literal_hosts
from securehub.config.lockfile import RepoEntry
from securehub.config.policy import Policy
from securehub.errors import HashMismatch, LockDrift, NotLocked, RefNotAllowed, RepoNotAllowed

__all__ = [
    "RepoIdentity",
    "check_file_remote_named",
    "check_locked_ref_allowed",
    "check_locked_tree_digest",
    "check_remote_matches",
    "check_repo_allowed",
    "check_resolved_ref_allowed",
    "check_unlocked_allowed",
    "explicit_repo_hosts",
]


class RepoIdentity(Protocol):
    """What the decisions read of a parsed spec (:class:`securehub.resolve.spec.RepoSpec` provides it)."""

    @property
    def kind(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def remote(self) -> str: ...


def check_repo_allowed(spec: RepoIdentity, policy: Policy) -> None:
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


def explicit_repo_hosts(policy: Policy) -> frozenset[str]:
    """Hosts ``repos.allow`` names literally: a bare host entry (``"git.corp"``) or a URL entry whose
    host part has no glob characters (``"https://git.corp/*"``). ``"*"`` names no host."""
    hosts: set[str] = set()
    for pattern in policy.repos.allow:
        text = pattern.removeprefix("git+")
        if "://" in text:
            try:
                host = urlsplit(text).hostname or ""
            except ValueError:
                continue  # not a URL pattern with a parsable host: names no host
            hosts |= literal_hosts([host]) if host else set()
        elif "/" not in text:
            hosts |= literal_hosts([text])
    return frozenset(hosts)


def check_remote_matches(spec: RepoIdentity, entry: RepoEntry) -> None:
    """A lock entry names the remote it was resolved on; a spec now pointing elsewhere is drift."""
    if entry.remote != spec.remote:
        raise LockDrift(
            f"{spec.key}: hub.lock pins the remote {entry.remote!r} but the spec now resolves to "
            f"{spec.remote!r} (check SECUREHUB_GITHUB_URL). Run `securehub lock --upgrade {spec.key}` "
            "if the new remote is intended."
        )


def check_locked_ref_allowed(key: str, entry: RepoEntry, policy: Policy) -> None:
    """``ref-not-allowed`` when the ref hub.lock pins for ``key`` is not one the policy's ref rules admit."""
    if not policy.ref_allowed(entry.ref, entry.ref_type):
        raise RefNotAllowed(
            f"{key}: hub.lock pins the {entry.ref_type} {entry.ref!r}, which the policy {policy.name!r} "
            f"does not allow (refs.allow: {policy.refs.allow}, tag_pattern: {policy.refs.tag_pattern!r}). "
            "Lock a tag that matches the policy."
        )


def check_unlocked_allowed(key: str, policy: Policy, lock_path: Path | None) -> None:
    """``not-locked`` for a repo hub.lock has no entry for, under ``lock.mode: required`` (before any network)."""
    if policy.lock.mode == "required":
        where = str(lock_path) if lock_path else "no hub.lock was found"
        raise NotLocked(
            f"{key!r} is not in hub.lock ({where}), and the policy {policy.name!r} requires every repo to be "
            f"locked (lock.mode: required). Run `securehub lock {key}` and commit hub.lock."
        )


def check_file_remote_named(spec: RepoIdentity, policy: Policy) -> None:
    """A ``file://`` remote chosen by repository code (a nested load, not locked) must be named literally in
    ``repos.allow`` (``repo-not-allowed``): a path on this machine is never admitted by a glob."""
    if spec.remote not in policy.repos.allow and f"git+{spec.remote}" not in policy.repos.allow:
        raise RepoNotAllowed(
            f"the repository asked for a nested load of {spec.key!r}, a git repository on this machine "
            "that hub.lock does not pin; expected a remote the user chose. Lock it (`securehub lock "
            f"{spec.key}`), or name {spec.remote!r} literally in the policy's repos.allow."
        )


def check_locked_tree_digest(expected: str | None, found: str, *, fetched_from: tuple[str, str] | None) -> None:
    """``hash-mismatch`` unless a tree's digest ``found`` equals the ``expected`` one hub.lock pins.

    ``expected`` ``None``: nothing is locked, any digest is admitted. ``fetched_from``: the
    ``(remote, commit)`` of a tree fetched just now (then nothing was cached); ``None`` for a
    cached copy.
    """
    if expected is None or found == expected:
        return
    if fetched_from is None:
        raise HashMismatch(
            f"tree of the pinned commit: expected tree_sha256 {expected} (from hub.lock), "
            f"found {found}. "
            "Either hub.lock was changed or the commit's content is not what was locked; "
            "re-lock only if you trust the new content."
        )
    remote, commit = fetched_from
    raise HashMismatch(
        f"tree of {remote} @ {commit}: expected tree_sha256 {expected} "
        f"(from hub.lock), found {found}. Nothing was cached. The locked digest does not "
        "match what the remote serves for that commit; check hub.lock and the remote "
        "before re-locking."
    )


def check_resolved_ref_allowed(key: str, name: str, ref_type: str, allow: str, tag_pattern: str) -> None:
    """``ref-not-allowed`` unless the policy's ref rules (``refs.allow``, ``refs.tag_pattern``) admit the
    ``ref_type`` (``branch``/``tag``) ``name`` of ``key``, as the resolver found it on the remote (or as a
    ``heads/`` prefix names it before any network access)."""
    if ref_type == "branch" and allow == "tags":
        raise RefNotAllowed(
            f"ref {name!r} of {key!r} is a branch: the policy (refs.allow: tags) accepts tags only, "
            "because a branch moves. Use a tag, or a policy that allows branches.",
            expected="a tag (refs.allow: tags)",
            found=f"branch {name!r}",
            remedy="use a tag, or a policy that allows branches",
        )
    if ref_type == "tag" and allow == "branches":
        raise RefNotAllowed(
            f"ref {name!r} of {key!r} is a tag: the policy (refs.allow: branches) accepts branches "
            "only. Use a branch, or a policy that allows tags."
        )
    if ref_type == "tag" and not fnmatch.fnmatchcase(name, tag_pattern):
        raise RefNotAllowed(
            f"tag {name!r} of {key!r} does not match the policy's refs.tag_pattern {tag_pattern!r}: "
            "expected a matching tag. Use a tag that matches, or change the policy.",
            expected=f"a tag matching refs.tag_pattern {tag_pattern!r}",
            found=f"tag {name!r}",
            remedy="use a tag that matches, or change the policy",
        )
