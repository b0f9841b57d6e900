"""Running one operation's hubconf in the sandbox, for the parent: the tree, the broker, nested loads.

Shared by :mod:`securehub.pipeline.load`, :mod:`securehub.pipeline.query` and
``securehub lock -e``. Nothing here writes hub.lock: what ``lock.mode: auto``
would record is *queued* as :class:`LockRecord` values, and the operation
writes them with :func:`record_locks` as its last step, once every check
passed (a load that ends in ``reconstruct-refused`` leaves hub.lock
byte-identical).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from securehub._util.deadline import time_left
from securehub._util.digest import args_sha256
from securehub.config.lockfile import InputSpec, OutputPin
from securehub.errors import SecureHubError
from securehub.fetch.fetcher import GIT, Fetcher
from securehub.pipeline import autolock
from securehub.pipeline.audit_line import Audit, audited
from securehub.pipeline.broker import ArtifactBroker, Fetched
from securehub.pipeline.context import Context
from securehub.pipeline.output_guard import output_guard
from securehub.pipeline.sandbox_config import sandbox_config
from securehub.pipeline.state_digest import OutputDigests, file_digests
from securehub.pipeline.tree import VerifiedTree, local_snapshot, verified_tree
from securehub.resolve.spec import parse_spec
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.example_inputs import example_tensors
from securehub.sandbox.parent.handoff import Broker
from securehub.sandbox.parent.session import Nested, NestedAnswer, SandboxResult, run_in_sandbox
from securehub.sandbox.wire.messages import FindInputs, NestedRequest
from securehub.trust.result import OutputGuard

__all__ = [
    "LockRecord",
    "Op",
    "Runner",
    "locked_example_inputs",
    "nested_loader",
    "open_tree",
    "queue_output",
    "record_locks",
    "run_sandbox",
    "say",
    "tree_and_run",
]

#: The hubconf operations a pipeline runs in the sandbox (``convert`` has its own module).
Op = Literal["load", "list", "help"]


class Runner(Protocol):
    """What the pipeline needs from the sandbox: run one hubconf operation confined, return its checked output.

    :func:`securehub.sandbox.parent.session.run_in_sandbox` is the production
    runner. Pipeline unit tests pass an in-memory fake that returns a
    :class:`SandboxResult` (what the real child's output is after
    validation), so the order of load's steps is tested without a child
    process; the real sandbox stays covered by the integration and attack tests.
    """

    def __call__(
        self,
        op: Op,
        tree: Path | None,
        entrypoint: str | None,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        config: SandboxConfig,
        broker: Broker,
        example_inputs: Sequence[torch.Tensor] | None,
        want_export: bool,
        find_inputs: FindInputs,
        out_dir: Path,
        nested: Nested | None,
        nested_depth: int,
    ) -> SandboxResult: ...


def say(verbose: bool, text: str) -> None:
    """torch.hub's ``verbose``: one ``securehub:`` line on stderr."""
    if verbose:
        print(f"securehub: {text}", file=sys.stderr)


def _progress(verbose: bool) -> bool:
    return verbose and sys.stderr.isatty()


@dataclass(frozen=True)
class LockRecord:
    """One ``lock.mode: auto`` entry to write once the whole operation has succeeded."""

    tree: VerifiedTree
    entrypoint: str | None
    fetched: tuple[Fetched, ...]
    #: Inputs found by ``example_inputs="auto"`` (recorded with a new entrypoint entry), else ``None``.
    example_inputs: tuple[InputSpec, ...] | None = None
    #: ``(args_sha256, digests)`` of an unpinned output under ``lock.outputs: verify`` (output pinning).
    output: tuple[str, OutputPin] | None = None


def record_locks(ctx: Context, pending: Sequence[LockRecord]) -> None:
    """Write the queued auto-lock entries. Called last: a failed operation leaves hub.lock byte-identical."""
    for rec in pending:
        autolock.record(
            ctx, rec.tree, rec.entrypoint, rec.fetched, example_inputs=rec.example_inputs, output=rec.output
        )


