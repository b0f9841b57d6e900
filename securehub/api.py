"""The torch.hub-compatible API: load, list, help, load_state_dict_from_url, download_url_to_file.

Each call follows the same path (ARCHITECTURE.md): policy and lock (signature
checked) -> verified tree (pinned commit, digest against the lock) -> the
entrypoint runs in the sandbox, artifacts through the broker -> the child's
output is validated -> the module is rebuilt in the parent without running
repo code (unless the policy allows ``source``) -> one audit line.
"""

from __future__ import annotations

import builtins
import os
import pickle  # only for the exception type torch.load raises; nothing is unpickled here
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from securehub._util import text as _text
from securehub._util.atomic import replace_file
from securehub._util.digest import args_sha256
from securehub.audit.log import AuditRecord, Outcome, append, outcome_for_code
from securehub.config.lockfile import InputSpec, OutputPin
from securehub.config.policy import Policy
from securehub.errors import FormatNotAllowed, ReconstructRefused, SecureHubError
from securehub.pipeline import autolock as _autolock
from securehub.pipeline.broker import ArtifactBroker, Fetched
from securehub.pipeline.context import Context, LockArg, PolicyArg, load_context, policy_ref
from securehub.pipeline.convert import convert_checkpoint
from securehub.pipeline.output_guard import OutputGuard, output_guard
from securehub.pipeline.result_cache import cached_or_run
from securehub.pipeline.state_digest import OutputDigests, file_digests
from securehub.pipeline.tree import VerifiedTree, local_snapshot, verified_tree
from securehub.sandbox.config import IsolationReport, SandboxConfig
from securehub.sandbox.example_inputs import example_tensors
from securehub.sandbox.messages import FindInputs, NestedRequest
from securehub.sandbox.session import Nested, NestedAnswer, SandboxResult, run_in_sandbox
from securehub.verify.hashprefix import PrefixMode

__all__ = [
    "args_sha256",
    "download_url_to_file",
    "example_tensors",
    "format_example_inputs",
    "help",
    "list",
    "load",
    "load_state_dict_from_url",
    "sandbox_config",
]


def sandbox_config(policy: Policy, read_paths: Sequence[Path] = ()) -> SandboxConfig:
    """The child's limits and permissions, straight from ``policy.sandbox``."""
    sb = policy.sandbox
    return SandboxConfig(
        read_paths=tuple(read_paths),
        network=sb.network,
        filesystem=sb.filesystem,
        isolation=sb.isolation,
        memory_mb=sb.memory_mb,
        cpu_s=sb.cpu_s,
        timeout_s=float(sb.timeout_s),
        max_procs=sb.max_procs,
        max_open_files=sb.max_open_files,
        max_file_mb=sb.max_file_mb,
        max_output_mb=sb.max_output_mb,
    )


@dataclass
class _Audit:
    """Collects what one operation decided; written as one line when the operation ends."""

    action: str
    spec: str | None = None
    entrypoint: str | None = None
    args_digest: str | None = None
    tree: VerifiedTree | None = None
    policy: Policy | None = None
    broker: ArtifactBroker | None = None
    isolation: IsolationReport | None = None
    strategy: str | None = None
    #: On a result-cache hit no broker runs: the artifacts the cached result was built from.
    cached_artifacts: tuple[tuple[str, str], ...] = ()
    #: torch.hub parameters the caller passed that securehub decides differently (SPEC section 2).
    overrides: tuple[str, ...] = ()

    def record(self, code: str | None, *, outcome: Outcome | None = None) -> AuditRecord:
        fetched: builtins.list[Fetched] = self.broker.fetched if self.broker else []
        return AuditRecord(
            action=self.action,
            outcome=outcome or outcome_for_code(code),
            spec=self.spec,
            ref=self.tree.ref if self.tree else None,
            commit=self.tree.commit if self.tree else None,
            tree_sha256=self.tree.tree_sha256 if self.tree else None,
            entrypoint=self.entrypoint,
            args_sha256=self.args_digest,
            artifacts=[{"url": f.url, "sha256": f.sha256} for f in fetched]
            + [{"url": url, "sha256": digest} for url, digest in self.cached_artifacts],
            policy=self._policy_field(),
            isolation=self.isolation.to_dict() if self.isolation else None,
            strategy=self.strategy,
            code=code,
        )

    def _policy_field(self) -> dict[str, Any] | None:
        """``{name, sha256}``, plus ``overrides`` only when a torch.hub parameter was decided differently.

        SPEC section 11 fixes the line's keys, and the policy *is* the decision
        that replaced the caller's ``trust_repo``/``skip_validation``, so the note
        lives inside the ``policy`` field rather than in a new top-level key.
        """
        if self.policy is None:
            return {"overrides": builtins.list(self.overrides)} if self.overrides else None
        ref: dict[str, Any] = dict(policy_ref(self.policy))
        if self.overrides:
            ref["overrides"] = builtins.list(self.overrides)
        return ref


