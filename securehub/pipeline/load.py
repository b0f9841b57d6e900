"""``securehub.load``: one sequence of numbered steps, side effects last.

Read :func:`load` top to bottom; each step is one call:

1. context -- policy and hub.lock (signature checked); example inputs settled.
2. tree -- the pinned commit's tree, digest checked against hub.lock.
3. output guard -- hub.lock's output pin for this call (``lock.outputs``),
   decided *before* the sandbox runs (``required`` refuses here).
4. result lookup -- a verified cached result for a fully locked load: no
   sandbox, no download (read-only).
5. sandbox -- the hubconf runs in the confined child; artifacts only through
   the broker; nested ``torch.hub.load`` calls answered by the same pipeline.
6. admit the output -- the fresh output against the output pin.
7. rebuild -- the module rebuilt in the parent without running repo code
   (unless the policy lists ``source``).
8. store the result -- only now, and only what the cache plan admits.
9. auto-lock -- hub.lock written last (``lock.mode: auto``).
10. audit line -- exactly one, whatever happened (written when the
    ``audited`` block exits).

Nothing is written before step 8: a load refused at any of steps 1-7 leaves
hub.lock byte-identical and the result store unchanged. (The tree and the
artifacts the broker verified are content-addressed in the cache as they are
fetched; they are inputs, stored only after their own digest checks.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from securehub._util.digest import args_sha256
from securehub._util.storage import storage_exhaustion
from securehub.config.lockfile import InputSpec
from securehub.config.policy import Policy
from securehub.errors import ReconstructRefused
from securehub.fetch.fetcher import GIT, Fetcher
from securehub.pipeline.audit_line import Audit, audited, torch_hub_overrides
from securehub.pipeline.context import LockArg, PolicyArg, load_context
from securehub.pipeline.output_guard import output_guard
from securehub.pipeline.result_cache import (
    STATE,
    admit_output,
    cache_plan,
    lookup,
    rebuild_module,
    store_admitted,
)
from securehub.pipeline.sandbox_run import (
    LockRecord,
    Runner,
    locked_example_inputs,
    open_tree,
    queue_output,
    record_locks,
    run_sandbox,
    say,
)
from securehub.sandbox.example_inputs import check_example_tensors, format_example_inputs
from securehub.sandbox.parent.session import run_in_sandbox
from securehub.sandbox.wire.messages import ExportInfo, FindInputs

__all__ = ["LoadOptions", "load"]


@dataclass(frozen=True)
class LoadOptions:
    """The parameters of ``securehub.load`` that are not the call itself (torch.hub's included)."""

    source: str = "github"
    policy: PolicyArg = None
    lock: LockArg = None
    force_reload: bool = False
    verbose: bool = True
    example_inputs: Sequence[torch.Tensor] | Literal["auto"] | None = None
    trust_repo: bool | str | None = None
    skip_validation: bool = False


def load(
    repo_or_dir: str,
    model: str,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    opts: LoadOptions,
    *,
    runner: Runner = run_in_sandbox,
    fetcher: Fetcher = GIT,
) -> nn.Module:
    """Load ``model`` from ``repo_or_dir`` (see :func:`securehub.api.load`); the module docstring lists the steps.

    ``runner``: the sandbox (step 5 and every nested load); the real one unless a
    pipeline unit test passes an in-memory fake (:class:`~securehub.pipeline.sandbox_run.Runner`).
    ``fetcher``: where refs and trees come from (step 2 and every nested load); git unless a pipeline
    unit test passes an in-memory simulator (:class:`~securehub.fetch.fetcher.Fetcher`).

    Raises a ``SecureHubError`` subclass for every refusal or failure (SPEC
    section 9); hub.lock and the result store change only once every check passed.
    """
    find, example_inputs = _settle_example_inputs(opts.example_inputs)
    overrides = torch_hub_overrides(trust_repo=opts.trust_repo, skip_validation=opts.skip_validation)
    audit = Audit("load", spec=repo_or_dir, entrypoint=model, args_digest=args_sha256(args, kwargs),
                  overrides=overrides)  # fmt: skip
    # 10. audit line: ``audited`` appends exactly one line when this block exits, however it exits.
    with audited(audit), ExitStack() as stack:
        # 1. context: policy and hub.lock (signature checked); inputs hub.lock records for the entrypoint.
        ctx = load_context(opts.policy, opts.lock)
        audit.policy = ctx.policy
        if example_inputs is None and find == "off":
            example_inputs = locked_example_inputs(ctx, repo_or_dir, model)
            find = "hint" if example_inputs is None and _refused_without_inputs(ctx.policy) else "off"

        # 2. tree: the pinned commit's tree, digest checked against hub.lock (local dirs: a private snapshot).
        tree = open_tree(ctx, audit, repo_or_dir, source=opts.source, force_reload=opts.force_reload,
                         verbose=opts.verbose, stack=stack, fetcher=fetcher)  # fmt: skip

        # 3. output guard: hub.lock's pin for this call, decided before the sandbox (``required`` refuses here).
        guard = output_guard(ctx, tree, repo_or_dir, model, args, kwargs, example_inputs)

        # 4. result lookup: a verified cached result (read-only; ``HashMismatch`` if tampered, never re-run).
        #    ``example_inputs="auto"`` finds its inputs only in the run, so no key covers it: never cached.
        plan = cache_plan(ctx, tree, model, args, kwargs, example_inputs, pin=guard.pin) if find != "auto" else None
        pending: list[LockRecord] = []
        call = (model, args, kwargs)
        hit = lookup(ctx, tree, model, plan, guard, force_reload=opts.force_reload)
        if hit is not None:
            cached, output = hit
            # 7. rebuild, from the verified cached output (steps 5, 6 and 8 have nothing to do).
            module, strategy = rebuild_module(
                ctx, tree, call, (cached.config, cached.export), state_path=cached.path / STATE, state=cached.state,
                fetched=cached.fetched,
            )  # fmt: skip
            audit.strategy, audit.cached_artifacts = strategy, cached.fetched
            say(opts.verbose, f"{model}: verified cached result reused (no sandbox run); rebuilt with {strategy!r}"
                + _export_shapes(strategy, cached.export))  # fmt: skip
        else:
            # A full disk while the sandbox's output streams into tmp/ or while the result is stored is a
            # clean `network` refusal, never a raw OSError; the flock-ed temp dir is never pruned while live.
            with (
                storage_exhaustion("the sandbox's result", ctx.cache.dir),
                ctx.cache.temp_dir("result-") as out,
            ):
                # 5. sandbox: the hubconf runs confined; what auto-lock would record is only queued.
                result = run_sandbox(
                    ctx, audit, "load", tree, call, verbose=opts.verbose, out_dir=out, pending=pending,
                    example_inputs=example_inputs, find_inputs=find, runner=runner, fetcher=fetcher,
                )  # fmt: skip
                # 6. admit the output: the fresh output against the output pin (``output-mismatch``).
                #    The state is read once here (hashed in the same pass when it may be stored); steps 7
                #    and 8 use that read, never the file again (issue 11 item 6).
                admitted = admit_output(guard, result, tree.path, plan)
                output = admitted.digests
                assert result.state_path is not None  # noqa: S101 - admit_output refused a result without one
                # 7. rebuild in the parent, without running repo code (unless the policy lists ``source``).
                try:
                    module, strategy = rebuild_module(
                        ctx, tree, call, (result.config, result.export), state_path=result.state_path,
                        state=admitted.state, fetched=result.fetched,
                    )  # fmt: skip
                except ReconstructRefused as err:
                    raise _with_found_inputs(err, repo_or_dir, model, result.found_inputs) from None
                audit.strategy = strategy
                # 8. store the result: every check passed; only what the cache plan admits.
                store_admitted(ctx, plan, result, admitted, force_reload=opts.force_reload)
            _say_rebuilt(opts.verbose, model, strategy, audit, result.found_inputs if find == "auto" else None,
                         _export_shapes(strategy, result.export))  # fmt: skip

        # 9. auto-lock: hub.lock written last (``lock.mode: auto``), after every check passed.
        queue_output(pending, tree, guard, model, output)
        record_locks(ctx, pending)
        return module


def _settle_example_inputs(
    example_inputs: Sequence[torch.Tensor] | Literal["auto"] | None,
) -> tuple[FindInputs, Sequence[torch.Tensor] | None]:
    """``(find, tensors)`` from the caller's ``example_inputs``, checked before anything else happens."""
    if isinstance(example_inputs, str):
        if example_inputs != "auto":
            raise ValueError(f"example_inputs must be a tuple of tensors, None or 'auto', got {example_inputs!r}")
        return "auto", None
    if example_inputs is not None:
        check_example_tensors(example_inputs)
    return "off", example_inputs


def _refused_without_inputs(policy: Policy) -> bool:
    """Whether a repo-defined class without example inputs would be refused (export allowed, source not).

    Only then does a load ask the child for a ``hint`` search: a load that
    would succeed anyway is not made slower (SPEC section 8's refusal).
    """
    strategies = policy.reconstruct.strategies
    return "export" in strategies and "source" not in strategies


def _with_found_inputs(
    err: ReconstructRefused, repo_or_dir: str, model: str, found: Sequence[InputSpec] | None
) -> ReconstructRefused:
    """The refusal, with the exact options to use when the sandbox found inputs the model accepts."""
    if found is None:
        return err
    flags = format_example_inputs(found)
    return ReconstructRefused(
        f"{err}. The sandbox found example inputs this model accepts: load with `securehub load {repo_or_dir} "
        f"{model} {flags}` (or example_inputs=securehub.api.example_tensors(...) of those shapes), or record "
        f"them with `securehub lock {repo_or_dir} -e {model} {flags}`"
    )


def _export_shapes(strategy: str, export: ExportInfo | None) -> str:
    """What an exported model's inputs may look like, for the verbose line (the child's own claim, display only)."""
    if strategy != "export" or export is None:
        return ""
    sizes = [(i, [d for d in dims if d > 0]) for i, dims in enumerate(export.dynamic_dims or ())]
    varying = "; ".join(f"input {i} dims {', '.join(map(str, dims))}" for i, dims in sizes if dims)
    if export.dynamic_batch and varying:
        # checked against the program's own input shapes at the rebuild, which came first
        return (
            f" (any batch size, and any size of {varying}; every other input dimension is fixed to the example inputs)"
        )
    if export.dynamic_batch:
        return " (any batch size; every other input dimension is fixed to the example inputs)"
    return (
        " (input shapes fixed to the example inputs, batch size included: torch could not export a symbolic "
        "batch for this model)"
    )


def _say_rebuilt(verbose: bool, model: str, strategy: str, audit: Audit,
                 found: Sequence[InputSpec] | None, shapes: str = "") -> None:  # fmt: skip
    """The verbose lines after a sandbox run: the strategy (and what an exported model's inputs may be), the
    isolation level, inputs an auto search found."""
    level = audit.isolation.level if audit.isolation else "unknown"
    say(verbose, f"{model}: rebuilt with the {strategy!r} strategy{shapes}; isolation {level}")
    if found is not None:
        say(verbose, f"{model}: example inputs found: {format_example_inputs(found)}")