def queue_output(pending: list[LockRecord], tree: VerifiedTree, guard: OutputGuard,
                 entrypoint: str, found: OutputDigests | None) -> None:  # fmt: skip
    """Queue an unpinned output's digests for ``lock.mode: auto`` (after the entrypoint's own record)."""
    recorded = guard.recorded(found) if found is not None else None
    if recorded is not None:
        pending.append(LockRecord(tree, entrypoint, (), output=recorded))


def locked_example_inputs(ctx: Context, repo_or_dir: str, model: str) -> tuple[torch.Tensor, ...] | None:
    """Deterministic example inputs from the shapes hub.lock records for the entrypoint, if any."""
    try:
        key = parse_spec(repo_or_dir).key
    except SecureHubError:
        return None
    entry = ctx.lock.repo(key)
    ep = entry.entrypoints.get(model) if entry else None
    if ep is None or not ep.example_inputs:
        return None
    return example_tensors(ep.example_inputs)


def open_tree(
    ctx: Context,
    audit: Audit,
    repo_or_dir: str,
    *,
    source: str,
    force_reload: bool,
    verbose: bool,
    stack: ExitStack,
    chosen_by_repo: bool = False,
    fetcher: Fetcher = GIT,
) -> VerifiedTree:
    """The verified tree (refs and trees from ``fetcher``); a local directory becomes a private copy of its
    digested files, which lives until ``stack`` closes (the sandbox must see nothing the digest excludes,
    e.g. ``.git``)."""
    tree = verified_tree(ctx, repo_or_dir, source=source, force_reload=force_reload, chosen_by_repo=chosen_by_repo,
                         fetcher=fetcher)  # fmt: skip
    audit.tree = tree
    where = f"commit {tree.commit} ({tree.ref_type} {tree.ref})" if tree.commit else f"local dir {tree.path}"
    say(verbose, f"{repo_or_dir}: {where}, tree_sha256 {tree.tree_sha256} verified")
    return stack.enter_context(local_snapshot(ctx, tree))


def run_sandbox(
    ctx: Context,
    audit: Audit,
    op: Op,
    tree: VerifiedTree,
    call: tuple[str | None, Sequence[Any], Mapping[str, Any]],
    *,
    verbose: bool,
    out_dir: Path,
    pending: list[LockRecord],
    example_inputs: Sequence[torch.Tensor] | None = None,
    nested_depth: int = 0,
    find_inputs: FindInputs = "off",
    runner: Runner = run_in_sandbox,
    fetcher: Fetcher = GIT,
    deadline: float | None = None,
) -> SandboxResult:
    """Run ``op`` (``call`` = entrypoint, args, kwargs) in the sandbox; queue (never write) what
    ``lock.mode: auto`` would record into ``pending``.

    ``deadline`` (``time.monotonic()``; a nested load: its requester's): the sandbox gets at most
    the time left until then, not the policy's whole ``timeout_s`` (``sandbox-timeout`` when none is left).

    Artifacts go through an :class:`ArtifactBroker` restricted to the
    entrypoint's locked URLs when hub.lock lists them. ``find_inputs``: see
    :data:`securehub.sandbox.wire.messages.FindInputs`; inputs an ``auto`` search
    found are queued with the entrypoint's lock record. ``runner``: the
    sandbox (see :class:`Runner`); nested loads go through the same one, and get their trees from
    ``fetcher``.
    """
    entrypoint, args, kwargs = call
    ep_entry = tree.entry.entrypoints.get(entrypoint) if tree.entry and op == "load" and entrypoint else None
    broker = ArtifactBroker(
        ctx,
        progress=_progress(verbose),
        entrypoint_urls=frozenset(ep_entry.artifacts) if ep_entry is not None else None,
        entrypoint_name=entrypoint,
    )
    audit.broker = broker
    config = sandbox_config(ctx.policy)
    left = time_left(deadline, f"the nested load of {entrypoint!r}")
    if left is not None and left < config.timeout_s:
        config = dataclasses.replace(config, timeout_s=left)
    # The entrypoint's locked blobs are re-verified while the child starts, not while it waits for them.
    with broker.checking_ahead(ep_entry.artifacts if ep_entry is not None else ()):
        result = runner(
            op,
            tree.path,
            entrypoint,
            args,
            kwargs,
            config=config,
            broker=broker,
            example_inputs=example_inputs,
            want_export=(example_inputs is not None or find_inputs == "auto")
            and "export" in ctx.policy.reconstruct.strategies,
            find_inputs=find_inputs,
            out_dir=out_dir,
            nested=nested_loader(ctx, pending, runner=runner, fetcher=fetcher) if op == "load" else None,
            nested_depth=nested_depth,
        )
    audit.isolation = result.isolation
    # Recorded only after the caller's last check passed (reconstruction included): a load that ends
    # in reconstruct-refused must not have pinned anything into the user's hub.lock.
    found = result.found_inputs if find_inputs == "auto" else None
    pending.append(LockRecord(tree, entrypoint if op == "load" else None, tuple(broker.fetched), found))
    return result


