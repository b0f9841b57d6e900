"""``securehub lock SPEC -e ENTRYPOINT``: run entrypoints in the sandbox and pin what they fetch.

The entrypoint runs exactly as a load would (same sandbox, same broker
checks on hosts, sizes, formats and pickle scans), except that artifacts not
yet in the lock are admitted so they can be recorded. Every artifact URL the
entrypoint fetched is recorded with its sha256 and size, and the list is
stored per entrypoint, with the arguments used and any example input shapes
(given as ``--example-input 1x3x224x224:float32``, or found by the sandbox
child with ``--example-input auto`` and checked like given ones).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from securehub._broker import ArtifactBroker
from securehub._context import Context
from securehub.errors import NotLocked, ReconstructRefused, UsageError
from securehub.lockfile import DTYPES, EntrypointEntry, InputSpec, Lockfile, example_inputs_total_problem
from securehub.resolve.spec import parse_spec


def parse_example_input(text: str) -> InputSpec:
    """``1x3x224x224:float32`` -> ``InputSpec((1, 3, 224, 224), "float32")``; ``UsageError`` when malformed."""
    shape_text, sep, dtype = text.partition(":")
    dtype = dtype or "float32"
    try:
        shape = tuple(int(d) for d in shape_text.split("x"))
    except ValueError:
        raise UsageError(f"--example-input {text!r}: expected DIMxDIM...[:dtype], e.g. 1x3x224x224:float32") from None
    if not sep and ":" in text:
        raise UsageError(f"--example-input {text!r}: expected DIMxDIM...[:dtype]")
    if dtype not in DTYPES or any(d < 0 for d in shape):
        raise UsageError(f"--example-input {text!r}: dtype must be one of {sorted(DTYPES)} and dims >= 0")
    try:
        return InputSpec(shape=shape, dtype=dtype)
    except ValueError as err:  # the lock's own bounds (elements, bytes), checked before anything is allocated
        raise UsageError(f"--example-input {text!r}: {err}") from None


def _wants_auto(example_inputs: Sequence[str]) -> bool:
    """``--example-input auto`` (alone): the sandbox child finds the inputs; ``UsageError`` when mixed."""
    if "auto" not in example_inputs:
        return False
    if len(example_inputs) != 1:
        raise UsageError("--example-input auto finds every input itself: give it alone, not with explicit shapes")
    return True


def _found_or_refuse(key: str, name: str, found: tuple[InputSpec, ...] | None) -> tuple[InputSpec, ...]:
    """The inputs the child found (already bounds-checked by the session), or ``reconstruct-refused``."""
    if found is None:
        raise ReconstructRefused(
            f"{key} {name}: --example-input auto expected to find example inputs the model accepts, found none "
            "(the model's hints, its first layers and the fixed candidates all failed a forward pass or the "
            "export); nothing was recorded. Give the shapes yourself: --example-input 1x3x224x224:float32"
        )
    return found


def lock_entrypoints(
    ctx: Context,
    lock: Lockfile,
    keys: Sequence[str],
    entrypoints: Sequence[str],
    args: Mapping[str, Any],
    *,
    example_inputs: Sequence[str] = (),
    upgrade: bool,
) -> Lockfile:
    """Run each entrypoint of each repo in the sandbox and record its artifacts into ``lock``.

    Entrypoints already recorded are kept unless ``upgrade``. Raises what a
    load would raise (sandbox, broker and entrypoint errors); nothing is
    recorded for a repo whose entrypoint failed. ``example_inputs == ["auto"]``:
    the child searches for inputs (and checks they export when the policy
    allows ``export``); ``reconstruct-refused`` when it finds none.
    """
    from securehub.api import nested_loader, sandbox_config
    from securehub.sandbox.session import run_in_sandbox

    auto = _wants_auto(example_inputs)
    inputs = None if auto else tuple(parse_example_input(t) for t in example_inputs) or None
    total = example_inputs_total_problem([i.nbytes for i in inputs or ()])
    if total:  # the lock parser would refuse the entry later; refuse before anything runs
        raise UsageError(f"--example-input: {total}")
    for key in keys:
        spec_key = parse_spec(key).key
        entry = lock.repo(spec_key)
        if entry is None:  # lock_repos always pins the repo first
            raise NotLocked(f"{key}: not pinned in hub.lock; cannot lock its entrypoints")
        tree = ctx.cache.get_tree(
            entry.remote,
            entry.commit,
            expected_tree_sha256=entry.tree_sha256,
            max_files=ctx.policy.repos.max_files,
            max_bytes=ctx.policy.repos.max_tree_bytes,
        )
        for name in entrypoints:
            if name in entry.entrypoints and not upgrade:
                continue
            # Nested torch.hub.load calls are answered under the lock as it stands now (so repos
            # pinned earlier in this same command count); their own artifacts must already be locked.
            now = dataclasses.replace(ctx, lock=lock)
            broker = ArtifactBroker(now, allow_unlocked=True)
            with tempfile.TemporaryDirectory(prefix="lock-", dir=ctx.cache.tmp_dir()) as out:
                result = run_in_sandbox(
                    "load",
                    tree.path,
                    name,
                    (),
                    dict(args),
                    config=sandbox_config(ctx.policy),
                    broker=broker,
                    out_dir=Path(out),
                    nested=nested_loader(now),
                    find_inputs="auto" if auto else "off",
                    want_export=auto and "export" in ctx.policy.reconstruct.strategies,
                )
            found = _found_or_refuse(key, name, result.found_inputs) if auto else inputs
            for url, art in broker.lock_entries().items():
                if lock.artifact(url) is None:
                    lock = lock.with_artifact(url, art)
            urls = tuple(sorted({f.url for f in broker.fetched}))
            lock = lock.with_entrypoint(
                spec_key,
                name,
                EntrypointEntry(artifacts=urls, example_inputs=found, args=dict(args) or None),
            )
            entry = lock.repo(spec_key) or entry
    return lock