#: Audit codes for failures that are not a securehub decision (no SPEC section 9 code exists for them).
_INTERRUPTED = "interrupted"
_USAGE = "usage"
_INTERNAL = "internal-error"


def _code_for(exc: BaseException) -> str:
    """A non-null audit code for an exception that is not a ``SecureHubError``."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return _INTERRUPTED
    if isinstance(exc, TypeError | ValueError):
        return _USAGE  # programmer misuse (SPEC section 2), e.g. an argument that is not a JSON value
    return _INTERNAL


@contextmanager
def _audited(audit: _Audit) -> Iterator[_Audit]:
    """Append one audit line whatever happens: ``ok``, ``refused`` or ``error``, always with a code on failure."""
    try:
        yield audit
    except SecureHubError as err:
        append(audit.record(err.code))
        raise
    except BaseException as exc:
        # Not a securehub decision (misuse, an interrupt, a bug): still one line, outcome error, and a
        # code saying which, so a regulated pipeline can tell a Ctrl-C from a refusal.
        append(audit.record(_code_for(exc), outcome="error"))
        raise
    append(audit.record(None))


def _torch_hub_overrides(*, trust_repo: object = None, skip_validation: bool = False) -> tuple[str, ...]:
    """What the audit line says about torch.hub parameters securehub accepts but decides itself.

    ``trust_repo``: torch.hub asks the user (or a trusted-owner list); here the
    policy (repos.allow/deny, refs, lock) is the trust decision, whatever was
    passed. ``skip_validation``: torch.hub then skips its fork check; securehub
    always checks that the ref is the named repo's own branch or tag.
    """
    out: builtins.list[str] = []
    if trust_repo is not None:
        out.append(f"trust_repo={trust_repo!r} ignored: the policy is the trust decision")
    if skip_validation:
        out.append("skip_validation=True ignored: refs are always validated against the repo's own branches and tags")
    return tuple(out)


def _progress(verbose: bool) -> bool:
    return verbose and sys.stderr.isatty()


def _say(verbose: bool, text: str) -> None:
    if verbose:
        print(f"securehub: {text}", file=sys.stderr)


def _tree(
    ctx: Context,
    audit: _Audit,
    repo_or_dir: str,
    *,
    source: str,
    force_reload: bool,
    verbose: bool,
    stack: ExitStack,
    chosen_by_repo: bool = False,
) -> VerifiedTree:
    """The verified tree; a local directory becomes a private copy of its digested files, which
    lives until ``stack`` closes (the sandbox must see nothing the digest excludes, e.g. ``.git``)."""
    tree = verified_tree(ctx, repo_or_dir, source=source, force_reload=force_reload, chosen_by_repo=chosen_by_repo)
    audit.tree = tree
    where = f"commit {tree.commit} ({tree.ref_type} {tree.ref})" if tree.commit else f"local dir {tree.path}"
    _say(verbose, f"{repo_or_dir}: {where}, tree_sha256 {tree.tree_sha256} verified")
    return stack.enter_context(local_snapshot(ctx, tree))


@dataclass(frozen=True)
class _LockRecord:
    """One ``lock.mode: auto`` entry to write once the whole operation has succeeded."""

    tree: VerifiedTree
    entrypoint: str | None
    fetched: tuple[Fetched, ...]
    #: Inputs found by ``example_inputs="auto"`` (recorded with a new entrypoint entry), else ``None``.
    example_inputs: tuple[InputSpec, ...] | None = None
    #: ``(args_sha256, digests)`` of an unpinned output under ``lock.outputs: verify`` (output pinning).
    output: tuple[str, OutputPin] | None = None


def _record_locks(ctx: Context, pending: Sequence[_LockRecord]) -> None:
    """Write the queued auto-lock entries. Called last: a failed operation leaves hub.lock byte-identical."""
    for rec in pending:
        _autolock.record(
            ctx, rec.tree, rec.entrypoint, rec.fetched, example_inputs=rec.example_inputs, output=rec.output
        )


def _queue_output(pending: builtins.list[_LockRecord], tree: VerifiedTree, guard: OutputGuard,
                  entrypoint: str, found: OutputDigests | None) -> None:  # fmt: skip
    """Queue an unpinned output's digests for ``lock.mode: auto`` (after the entrypoint's own record)."""
    recorded = guard.recorded(found) if found is not None else None
    if recorded is not None:
        pending.append(_LockRecord(tree, entrypoint, (), output=recorded))


def _sandbox(
    ctx: Context,
    audit: _Audit,
    op: str,
    tree: VerifiedTree,
    entrypoint: str | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    verbose: bool,
    out_dir: Path,
    pending: builtins.list[_LockRecord] | None = None,
    example_inputs: Sequence[torch.Tensor] | None = None,
    nested_depth: int = 0,
    find_inputs: FindInputs = "off",
) -> SandboxResult:
    """Run ``op`` in the sandbox; queue (never write) what ``lock.mode: auto`` would record into ``pending``.

    ``pending=None``: the caller records nothing (the queue is dropped).
    ``find_inputs``: see :data:`securehub.sandbox.messages.FindInputs`; inputs
    an ``auto`` search found are queued with the entrypoint's lock record.
    """
    if pending is None:
        pending = []
    ep_entry = tree.entry.entrypoints.get(entrypoint) if tree.entry and op == "load" and entrypoint else None
    broker = ArtifactBroker(
        ctx,
        progress=_progress(verbose),
        entrypoint_urls=frozenset(ep_entry.artifacts) if ep_entry is not None else None,
        entrypoint_name=entrypoint,
    )
    audit.broker = broker
    result = run_in_sandbox(
        op,  # type: ignore[arg-type]
        tree.path,
        entrypoint,
        args,
        kwargs,
        config=sandbox_config(ctx.policy),
        broker=broker,
        example_inputs=example_inputs,
        want_export=(example_inputs is not None or find_inputs == "auto")
        and "export" in ctx.policy.reconstruct.strategies,
        find_inputs=find_inputs,
        out_dir=out_dir,
        nested=nested_loader(ctx, pending) if op == "load" else None,
        nested_depth=nested_depth,
    )
    audit.isolation = result.isolation
    # Recorded only after the caller's last check passed (reconstruction included): a load that ends
    # in reconstruct-refused must not have pinned anything into the user's hub.lock.
    found = result.found_inputs if find_inputs == "auto" else None
    pending.append(_LockRecord(tree, entrypoint if op == "load" else None, tuple(broker.fetched), found))
    return result


def _run(
    ctx: Context,
    audit: _Audit,
    op: str,
    repo_or_dir: str,
    entrypoint: str | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    source: str,
    force_reload: bool,
    verbose: bool,
    out_dir: Path,
    pending: builtins.list[_LockRecord] | None = None,
    example_inputs: Sequence[torch.Tensor] | None = None,
    nested_depth: int = 0,
    chosen_by_repo: bool = False,
) -> tuple[VerifiedTree, SandboxResult]:
    with ExitStack() as stack:
        tree = _tree(
            ctx, audit, repo_or_dir, source=source, force_reload=force_reload, verbose=verbose,
            stack=stack, chosen_by_repo=chosen_by_repo,
        )  # fmt: skip
        result = _sandbox(
            ctx, audit, op, tree, entrypoint, args, kwargs, verbose=verbose, out_dir=out_dir, pending=pending,
            example_inputs=example_inputs, nested_depth=nested_depth,
        )  # fmt: skip
    return tree, result


def nested_loader(ctx: Context, pending: builtins.list[_LockRecord] | None = None) -> Nested:
    """Answer a hubconf's own ``torch.hub.load`` with the same resolver, lock, policy and sandbox.

    The request comes from sandboxed code: only its parsed, schema-checked
    fields are used, and none of them can reach this load's own parameters
    (policy, lock, example inputs). Its remote is the repository's choice, so
    an unlocked ``git+`` remote may reach public addresses only (SSRF). Each
    nested load writes its own audit line. What ``lock.mode: auto`` would
    record is queued into ``pending`` (written by the outermost load once it
    succeeded); with ``pending=None`` (``lock -e``) nothing is recorded.
    """
    queue: builtins.list[_LockRecord] = pending if pending is not None else []

    def answer(request: NestedRequest, out_dir: Path) -> NestedAnswer:
        audit = _Audit(
            "load",
            spec=request.repo_or_dir,
            entrypoint=request.model,
            args_digest=args_sha256(request.args, request.kwargs),
            policy=ctx.policy,
        )
        with _audited(audit), ExitStack() as stack:
            inputs = _locked_example_inputs(ctx, request.repo_or_dir, request.model)
            tree = _tree(
                ctx, audit, request.repo_or_dir, source=request.source, force_reload=request.force_reload,
                verbose=False, stack=stack, chosen_by_repo=True,
            )  # fmt: skip
            # The nested entrypoint's own output pin, decided before its sandbox runs (SPEC section 4).
            guard = output_guard(ctx, tree, request.repo_or_dir, request.model, request.args, request.kwargs, inputs)
            result = _sandbox(
                ctx, audit, "load", tree, request.model, request.args, request.kwargs, verbose=False,
                out_dir=out_dir, pending=queue, example_inputs=inputs, nested_depth=request.depth,
            )  # fmt: skip
            assert result.state_path is not None  # noqa: S101 - run_in_sandbox guarantees it for "load"
            if guard.active:
                found = file_digests(result.state_path, result.config, result.export)
                guard.check(found)
                _queue_output(queue, tree, guard, request.model, found)
            return NestedAnswer(
                state_path=result.state_path,
                config=result.config,
                export=result.export,
                fetched=result.all_fetched,
                trusted_modules=tuple(ctx.policy.reconstruct.trusted_modules),
                strategies=tuple(ctx.policy.reconstruct.strategies),
            )

    return answer


def load(
    repo_or_dir: str,
    model: str,
    *args: Any,
    source: str = "github",
    policy: PolicyArg = None,
    lock: LockArg = None,
    force_reload: bool = False,
    verbose: bool = True,
    example_inputs: Sequence[torch.Tensor] | Literal["auto"] | None = None,
    trust_repo: bool | str | None = None,
    skip_validation: bool = False,
    **kwargs: Any,
) -> torch.nn.Module:
    """Load ``model`` from ``repo_or_dir`` like ``torch.hub.load``, without running repo code here.

    ``*args``/``**kwargs`` go to the entrypoint and must be JSON values (they
    cross into the sandbox as JSON). torch.hub's own parameters are accepted
    and never reach the entrypoint: ``force_reload`` and ``verbose`` mean what
    they mean in torch.hub; ``trust_repo`` and ``skip_validation`` are decided
    by the policy instead, which the audit line records. ``example_inputs``:
    a tuple of tensors for the export strategy; ``None`` uses the shapes
    hub.lock records; ``"auto"`` lets the sandbox child find inputs the model
    accepts (``--example-input auto``; never served from the result cache).
    hub.lock is written (``lock.mode: auto``) only after every check passed and
    the module was rebuilt. Raises a ``SecureHubError`` subclass for every
    refusal or failure (SPEC section 9).
    """
    find: FindInputs = "off"
    if isinstance(example_inputs, str):
        if example_inputs != "auto":
            raise ValueError(f"example_inputs must be a tuple of tensors, None or 'auto', got {example_inputs!r}")
        find, example_inputs = "auto", None
    elif example_inputs is not None:
        check_example_tensors(example_inputs)
    audit = _Audit(
        "load", spec=repo_or_dir, entrypoint=model, args_digest=args_sha256(args, kwargs),
        overrides=_torch_hub_overrides(trust_repo=trust_repo, skip_validation=skip_validation),
    )  # fmt: skip
    with _audited(audit), ExitStack() as stack:
        ctx = load_context(policy, lock)
        audit.policy = ctx.policy
        if example_inputs is None and find == "off":
            example_inputs = _locked_example_inputs(ctx, repo_or_dir, model)
            find = "hint" if example_inputs is None and _refused_without_inputs(ctx.policy) else "off"
        tree = _tree(
            ctx, audit, repo_or_dir, source=source, force_reload=force_reload, verbose=verbose, stack=stack
        )
        pending: builtins.list[_LockRecord] = []
        ran: builtins.list[SandboxResult] = []
        # Output pinning: decided before the sandbox runs (lock.outputs: required refuses here).
        guard = output_guard(ctx, tree, repo_or_dir, model, args, kwargs, example_inputs)

        def run(out_dir: Path) -> SandboxResult:
            ran.append(
                _sandbox(
                    ctx, audit, "load", tree, model, args, kwargs, verbose=verbose, out_dir=out_dir,
                    pending=pending, example_inputs=example_inputs, find_inputs=find,
                )
            )
            return ran[-1]

        try:
            outcome = cached_or_run(
                ctx, tree, model, args, kwargs, example_inputs=example_inputs, force_reload=force_reload, run=run,
                cacheable=find != "auto", guard=guard,
            )  # fmt: skip
        except ReconstructRefused as err:
            found = ran[-1].found_inputs if ran else None
            if found is None:
                raise
            raise ReconstructRefused(f"{err}{_found_inputs_advice(repo_or_dir, model, found)}") from None
        audit.strategy = outcome.strategy
        if outcome.cache == "hit":
            audit.cached_artifacts = outcome.artifacts
            _say(verbose, f"{model}: verified cached result reused (no sandbox run); rebuilt with {outcome.strategy!r}")
        else:
            level = audit.isolation.level if audit.isolation else "unknown"
            _say(verbose, f"{model}: rebuilt with the {outcome.strategy!r} strategy; isolation {level}")
            if find == "auto" and ran and ran[-1].found_inputs is not None:
                _say(verbose, f"{model}: example inputs found: {format_example_inputs(ran[-1].found_inputs)}")
        _queue_output(pending, tree, guard, model, outcome.output)
        _record_locks(ctx, pending)
        return outcome.module


def _refused_without_inputs(policy: Policy) -> bool:
    """Whether a repo-defined class without example inputs would be refused (export allowed, source not).

    Only then does a load ask the child for a ``hint`` search: a load that
    would succeed anyway is not made slower (SPEC section 8's refusal).
    """
    strategies = policy.reconstruct.strategies
    return "export" in strategies and "source" not in strategies


def format_example_inputs(specs: Sequence[InputSpec]) -> str:
    """``--example-input`` arguments for ``specs``: ``--example-input 1x3x224x224:float32 ...``."""
    return " ".join(f"--example-input {'x'.join(str(d) for d in s.shape)}:{s.dtype}" for s in specs)


def _found_inputs_advice(repo_or_dir: str, model: str, found: Sequence[InputSpec]) -> str:
    """The refusal's remedy when the sandbox found inputs the model accepts: the exact options to use."""
    flags = format_example_inputs(found)
    return (
        f". The sandbox found example inputs this model accepts: load with `securehub load {repo_or_dir} "
        f"{model} {flags}` (or example_inputs=securehub.api.example_tensors(...) of those shapes), or record "
        f"them with `securehub lock {repo_or_dir} -e {model} {flags}`"
    )


@dataclass(frozen=True)
class _QueryOptions:
    """The parameters ``list`` and ``help`` share (torch.hub's included)."""

    source: str
    policy: PolicyArg
    lock: LockArg
    force_reload: bool
    verbose: bool
    overrides: tuple[str, ...]


def _query(op: str, repo_or_dir: str, model: str | None, opts: _QueryOptions) -> SandboxResult:
    """Run ``list`` or ``help`` in the sandbox (hubconf is imported only there), audited."""
    audit = _Audit(op, spec=repo_or_dir, entrypoint=model, overrides=opts.overrides)
    with _audited(audit):
        ctx = load_context(opts.policy, opts.lock)
        audit.policy = ctx.policy
        pending: builtins.list[_LockRecord] = []
        with ctx.cache.temp_dir("result-") as out:  # flock-ed: a concurrent `cache prune` leaves it alone
            _, result = _run(
                ctx, audit, op, repo_or_dir, model, (), {}, source=opts.source, force_reload=opts.force_reload,
                verbose=opts.verbose, out_dir=out, pending=pending,
            )  # fmt: skip
        _record_locks(ctx, pending)
        return result


def list(  # torch.hub's name
    repo_or_dir: str,
    *,
    source: str = "github",
    policy: PolicyArg = None,
    lock: LockArg = None,
    force_reload: bool = False,
    skip_validation: bool = False,
    trust_repo: bool | str | None = None,
    verbose: bool = True,
) -> builtins.list[str]:
    """The entrypoints ``repo_or_dir``'s hubconf defines, computed in the sandbox.

    torch.hub's ``skip_validation``/``trust_repo`` are accepted and decided by
    the policy (recorded in the audit line); ``verbose`` prints the verified
    commit and tree digest.
    """
    overrides = _torch_hub_overrides(trust_repo=trust_repo, skip_validation=skip_validation)
    opts = _QueryOptions(source, policy, lock, force_reload, verbose, overrides)
    return builtins.list(_query("list", repo_or_dir, None, opts).names or [])


def help(  # torch.hub's name
    repo_or_dir: str,
    model: str,
    *,
    source: str = "github",
    policy: PolicyArg = None,
    lock: LockArg = None,
    force_reload: bool = False,
    skip_validation: bool = False,
    trust_repo: bool | str | None = None,
    verbose: bool = False,
) -> str:
    """The docstring of ``model`` in ``repo_or_dir``'s hubconf, computed in the sandbox.

    torch.hub's ``skip_validation``/``trust_repo`` are accepted and decided by
    the policy (recorded in the audit line).
    """
    overrides = _torch_hub_overrides(trust_repo=trust_repo, skip_validation=skip_validation)
    opts = _QueryOptions(source, policy, lock, force_reload, verbose, overrides)
    return _query("help", repo_or_dir, model, opts).doc or ""


def _locked_example_inputs(ctx: Context, repo_or_dir: str, model: str) -> tuple[torch.Tensor, ...] | None:
    """Deterministic example inputs from the shapes hub.lock records for the entrypoint, if any."""
    try:
        from securehub.resolve.spec import parse_spec

        key = parse_spec(repo_or_dir).key
    except SecureHubError:
        return None
    entry = ctx.lock.repo(key)
    ep = entry.entrypoints.get(model) if entry else None
    if ep is None or not ep.example_inputs:
        return None
    return example_tensors(ep.example_inputs)


def check_example_tensors(example_inputs: Sequence[torch.Tensor]) -> None:
    """``ValueError`` unless ``example_inputs`` are tensors within the bounds hub.lock shapes have.

    The same limits as :data:`securehub.config.lockfile.MAX_EXAMPLE_INPUT_ELEMENTS` and friends (they are
    copied into the sandbox child), checked before anything else happens.
    """
    from securehub.config.lockfile import example_input_size_problem, example_inputs_total_problem

    if isinstance(example_inputs, torch.Tensor) or not isinstance(example_inputs, (tuple, builtins.list)):
        raise TypeError(f"example_inputs must be a tuple of tensors, got {type(example_inputs).__name__}")
    sizes: builtins.list[int] = []
    for i, tensor in enumerate(example_inputs):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"example_inputs[{i}] must be a torch.Tensor, got {type(tensor).__name__}")
        problem = example_input_size_problem(tuple(tensor.shape), tensor.element_size())
        if problem:
            raise ValueError(f"example_inputs[{i}] {problem}; pass smaller example inputs")
        sizes.append(tensor.numel() * tensor.element_size())
    total = example_inputs_total_problem(sizes)
    if total:
        raise ValueError(f"example_inputs: {total}; pass fewer or smaller example inputs")


