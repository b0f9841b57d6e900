"""``securehub audit --rerun``: run each pinned entrypoint again in the sandbox and compare with the lock.

hub.lock pins the code, the tree and the artifacts, but pinned code can still
change what it returns: a *time-bomb* hubconf (other weights after a date),
one that reads the environment or randomness, or a repository whose
behaviour drifts with an upstream it fetches. ``lock -e`` pinned the output
digests of each entrypoint's recorded argument set (SPEC section 4); this
re-runs exactly that (same arguments, same recorded example inputs, export
when the policy allows it) in the same sandbox a load uses and compares the
canonical digests (:mod:`securehub.pipeline.state_digest`). A difference is an
``output-mismatch`` problem; any refusal or failure of the run is reported
with its own SPEC section 9 code. Nothing is rebuilt, cached as a result,
recorded or written to hub.lock.

What may cross into the re-run is what a load of the locked entrypoint may
use, nothing more: the tree is the verified cached copy of the pinned commit
(fetched and verified against the lock first when it is not cached, unless
offline); the broker serves only the artifacts hub.lock records *for that
entrypoint*, each checked against its pinned digest (``not-locked`` for any
other URL, never ``allow_unlocked``). Offline (``--offline`` or
``SECUREHUB_OFFLINE=1``) nothing touches the network: an uncached tree or
artifact is an ``offline`` problem, and nested ``torch.hub.load`` calls are
refused (``entrypoint-error``) because a nested load could fetch.

Fail closed: an entrypoint that could not be re-run is a problem (error), not
a silent pass, so ``audit --rerun`` never exits 0 without having compared
every pinned output it was asked about.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from securehub._util.digest import args_sha256
from securehub.config.lockfile import EntrypointEntry, OutputPin, RepoEntry
from securehub.errors import OutputMismatch, SecureHubError
from securehub.pipeline.broker import ArtifactBroker
from securehub.pipeline.context import Context
from securehub.pipeline.sandbox_config import sandbox_config
from securehub.pipeline.sandbox_run import nested_loader
from securehub.pipeline.state_digest import OutputDigests, file_digests
from securehub.pipeline.tree import cached_tree
from securehub.sandbox.example_inputs import example_tensors
from securehub.sandbox.parent.session import run_in_sandbox
from securehub.trust.result import OutputGuard

if TYPE_CHECKING:
    import torch

__all__ = ["RerunProblem", "rerun_repo"]


@dataclass(frozen=True)
class RerunProblem:
    """One problem a re-run found: a SPEC section 9 ``code``, its severity and one message line."""

    code: str
    severity: Literal["critical", "error", "warning"]
    message: str


def rerun_repo(ctx: Context, key: str, entry: RepoEntry, *, offline: bool, tree_cached: bool) -> list[RerunProblem]:
    """Re-run every entrypoint of ``key`` whose recorded argument set has a pinned output.

    ``tree_cached``: the audit has just re-verified a cached copy of the
    pinned tree. Returns the problems found (empty: every pinned output was
    reproduced bit for bit). Entrypoints without a pin for their recorded
    arguments are skipped (the audit reports them under ``lock.outputs:
    required``; otherwise there is nothing to compare with). Outputs pinned for
    any *other* argument set (``lock.mode: auto`` loads) are keyed by their
    ``args_sha256`` only: the arguments are not in hub.lock, so they cannot be
    replayed, and each is reported as a ``not-locked`` warning (never a silent pass).
    """
    unreplayable = [_unreplayable(key, name, ep, digest) for name, ep in sorted(entry.entrypoints.items())
                    for digest in sorted(ep.outputs) if digest != _args_digest(ep)]  # fmt: skip
    pinned = {name: ep for name, ep in sorted(entry.entrypoints.items()) if _pin(ep) is not None}
    if not pinned:
        return unreplayable
    return unreplayable + _rerun_pinned(ctx, key, entry, pinned, offline=offline, tree_cached=tree_cached)


def _unreplayable(key: str, name: str, ep: EntrypointEntry, digest: str) -> RerunProblem:
    """A pinned output ``--rerun`` cannot replay: hub.lock has its args digest, not its arguments."""
    recorded = " ".join(f"--arg {k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted((ep.args or {}).items()))
    return RerunProblem(
        "not-locked",
        "warning",
        f"{key} entrypoint {name!r}: --rerun expected the arguments of every pinned output, found an output "
        f"pinned for args_sha256 {digest} (by a `lock.mode: auto` load, or `lock -e` with another argument "
        f"set) whose arguments hub.lock does not record (only {name!r}'s `args` ({recorded or 'defaults'}) are "
        "recorded), so it was pinned but not re-run: loads with those arguments are still checked against the "
        "pin. The audit log's args_sha256 names those loads; to have it re-run, lock that argument set as the "
        f"entrypoint's recorded one (`securehub lock {key} -e {name} --upgrade`, with one `--arg` per argument; "
        "the entrypoint's other pins are then dropped)",
    )


def _rerun_pinned(
    ctx: Context, key: str, entry: RepoEntry, pinned: dict[str, EntrypointEntry], *, offline: bool, tree_cached: bool
) -> list[RerunProblem]:
    """Re-run the entrypoints in ``pinned`` (each with its recorded arguments) in the pinned tree."""
    if offline and not tree_cached:
        return [
            RerunProblem(
                "offline",
                "error",
                f"{key}: --rerun expected the pinned tree {entry.tree_sha256} in the verified cache (offline), "
                f"found none, so {', '.join(repr(n) for n in pinned)} could not be re-run; load or "
                "`securehub cache import` it first, or audit without --offline",
            )
        ]
    try:
        tree = cached_tree(ctx, entry.remote, entry.commit, expected_tree_sha256=entry.tree_sha256)
    except SecureHubError as err:
        return [RerunProblem(err.code, "error", f"{key}: --rerun could not get the pinned tree: {err.message}")]
    problems: list[RerunProblem] = []
    for name, ep in pinned.items():
        problem = _rerun_one(ctx, key, tree.path, name, ep, offline=offline)
        if problem is not None:
            problems.append(problem)
    return problems


def _pin(ep: EntrypointEntry) -> OutputPin | None:
    """The output pinned for the entrypoint's recorded argument set (the only one ``--rerun`` can replay)."""
    return ep.output(_args_digest(ep))