def tree_and_run(
    ctx: Context,
    audit: Audit,
    op: Op,
    repo_or_dir: str,
    call: tuple[str | None, Sequence[Any], Mapping[str, Any]],
    *,
    source: str,
    force_reload: bool,
    verbose: bool,
    out_dir: Path,
    pending: list[LockRecord],
    example_inputs: Sequence[torch.Tensor] | None = None,
) -> tuple[VerifiedTree, SandboxResult]:
    """:func:`open_tree` then :func:`run_sandbox`, the local snapshot released afterwards (list, help)."""
    with ExitStack() as stack:
        tree = open_tree(ctx, audit, repo_or_dir, source=source, force_reload=force_reload, verbose=verbose,
                         stack=stack)  # fmt: skip
        result = run_sandbox(ctx, audit, op, tree, call, verbose=verbose, out_dir=out_dir, pending=pending,
                             example_inputs=example_inputs)  # fmt: skip
    return tree, result


def nested_loader(
    ctx: Context, pending: list[LockRecord] | None = None, *, runner: Runner = run_in_sandbox, fetcher: Fetcher = GIT
) -> Nested:
    """Answer a hubconf's own ``torch.hub.load`` with the same resolver, lock, policy and sandbox.

    The request comes from sandboxed code: only its parsed, schema-checked
    fields are used, and none of them can reach this load's own parameters
    (policy, lock, example inputs). Its remote is the repository's choice, so
    an unlocked ``git+`` remote may reach public addresses only (SSRF). Each
    nested load writes its own audit line. What ``lock.mode: auto`` would
    record is queued into ``pending`` (written by the outermost load once it
    succeeded); with ``pending=None`` (``lock -e``) nothing is recorded.
    """
    queue: list[LockRecord] = pending if pending is not None else []

    def answer(request: NestedRequest, out_dir: Path) -> NestedAnswer:
        audit = Audit(
            "load",
            spec=request.repo_or_dir,
            entrypoint=request.model,
            args_digest=args_sha256(request.args, request.kwargs),
            policy=ctx.policy,
        )
        with audited(audit), ExitStack() as stack:
            inputs = locked_example_inputs(ctx, request.repo_or_dir, request.model)
            tree = open_tree(
                ctx, audit, request.repo_or_dir, source=request.source, force_reload=request.force_reload,
                verbose=False, stack=stack, chosen_by_repo=True, fetcher=fetcher,
            )  # fmt: skip
            # The nested entrypoint's own output pin, decided before its sandbox runs (SPEC section 4).
            guard = output_guard(ctx, tree, request.repo_or_dir, request.model, request.args, request.kwargs, inputs)
            result = run_sandbox(
                ctx, audit, "load", tree, (request.model, request.args, request.kwargs), verbose=False,
                out_dir=out_dir, pending=queue, example_inputs=inputs, nested_depth=request.depth, runner=runner,
                fetcher=fetcher, deadline=request.deadline,
            )  # fmt: skip
            assert result.state_path is not None  # noqa: S101 - run_in_sandbox guarantees it for "load"
            if guard.active:
                found = file_digests(result.state_path, result.config, result.export, tree=tree.path)
                guard.check(found)
                queue_output(queue, tree, guard, request.model, found)
            return NestedAnswer(
                state_path=result.state_path,
                config=result.config,
                export=result.export,
                fetched=result.all_fetched,
                trusted_modules=tuple(ctx.policy.reconstruct.trusted_modules),
                strategies=tuple(ctx.policy.reconstruct.strategies),
            )

    return answer