def load_state_dict_from_url(
    url: str,
    model_dir: str | None = None,
    map_location: Any = None,
    progress: bool = True,
    check_hash: bool = False,
    file_name: str | None = None,
    *,
    sha256: str | None = None,
    policy: PolicyArg = None,
    weights_only: bool = True,
) -> dict[str, torch.Tensor]:
    """``torch.hub.load_state_dict_from_url``, verified: lock/policy/digest, format by content, static scan.

    safetensors files are loaded with the safetensors library; pickle
    checkpoints only after a clean static scan and with
    ``torch.load(weights_only=True)`` -- in this process, or, under
    ``artifacts.pickle_in_parent: false`` (strict), only inside the sandbox,
    the tensors crossing back as safetensors. ``weights_only=False`` is refused.
    ``model_dir``: when given, a verified copy is also placed there under
    ``file_name`` (the cache itself is content-addressed). New artifacts are
    recorded (``lock.mode: auto``) only once the state dict was loaded.
    """
    name = file_name or _url_name(url)
    audit = _Audit("load_state_dict_from_url", spec=url)
    with _audited(audit):
        if weights_only is False:
            # Refused before any download: full unpickling runs the file's code in this process.
            raise FormatNotAllowed(
                f"{url}: expected weights_only=True (or the argument omitted), found weights_only=False. securehub "
                "never unpickles arbitrary objects in the calling process; pickle checkpoints are loaded with "
                "weights_only=True after a static scan. Drop the argument, or ask the publisher for safetensors."
            )
        ctx = load_context(policy, None)
        audit.policy = ctx.policy
        broker = ArtifactBroker(ctx, progress=progress and sys.stderr.isatty())
        audit.broker = broker
        fetched = broker.fetch(
            url,
            file_name=name,
            prefix_mode=PrefixMode.CHECK_HASH if check_hash else PrefixMode.ENFORCE_WHEN_PRESENT,
            sha256=sha256,
        )
        state = _load_state(ctx, audit, url, fetched, map_location)
        if model_dir is not None:
            _place_copy(fetched.path, Path(model_dir) / name)
        _autolock.record_artifacts(ctx, broker.fetched)  # last: a refused checkpoint pins nothing
        return state


