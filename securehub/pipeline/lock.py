"""``securehub lock``: pin repos in hub.lock, and check a lock for drift (SPEC sections 4 and 10).

Locking resolves each spec's ref under the policy, fetches the commit's tree
into the cache (so the recorded ``tree_sha256`` is of bytes we actually
exported and checked) and writes the lock canonically. Checking re-resolves
every ref and compares commit SHAs, never names: a moved branch is drift, a
re-pointed tag is *critical* drift. ``check`` never writes the lock; it only
adds verified trees to the cache when a pinned tree is not cached yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from securehub.audit.log import AuditRecord, append, outcome_for_code
from securehub.config.lockfile import ArtifactEntry, Lockfile, RepoEntry
from securehub.errors import (
    HashMismatch,
    LockInvalid,
    RefNotFound,
    RepoNotAllowed,
    SecureHubError,
    UsageError,
)
from securehub.pipeline.broker import ArtifactBroker
from securehub.pipeline.context import Context, LockArg, PolicyArg, hub_lock_mutex, load_context, policy_ref
from securehub.pipeline.tree import cached_tree, pinned_spec, resolve_under_policy
from securehub.resolve.refs import check_ref_syntax
from securehub.resolve.spec import RepoSpec, looks_like_directory, parse_spec
from securehub.trust.tree import check_remote_matches, check_repo_allowed

__all__ = ["Drift", "LockOutcome", "check_lock", "lock_repos"]


@dataclass(frozen=True)
class LockOutcome:
    """What ``lock_repos`` did: the lock written (or unchanged) and per-spec actions."""

    lock: Lockfile
    path: str
    changed: bool
    actions: tuple[tuple[str, str], ...]  # (spec key or URL, "added" | "kept" | "upgraded" | "unchanged")
    signature_dropped: bool
    #: The lock file did not exist before this call (only ``securehub lock`` creates one).
    created: bool = False


@dataclass(frozen=True)
class Drift:
    """One finding of ``check_lock``. ``critical`` for a re-pointed tag or a digest mismatch."""

    key: str
    code: str
    message: str
    critical: bool


def _audit_lock(
    ctx: Context,
    key: str,
    entry: RepoEntry | None,
    code: str | None,
    *,
    entrypoint: str | None = None,
    artifacts: Sequence[Mapping[str, str]] = (),
) -> None:
    append(
        AuditRecord(
            action="lock",
            outcome=outcome_for_code(code),
            spec=key,
            ref=entry.ref if entry else None,
            commit=entry.commit if entry else None,
            tree_sha256=entry.tree_sha256 if entry else None,
            entrypoint=entrypoint,
            artifacts=artifacts,
            policy=policy_ref(ctx.policy),
            code=code,
        )
    )


def _audit_locked_entrypoints(ctx: Context, lock: Lockfile, key: str, entrypoints: Sequence[str]) -> None:
    """One ``lock`` line per pinned entrypoint, naming it and the artifacts (url, sha256) it pinned."""
    entry = lock.repo(parse_spec(key).key)
    for name in entrypoints:
        ep = entry.entrypoints.get(name) if entry is not None else None
        urls = ep.artifacts if ep is not None else ()
        pinned = [{"url": url, "sha256": art.sha256} for url in urls if (art := lock.artifact(url)) is not None]
        _audit_lock(ctx, key, entry, None, entrypoint=name, artifacts=pinned)


def lock_repos(
    specs: Sequence[str],
    *,
    entrypoints: Sequence[str] = (),
    args: Mapping[str, Any] | None = None,
    policy: PolicyArg = None,
    lock: LockArg = None,
    upgrade: bool = False,
    example_inputs: Sequence[str] = (),
    urls: Mapping[str, str | None] | None = None,
) -> LockOutcome:
    """Pin ``specs`` (all specs already in the lock when empty) and save the lock.

    Entries already in the lock are kept unless ``upgrade``. With
    ``entrypoints``, those entrypoints are also run in the sandbox and the
    artifacts they fetch recorded. ``urls`` maps bare artifact URLs to an
    optional expected sha256: each is downloaded through the same checks as a
    load, digested, compared with the expected digest, and recorded in
    ``artifacts`` (with only ``urls`` and no ``specs``, no repo is touched).
    Any change drops an existing signature (re-sign with ``securehub
    sign``). Raises the resolver's and fetcher's errors; nothing is written
    when anything fails. ``UsageError`` for impossible combinations.
    """
    bare = dict(urls or {})
    _check_lock_request(specs, entrypoints, example_inputs, bare)
    ctx = load_context(policy, lock, for_writing=True)
    assert ctx.lock_path is not None  # noqa: S101 - for_writing always yields a path
    current = ctx.lock
    keys = list(specs) or ([] if bare else sorted(current.repos))
    if not keys and not bare:
        raise UsageError("nothing to lock: give at least one SPEC or --url (hub.lock has no entries yet)")
    actions: list[tuple[str, str]] = []
    for key in keys:
        try:
            current, action = _lock_one(ctx, current, key, upgrade=upgrade)
        except SecureHubError as err:
            _audit_lock(ctx, key, None, err.code)
            raise
        actions.append((key, action))
    if entrypoints:
        from securehub.pipeline.lock_entrypoints import lock_entrypoints  # noqa: PLC0415 - lazy: lock_entrypoints imports torch and the sandbox; `lock` without -e needs neither.

        try:
            current = lock_entrypoints(
                ctx, current, keys, entrypoints, dict(args or {}), example_inputs=example_inputs, upgrade=upgrade
            )
        except SecureHubError as err:
            for key in keys:
                _audit_lock(ctx, key, None, err.code)
            raise
    for url, expected in sorted(bare.items()):
        try:
            current, action = _lock_url(ctx, current, url, expected, upgrade=upgrade)
        except SecureHubError as err:
            _audit_lock(ctx, url, None, err.code)
            raise
        actions.append((url, action))
    unchanged = ctx.lock_exists and current.canonical_unsigned_bytes() == ctx.lock.canonical_unsigned_bytes()
    # Unchanged: keep the existing bytes and signature (re-locking is idempotent).
    current = ctx.lock if unchanged else _save_rebased(ctx, current)
    # Success is audited only once the lock is saved: a run that fails part-way wrote nothing,
    # and its audit trail is the one refused/error line of the spec that failed.
    for key, _action in actions:
        if key in bare:
            art = current.artifact(key)
            _audit_lock(ctx, key, None, None, artifacts=[{"url": key, "sha256": art.sha256}] if art else [])
            continue
        _audit_lock(ctx, key, current.repo(parse_spec(key).key), None)
        if entrypoints:
            _audit_locked_entrypoints(ctx, current, key, entrypoints)
    dropped = ctx.lock.signature is not None and current.signature is None
    changed = not unchanged
    return LockOutcome(current, str(ctx.lock_path), changed, tuple(actions), dropped, created=not ctx.lock_exists)


def _save_rebased(ctx: Context, ours: Lockfile) -> Lockfile:
    """Save what this run changed (``ctx.lock`` -> ``ours``) onto hub.lock as it is *now*; return that.

    Locking takes seconds to minutes (fetches, sandbox runs), and loads under ``lock.mode: auto``
    may record entries into the same file meanwhile. Writing ``ours`` as computed would drop them
    (a lost update); so under the same mutex those loads use, the file is re-read and only this
    run's changed repo and artifact entries are applied onto it. The result is unsigned (any
    change drops the signature) and written atomically.
    """
    assert ctx.lock_path is not None  # noqa: S101 - lock_repos loads the context for writing
    with hub_lock_mutex(ctx, ctx.lock_path):
        merged = Lockfile.load(ctx.lock_path) if ctx.lock_path.exists() else Lockfile.empty()
        for key, entry in ours.repos.items():
            if ctx.lock.repo(key) != entry:
                merged = merged.with_repo(key, entry)
        for url, art in ours.artifacts.items():
            if ctx.lock.artifact(url) != art:
                merged = merged.with_artifact(url, art)
        merged = merged.without_signature()  # the old signature no longer covers the content
        merged.save(ctx.lock_path)
    return merged


def _check_lock_request(
    specs: Sequence[str], entrypoints: Sequence[str], example_inputs: Sequence[str], urls: Mapping[str, str | None]
) -> None:
    """Refuse impossible combinations before any network access (``UsageError``)."""
    if example_inputs and not entrypoints:
        raise UsageError("--example-input records inputs for an entrypoint: give it together with -e ENTRYPOINT")
    if entrypoints and urls and not specs:
        raise UsageError("-e ENTRYPOINT needs the SPEC of the repo that defines it (--url pins a bare artifact)")
    for url, digest in urls.items():
        scheme = urlsplit(url).scheme
        if scheme not in ("https", "http") or not urlsplit(url).hostname:
            raise UsageError(f"--url expects an http(s) URL, found {url!r}")
        if digest is not None and not _is_hex64(digest):
            raise UsageError(f"--sha256 expects 64 hex digits, found {digest!r}")


def _is_hex64(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def _lock_url(ctx: Context, lock: Lockfile, url: str, expected: str | None, *, upgrade: bool) -> tuple[Lockfile, str]:
    """Download ``url`` through the broker (hosts, size cap, format, pickle scan), digest it, record it.

    An entry already in the lock is enforced (the download must match it, and
    ``expected`` must agree with it) and kept, unless ``upgrade``: then the URL
    is fetched as if unpinned (every other check still applies, including the
    file name's hash prefix and ``expected``) and the entry replaced. That is
    how a wrong pin is repaired (audit reports one whose digest contradicts
    the hash prefix of its file name).
    """
    existing = lock.artifact(url)
    if upgrade and existing is not None:
        unpinned = {u: a for u, a in ctx.lock.artifacts.items() if u != url}
        ctx = dataclasses.replace(ctx, lock=dataclasses.replace(ctx.lock, artifacts=unpinned))
    broker = ArtifactBroker(ctx, allow_unlocked=True)
    fetched = broker.fetch(url, sha256=expected, require_checkpoint=False)
    entry = ArtifactEntry(sha256=fetched.sha256, size=fetched.size)
    if existing is None:
        return lock.with_artifact(url, entry), "added"
    if not upgrade:
        return lock, "kept"
    return (lock, "unchanged") if existing == entry else (lock.with_artifact(url, entry), "upgraded")


def _lock_spec(key: str) -> RepoSpec:
    """``key`` parsed as a remote. A directory (``securehub lock ./my-checkout``) is refused saying that it
    cannot be locked at all: ``parse_spec``'s own advice, ``source='local'``, does not apply to a lock."""
    try:
        spec = parse_spec(key)
    except RepoNotAllowed:
        if not looks_like_directory(key):
            raise
        spec = None
    if spec is None or spec.kind == "local":
        raise RepoNotAllowed(
            f"{key!r} is a local directory; hub.lock pins git commits, so a directory is never locked. Push "
            "the checkout (its commits, not uncommitted edits) to a git remote and lock that "
            "(owner/repo:tag or git+https://...@tag), or load the directory unlocked with source='local' "
            "(CLI: --source local; the strict policy refuses local sources)."
        ) from None
    return spec


def _lock_one(ctx: Context, lock: Lockfile, key: str, *, upgrade: bool) -> tuple[Lockfile, str]:
    spec = _lock_spec(key)
    check_repo_allowed(spec, ctx.policy)
    existing = lock.repo(spec.key)
    if existing is not None and not upgrade:
        return lock, "kept"
    resolved = resolve_under_policy(spec, ctx.policy)
    tree = cached_tree(ctx, spec.remote, resolved.commit, expected_tree_sha256=None)
    entry = RepoEntry(
        remote=spec.remote,
        ref=resolved.ref,
        ref_type=resolved.ref_type,
        commit=resolved.commit,
        tree_sha256=tree.tree_sha256,
        entrypoints=existing.entrypoints if existing is not None and existing.commit == resolved.commit else {},
    )
    if existing is not None and existing == entry:
        return lock, "unchanged"
    return lock.with_repo(spec.key, entry), ("upgraded" if existing is not None else "added")


def check_lock(
    specs: Sequence[str] = (), *, policy: PolicyArg = None, lock: LockArg = None, fetch_uncached: bool = True
) -> list[Drift]:
    """Everything that no longer matches the lock; never writes the lock.

    A spec missing from the lock, a ref that moved (critical for tags), a ref
    that disappeared, a remote that changed, and a tree whose digest differs
    from the lock are each one :class:`Drift`. The tree is the cached copy, or,
    when nothing is cached, the pinned commit fetched into the cache (verified
    before it is admitted), so a cold cache does not make the check vacuous;
    ``fetch_uncached=False`` skips uncached trees instead (no fetch). A missing or
    unparseable lock raises ``LockInvalid``.
    """
    ctx = load_context(policy, lock)
    if not ctx.lock_exists:
        raise LockInvalid(
            "no hub.lock to check (looked at --lock, SECUREHUB_LOCK and ./hub.lock); "
            "create one with `securehub lock SPEC`."
        )
    keys = list(specs) or sorted(ctx.lock.repos)
    return [d for key in keys for d in _check_one(ctx, key, fetch_uncached=fetch_uncached)]


def _check_one(ctx: Context, key: str, *, fetch_uncached: bool) -> list[Drift]:
    spec = parse_spec(key)
    entry = ctx.lock.repo(spec.key)
    if entry is None:
        return [Drift(key, "lock-drift", f"{key}: not in hub.lock; run `securehub lock {key}`", False)]
    try:
        check_remote_matches(spec, entry)
        check_repo_allowed(spec, ctx.policy)
    except SecureHubError as err:
        return [Drift(key, err.code, err.message, False)]
    drifts: list[Drift] = []
    is_tag = entry.ref_type == "tag"
    try:
        current = resolve_under_policy(pinned_spec(spec, entry), ctx.policy)
    except RefNotFound:
        drifts.append(
            Drift(
                key,
                "lock-drift",
                f"{'critical: ' if is_tag else ''}{key}: the {entry.ref_type} {entry.ref!r} pinned at "
                f"{entry.commit} no longer exists on {entry.remote}; ask the publisher why, then pin a ref that "
                "exists with `securehub lock SPEC` (and remove this entry from hub.lock)",
                is_tag,
            )
        )
    except SecureHubError as err:
        drifts.append(Drift(key, err.code, f"{key}: {err.message}", False))
    else:
        if current.shadowed_by is not None and spec.ref is not None and check_ref_syntax(spec.ref)[1] is None:
            # Only a bare name written by the user: ``tags/x`` chose its kind, and no ref follows HEAD.
            drifts.append(
                Drift(
                    key,
                    "lock-drift",
                    f"{key}: {current.shadowed_by} {entry.ref!r} now exists next to the locked {entry.ref_type} "
                    f"{entry.ref!r}: loads keep the pinned commit {entry.commit}, but the bare name is now "
                    f"ambiguous (torch.hub and a new `securehub lock` of {key} cannot tell which is meant). A "
                    f"{current.shadowed_by} named like a release {entry.ref_type} is a known way to confuse "
                    f"users: ask the publisher to remove it, or write {spec.key[: len(spec.key) - len(spec.ref)]}"
                    f"{'tags' if entry.ref_type == 'tag' else 'heads'}/{entry.ref} in your specs",
                    False,
                )
            )
        if current.commit != entry.commit:
            what = "tag re-pointed" if is_tag else "branch moved"
            drifts.append(
                Drift(
                    key,
                    "lock-drift",
                    f"{'critical: ' if is_tag else ''}{key}: {what}: {entry.ref_type} {entry.ref!r} now points at "
                    f"{current.commit}, hub.lock pins {entry.commit}"
                    + (
                        " (a tag that moves after release is a supply-chain red flag): ask the publisher why "
                        "before trusting the new commit; only after review re-pin it with "
                        f"`securehub lock --upgrade {key}`"
                        if is_tag
                        else f"; review the new commit, then re-pin it with `securehub lock --upgrade {key}`"
                    ),
                    is_tag,
                )
            )
    try:
        cached = ctx.cache.verify_cached_tree(entry.remote, entry.commit, entry.tree_sha256)
        if not cached and not drifts and fetch_uncached:
            # A cold cache (a fresh CI runner) must not make the check vacuous: fetch the pinned
            # commit and compare its tree with the lock. Only verified content enters the cache.
            cached_tree(ctx, entry.remote, entry.commit, expected_tree_sha256=entry.tree_sha256)
    except HashMismatch as err:
        drifts.append(Drift(key, err.code, f"critical: {key}: {err.message}", True))
    except SecureHubError as err:
        drifts.append(Drift(key, err.code, f"{key}: {err.message}", False))
    return drifts
