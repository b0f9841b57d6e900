"""``securehub lock SPEC -e ENTRYPOINT``: run entrypoints in the sandbox and pin what they fetch.

The entrypoint runs exactly as a load would (same sandbox, same broker
checks on hosts, sizes, formats and pickle scans, example inputs and export
when the policy's strategies include it), except that artifacts not yet in
the lock are admitted so they can be recorded. Every artifact URL the
entrypoint fetched is recorded with its sha256 and size, and the list is
stored per entrypoint, with the arguments used and any example input shapes.

Output pinning (SPEC section 4): the entrypoint runs **twice**; the
canonical digests of both outputs (:mod:`securehub._state_digest`) must be
equal, and are recorded under ``outputs[args_sha256]``. Two runs that differ
(a hubconf that reads the clock, the environment or ``os.urandom``) are
``output-mismatch`` naming the first differing tensor, and nothing is pinned:
a load could never be checked against such an entry.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securehub._broker import ArtifactBroker
from securehub._context import Context
from securehub._digest import args_sha256
from securehub._state_digest import OutputDigests, file_output, first_difference
from securehub.errors import NotLocked, OutputMismatch, UsageError
from securehub.lockfile import (
    DTYPE_BYTES,
    DTYPES,
    EntrypointEntry,
    InputSpec,
    Lockfile,
    OutputPin,
    example_inputs_total_problem,
)
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
    """Run each entrypoint of each repo in the sandbox and record its artifacts and output into ``lock``.

    Entrypoints already recorded are kept unless ``upgrade``. Each one runs
    twice and its output is pinned under ``outputs[args_sha256]`` only when
    both runs agree (``OutputMismatch`` otherwise). Raises what a load would
    raise (sandbox, broker and entrypoint errors); nothing is recorded for a
    repo whose entrypoint failed.
    """
    inputs = tuple(parse_example_input(t) for t in example_inputs) or None
    total = example_inputs_total_problem([math.prod(i.shape) * DTYPE_BYTES[i.dtype] for i in inputs or ()])
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
            # Output pinning: two runs, and their outputs must agree before anything is recorded. The
            # second run sees the first one's artifacts as pinned: served from the verified cache, and
            # a different byte would be hash-mismatch rather than a silent second download.
            runs: list[_Run] = []
            for _ in range(2):
                runs.append(_run_once(ctx, lock, tree.path, name, args, inputs))
                for url, art in runs[-1].broker.lock_entries().items():
                    if lock.artifact(url) is None:
                        lock = lock.with_artifact(url, art)
            pin = _reproducible(spec_key, name, args, runs)
            urls = tuple(sorted({f.url for run in runs for f in run.broker.fetched}))
            lock = lock.with_entrypoint(
                spec_key,
                name,
                EntrypointEntry(
                    artifacts=urls,
                    example_inputs=inputs,
                    args=dict(args) or None,
                    outputs={args_sha256((), dict(args)): pin},
                ),
            )
            entry = lock.repo(spec_key) or entry
    return lock


@dataclass(frozen=True)
class _Run:
    """One sandbox run of an entrypoint under ``lock -e``: what it fetched and what it produced."""

    broker: ArtifactBroker
    digests: OutputDigests
    #: Canonical per-tensor lines of the state (to name the first tensor two runs disagree on).
    lines: Mapping[str, bytes]


def _run_once(
    ctx: Context,
    lock: Lockfile,
    tree: Path,
    name: str,
    args: Mapping[str, Any],
    inputs: Sequence[InputSpec] | None,
) -> _Run:
    """Run ``name`` in the sandbox as a load would (example inputs, export when the policy allows it)."""
    from securehub.api import example_tensors, nested_loader, sandbox_config
    from securehub.sandbox.session import run_in_sandbox

    # Nested torch.hub.load calls are answered under the lock as it stands now (so repos
    # pinned earlier in this same command count); their own artifacts must already be locked.
    now = dataclasses.replace(ctx, lock=lock)
    broker = ArtifactBroker(now, allow_unlocked=True)
    tensors = example_tensors(inputs) if inputs else None
    with tempfile.TemporaryDirectory(prefix="lock-", dir=ctx.cache.tmp_dir()) as out:
        result = run_in_sandbox(
            "load",
            tree,
            name,
            (),
            dict(args),
            config=sandbox_config(ctx.policy),
            broker=broker,
            example_inputs=tensors,
            want_export=tensors is not None and "export" in ctx.policy.reconstruct.strategies,
            out_dir=Path(out),
            nested=nested_loader(now),
        )
        assert result.state_path is not None  # noqa: S101 - run_in_sandbox guarantees it for "load"
        digests, lines = file_output(result.state_path, result.config, result.export)
    return _Run(broker, digests, lines)


def _reproducible(spec_key: str, name: str, args: Mapping[str, Any], runs: Sequence[_Run]) -> OutputPin:
    """The pin when every run produced the same output; ``OutputMismatch`` naming what differed otherwise."""
    first = runs[0]
    for other in runs[1:]:
        if other.digests == first.digests:
            continue
        if other.digests.state_sha256 != first.digests.state_sha256:
            what = f"state (first differing tensor: {first_difference(first.lines, other.lines)})"
        elif other.digests.config_sha256 != first.digests.config_sha256:
            what = "config (the module tree or its recorded construction)"
        else:
            what = "exported program"
        shown = ", ".join(f"--arg {k}={v!r}" for k, v in sorted(args.items())) or "its default arguments"
        raise OutputMismatch(
            f"{spec_key} entrypoint {name!r} with {shown} is not reproducible: two runs gave different {what}; "
            "nothing was pinned and hub.lock is unchanged. Its output depends on something besides the pinned "
            "code, arguments and artifacts (the clock, the environment, os.urandom); make it deterministic, "
            "then run `securehub lock` again"
        )
    d = first.digests
    return OutputPin(d.state_sha256, d.config_sha256, d.program_sha256)