def _load_state(
    ctx: Context, audit: _Audit, url: str, fetched: Fetched, map_location: Any
) -> dict[str, torch.Tensor]:
    """The verified checkpoint's tensors: safetensors directly, pickle only with ``weights_only=True``."""
    if fetched.format == "safetensors":
        from safetensors.torch import load_file

        device = str(map_location) if map_location is not None else "cpu"
        return load_file(str(fetched.path), device=device)
    if not ctx.policy.artifacts.pickle_in_parent:
        # strict: pickle is unpickled only inside the sandbox and crosses back as safetensors.
        converted = convert_checkpoint(
            fetched.path, policy=ctx.policy, map_location=map_location, sha256=fetched.sha256
        )
        audit.isolation = converted.isolation
        return converted.state
    try:
        state = torch.load(fetched.path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        # The static scan passed, but torch's weights_only loader refused the file (torch 2.13
        # cannot read pickle protocol 4/5, for one). Never retried with weights_only=False.
        raise FormatNotAllowed(
            f"{url}: torch.load(weights_only=True) refused the checkpoint ({_text.one_line(str(exc), limit=300)}); "
            "expected a checkpoint saved by torch.save with the default pickle protocol, or safetensors. "
            "Ask the publisher for a safetensors file."
        ) from None
    if not isinstance(state, dict):
        raise FormatNotAllowed(
            f"{url} holds a {type(state).__name__}, expected a state dict (a mapping of names to tensors)"
        )
    return state


def download_url_to_file(
    url: str,
    dst: str | os.PathLike[str],
    hash_prefix: str | None = None,
    progress: bool = True,
    *,
    sha256: str | None = None,
    policy: PolicyArg = None,
) -> None:
    """``torch.hub.download_url_to_file``, verified; ``dst`` is replaced atomically after every check."""
    audit = _Audit("download_url_to_file", spec=url)
    with _audited(audit):
        ctx = load_context(policy, None)
        audit.policy = ctx.policy
        broker = ArtifactBroker(ctx, progress=progress and sys.stderr.isatty())
        audit.broker = broker
        fetched = broker.fetch(
            url, file_name=_url_name(url), hash_prefix=hash_prefix, sha256=sha256, require_checkpoint=False
        )
        _place_copy(fetched.path, Path(dst))
        _autolock.record_artifacts(ctx, broker.fetched)


def _url_name(url: str) -> str:
    from urllib.parse import urlsplit

    return Path(urlsplit(url).path).name


def _place_copy(src: Path, dst: Path) -> None:
    """Copy a verified blob to ``dst`` atomically (temp file in the same dir, then rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with src.open("rb") as inp:
        replace_file(dst, lambda out: shutil.copyfileobj(inp, out, 1 << 20), mode=0o644)