def _args_digest(ep: EntrypointEntry) -> str:
    return args_sha256((), dict(ep.args or {}))


def _rerun_one(
    ctx: Context, key: str, tree: Path, name: str, ep: EntrypointEntry, *, offline: bool
) -> RerunProblem | None:
    """Run ``name`` once as its lock entry records it; the problem found, or ``None`` when it matches."""
    pin = _pin(ep)
    assert pin is not None  # noqa: S101 - rerun_repo only passes pinned entrypoints
    inputs = example_tensors(ep.example_inputs) if ep.example_inputs else None
    export = inputs is not None and "export" in ctx.policy.reconstruct.strategies
    guard = OutputGuard(key, name, _args_digest(ep), pin=pin, check_program=export and pin.program_sha256 is not None)
    try:
        found = _run(ctx, tree, name, ep, inputs, export=export, offline=offline)
        guard.check(found)
    except OutputMismatch as err:
        # Same pinned code and inputs, other output: drift of behaviour (time bomb, environment,
        # randomness, or a child forging its result) - as serious as tampering with the tree.
        return RerunProblem(err.code, "critical", f"--rerun: {err.message}")
    except SecureHubError as err:
        return RerunProblem(err.code, "error", f"{key} entrypoint {name!r}: --rerun failed: {err.message}")
    return None


def _run(
    ctx: Context,
    tree: Path,
    name: str,
    ep: EntrypointEntry,
    inputs: tuple[torch.Tensor, ...] | None,
    *,
    export: bool,
    offline: bool,
) -> OutputDigests:
    """One sandbox run of ``name`` with its recorded arguments; the digests of what the child handed back.

    The digests are computed here from the very file the session admitted (never from anything the
    child reports about it), so a child that forges its serializer is compared by what it sent.
    """

    # Only this entrypoint's locked artifacts, each against its pinned digest (mix-and-match and
    # unlocked URLs are not-locked); offline: only verified cached blobs.
    broker = ArtifactBroker(ctx, entrypoint_urls=frozenset(ep.artifacts), entrypoint_name=name, offline=offline)
    with ctx.cache.temp_dir("rerun-") as out:  # flock-ed: a concurrent `cache prune` leaves it alone
        result = run_in_sandbox(
            "load",
            tree,
            name,
            (),
            dict(ep.args or {}),
            config=sandbox_config(ctx.policy),
            broker=broker,
            example_inputs=inputs,
            want_export=export,
            out_dir=Path(out),
            # A nested load may fetch trees and artifacts: refused offline (fail closed) rather than
            # letting --offline touch the network.
            nested=None if offline else nested_loader(ctx),
        )
        assert result.state_path is not None  # noqa: S101 - run_in_sandbox guarantees it for "load"
        return file_digests(result.state_path, result.config, result.export, tree=tree)
