"""``securehub.list`` and ``securehub.help``: the hubconf is imported only inside the sandbox.

Steps: 1 context, 2 tree, 3 sandbox (``list``/``help``), 4 auto-lock
(hub.lock written last), 5 audit line (one, whatever happened).
"""

from __future__ import annotations

from dataclasses import dataclass

from securehub.pipeline.audit_line import Audit, audited, torch_hub_overrides
from securehub.pipeline.context import LockArg, PolicyArg, load_context
from securehub.pipeline.sandbox_run import LockRecord, Op, record_locks, tree_and_run
from securehub.sandbox.parent.session import SandboxResult

__all__ = ["QueryOptions", "entrypoint_doc", "entrypoint_names"]


@dataclass(frozen=True)
class QueryOptions:
    """The parameters ``list`` and ``help`` share (torch.hub's included)."""

    source: str = "github"
    policy: PolicyArg = None
    lock: LockArg = None
    force_reload: bool = False
    verbose: bool = False
    trust_repo: bool | str | None = None
    skip_validation: bool = False


def entrypoint_names(repo_or_dir: str, opts: QueryOptions) -> list[str]:
    """The entrypoints ``repo_or_dir``'s hubconf defines, computed in the sandbox."""
    return list(_query("list", repo_or_dir, None, opts).names or [])


def entrypoint_doc(repo_or_dir: str, model: str, opts: QueryOptions) -> str:
    """The docstring of ``model`` in ``repo_or_dir``'s hubconf, computed in the sandbox."""
    return _query("help", repo_or_dir, model, opts).doc or ""


def _query(op: Op, repo_or_dir: str, model: str | None, opts: QueryOptions) -> SandboxResult:
    """Run ``list`` or ``help`` in the sandbox, audited; queued auto-lock entries written last."""
    overrides = torch_hub_overrides(trust_repo=opts.trust_repo, skip_validation=opts.skip_validation)
    audit = Audit(op, spec=repo_or_dir, entrypoint=model, overrides=overrides)
    # 5. audit line: one, written when this block exits.
    with audited(audit):
        # 1. context
        ctx = load_context(opts.policy, opts.lock)
        audit.policy = ctx.policy
        pending: list[LockRecord] = []
        with ctx.cache.temp_dir("result-") as out:  # flock-ed: a concurrent `cache prune` leaves it alone
            # 2. tree, 3. sandbox
            _, result = tree_and_run(
                ctx, audit, op, repo_or_dir, (model, (), {}), source=opts.source, force_reload=opts.force_reload,
                verbose=opts.verbose, out_dir=out, pending=pending,
            )  # fmt: skip
        # 4. auto-lock, last
        record_locks(ctx, pending)
        return result
