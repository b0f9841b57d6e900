"""``lock.mode: auto``: record new repos and artifacts into the lock file in use (SPEC section 8).

Entries already in the lock are enforced elsewhere and never changed here.
Recording happens only into a lock file that exists (given, ``SECUREHUB_LOCK``
or ``./hub.lock``) -- only ``securehub lock`` creates one (SPEC section 2) --
under a file lock so concurrent loads merge rather than overwrite. Callers
record only after the whole operation succeeded (every check passed and the
module was rebuilt), so a failed operation leaves hub.lock byte-identical.
A lock the policy requires to be signed is never modified (that would
invalidate the signature and break the next load); the operation still
succeeds and a warning says what was not recorded.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence

from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, InputSpec, Lockfile, OutputPin, RepoEntry
from securehub.pipeline.broker import Fetched
from securehub.pipeline.context import Context, hub_lock_mutex
from securehub.pipeline.tree import VerifiedTree

_Change = Callable[[Lockfile], Lockfile]


def record(
    ctx: Context,
    tree: VerifiedTree,
    entrypoint: str | None,
    fetched: Sequence[Fetched],
    *,
    example_inputs: tuple[InputSpec, ...] | None = None,
    output: tuple[str, OutputPin] | None = None,
) -> None:
    """Record the repo (if new), the artifacts fetched (if new) and the entrypoint's entry (if new).

    A new entrypoint entry lists its artifacts and, when ``example_inputs="auto"``
    found some, those example inputs; an existing entry's artifacts and inputs are never changed.
    ``output``: ``(args_sha256, pin)`` of an output no entry pins yet (``lock.outputs: verify``); added
    to the entrypoint's ``outputs`` if that argument set is still unpinned (a pin is never replaced).
    """

    def change(lock: Lockfile) -> Lockfile:
        lock = _with_artifacts(lock, fetched)
        if tree.commit is None or tree.ref is None or tree.ref_type not in ("branch", "tag"):
            return lock  # a local directory: nothing to pin
        entry = lock.repo(tree.spec.key)
        if entry is None:
            entry = RepoEntry(
                remote=tree.spec.remote,
                ref=tree.ref,
                ref_type="tag" if tree.ref_type == "tag" else "branch",
                commit=tree.commit,
                tree_sha256=tree.tree_sha256,
            )
            lock = lock.with_repo(tree.spec.key, entry)
        if entrypoint is not None and entrypoint not in entry.entrypoints and entry.commit == tree.commit:
            urls = tuple(sorted({f.url for f in fetched}))
            lock = lock.with_entrypoint(
                tree.spec.key, entrypoint, EntrypointEntry(artifacts=urls, example_inputs=example_inputs)
            )
            entry = lock.repo(tree.spec.key) or entry
        ep = entry.entrypoints.get(entrypoint) if entrypoint is not None else None
        if output is not None and ep is not None and entry.commit == tree.commit and ep.output(output[0]) is None:
            assert entrypoint is not None  # noqa: S101 - ep exists only for a named entrypoint
            lock = lock.with_entrypoint(tree.spec.key, entrypoint, ep.with_output(*output))
        return lock

    _apply(ctx, change)


def record_artifacts(ctx: Context, fetched: Sequence[Fetched]) -> None:
    """Record new artifacts (``load_state_dict_from_url``, ``download_url_to_file``)."""
    _apply(ctx, lambda lock: _with_artifacts(lock, fetched))


def _with_artifacts(lock: Lockfile, fetched: Sequence[Fetched]) -> Lockfile:
    for f in fetched:
        if lock.artifact(f.url) is None:
            lock = lock.with_artifact(f.url, ArtifactEntry(sha256=f.sha256, size=f.size))
    return lock


def _apply(ctx: Context, change: _Change) -> None:
    path = ctx.lock_path
    if ctx.policy.lock.mode != "auto" or path is None:
        return
    if change(ctx.lock).canonical_unsigned_bytes() == ctx.lock.canonical_unsigned_bytes():
        return  # nothing new
    if ctx.policy.signatures.trusted_keys:
        print(
            f"securehub: warning: new entries were not recorded into {path}: the policy requires a signed lock; "
            "run `securehub lock SPEC` and `securehub sign --key PRIVATE_KEY` to pin them",
            file=sys.stderr,
        )
        return
    with hub_lock_mutex(ctx, path):
        if not path.exists():
            # SPEC section 2: a lock path that does not exist is never created, except by `securehub lock`.
            print(
                f"securehub: note: new entries were not recorded: {path} does not exist "
                f"(create it with `securehub lock SPEC --lock {shlex.quote(str(path))}`)",
                file=sys.stderr,
            )
            return
        current = Lockfile.load(path)
        updated = change(current)
        if updated.canonical_unsigned_bytes() != current.canonical_unsigned_bytes():
            updated.save(path)
