"""``securehub lock SPEC -e ENTRYPOINT``: run entrypoints in the sandbox and pin what they fetch.

The entrypoint runs exactly as a load would (same sandbox, same broker
checks on hosts, sizes, formats and pickle scans, example inputs and export
when the policy's strategies include it), except that artifacts not yet in
the lock are admitted so they can be recorded. Every artifact URL the
entrypoint fetched is recorded with its sha256 and size, and the list is
stored per entrypoint, with the arguments used and any example input shapes
(given as ``--example-input 1x3x224x224:float32``, or found by the sandbox
child with ``--example-input auto`` and checked like given ones).

Output pinning (SPEC section 4): the entrypoint runs **twice** with those
inputs; the canonical digests of both outputs (:mod:`securehub.pipeline.state_digest`)
must be equal, and are recorded under ``outputs[args_sha256]``. Two runs that
differ (a hubconf that reads the clock, the environment or ``os.urandom``) are
``output-mismatch`` naming the first differing tensor, and nothing is pinned:
a load could never be checked against such an entry. With ``auto``, a first
run finds the inputs and the next one uses them as given, exactly as a later
load that reads them from hub.lock will; the search run counts as the other
of the two when its output digests equal that run's (2 sandbox runs, not 3),
and a third run with the given inputs decides when they differ (the search's
forward passes or export can leave a different state or program).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securehub._util.digest import args_sha256
from securehub.config.lockfile import (
    DTYPES,
    EntrypointEntry,
    InputSpec,
    Lockfile,
    OutputPin,
    example_inputs_total_problem,
)
from securehub.errors import NotLocked, OutputMismatch, ReconstructError, ReconstructRefused, UsageError
from securehub.pipeline.broker import ArtifactBroker
from securehub.pipeline.context import Context
from securehub.pipeline.sandbox_config import sandbox_config
from securehub.pipeline.sandbox_run import nested_loader
from securehub.pipeline.state_digest import OutputDigests, first_difference, state_output
from securehub.pipeline.tree import cached_tree
from securehub.reconstruct.rebuild import POSITIONAL_INPUTS_ADVICE, reconstruct
from securehub.resolve.spec import parse_spec
from securehub.sandbox.example_inputs import example_tensors, format_example_inputs
from securehub.sandbox.parent.prepared import PreparedChild
from securehub.sandbox.parent.session import SandboxResult, run_in_sandbox
from securehub.sandbox.wire.messages import COMPILED_EXPORT_ERROR, FindInputs


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


def _found_or_refuse(key: str, name: str, run: _Run) -> tuple[InputSpec, ...]:
    """The inputs the child found (already bounds-checked by the session), or ``reconstruct-refused``."""
    found = run.found_inputs
    if found is None and run.compiled is not None:  # no search ran: say why, not that nothing fit
        raise ReconstructRefused(f"{key} {name}: {run.compiled[:500]}; nothing was recorded")
    if found is None:
        raise ReconstructRefused(
            f"{key} {name}: --example-input auto expected to find example inputs the model accepts, found none "
            "(the model's hints, its first layers and the fixed candidates all failed a forward pass or the "
            "export); nothing was recorded. Give the shapes the model takes yourself, one --example-input per "
            "forward argument, e.g. 1x3x224x224:float32 (an image), 1x3x8x224x224:float32 (a video clip) or "
            f"1x128:int64 (token ids). Note: {POSITIONAL_INPUTS_ADVICE}"
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
    """Run each entrypoint of each repo in the sandbox and record its artifacts and output into ``lock``.

    Entrypoints already recorded are kept unless ``upgrade``. Each one runs
    twice and its output is pinned under ``outputs[args_sha256]`` only when
    both runs agree (``OutputMismatch`` otherwise). Raises what a load would
    raise (sandbox, broker and entrypoint errors); nothing is recorded for a
    repo whose entrypoint failed. ``example_inputs == ["auto"]``: a first run
    lets the child search for inputs (and check they export when the policy
    allows ``export``); ``reconstruct-refused`` when it finds none. That run
    is one of the two when its output equals the next run's.
    """
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
        tree = cached_tree(ctx, entry.remote, entry.commit, expected_tree_sha256=entry.tree_sha256)
        for name in entrypoints:
            recorded = None if upgrade else entry.entrypoints.get(name)
            if recorded is not None and not _adds_argument_set(recorded, args):
                continue  # this argument set is recorded or pinned already: kept unless --upgrade
            found = inputs
            discovery: _Run | None = None
            if recorded is not None:  # another argument set of a recorded entrypoint
                found = _inputs_of_added_set(key, name, recorded, inputs, auto=auto)
            # The second run's child starts now and imports torch while the first run works; it is
            # used by exactly that run (killed unused if anything fails first).
            with PreparedChild(tree.path, sandbox_config(ctx.policy)) as ahead:
                if recorded is None and auto:
                    discovery = _run_once(ctx, lock, tree.path, name, args, None, find="auto")
                    found = _found_or_refuse(key, name, discovery)
                    lock = _with_new_artifacts(lock, discovery)
                # Output pinning: two runs must agree before anything is recorded, and at least one of them
                # ran exactly as a later load will (the recorded inputs given, no search). A later run sees
                # the earlier ones' artifacts as pinned: served from the verified cache, and a different byte
                # would be hash-mismatch, not a silent second download.
                first = _run_once(
                    ctx, lock, tree.path, name, args, found, prepared=ahead if discovery is not None else None
                )
                if first.unloadable is not None:
                    raise ReconstructRefused(f"{key} {name}: {first.unloadable}")
                lock = _with_new_artifacts(lock, first)
                runs = [first] if discovery is None else [discovery, first]
                if discovery is None or discovery.digests != first.digests:
                    # The discovery run counts as the other of the two only when it produced exactly what the
                    # run with the recorded inputs produced (its search's forward passes or export may leave
                    # a different state or program); otherwise another run with the recorded inputs decides.
                    runs.append(
                        _run_once(
                            ctx, lock, tree.path, name, args, found, prepared=ahead if discovery is None else None
                        )
                    )
                    lock = _with_new_artifacts(lock, runs[-1])
            # The two compared runs: the discovery run and the first when they agreed, else the last two.
            pin = _reproducible(spec_key, name, args, runs[-2:])
            urls = tuple(sorted({f.url for run in runs for f in run.broker.fetched}))
            record = EntrypointEntry(
                artifacts=urls,
                example_inputs=found,
                args=dict(args) or None,
                outputs={args_sha256((), dict(args)): pin},
            )
            if recorded is not None:
                # Another argument set of a recorded entrypoint: its pin joins the others, nothing is replaced.
                record = dataclasses.replace(
                    recorded,
                    artifacts=tuple(sorted(set(recorded.artifacts) | set(urls))),
                    outputs={**recorded.outputs, **record.outputs},
                )
            lock = lock.with_entrypoint(spec_key, name, record)
            entry = lock.repo(spec_key) or entry
    return lock


def _adds_argument_set(recorded: EntrypointEntry, args: Mapping[str, Any]) -> bool:
    """Whether ``args`` is an argument set the recorded entrypoint neither records nor pins yet.

    ``lock -e EP --arg ...`` then runs and pins it next to the entrypoint's other pins (a strict load of
    ``width=3`` needs its own pin without losing ``width=2``'s). The recorded argument set itself, pinned
    or not (a lock written before output pinning), is kept as it is unless ``--upgrade``.
    """
    digest = args_sha256((), dict(args))
    return digest != args_sha256((), dict(recorded.args or {})) and digest not in recorded.outputs


def _inputs_of_added_set(
    key: str, name: str, recorded: EntrypointEntry, inputs: tuple[InputSpec, ...] | None, *, auto: bool
) -> tuple[InputSpec, ...] | None:
    """The example inputs an added argument set runs with: the entrypoint's recorded ones (one set per entrypoint).

    Its pins were made exporting with exactly those inputs (or none), and a load exports with what the lock
    records: other inputs here would change them under the pins already there (``UsageError``).
    """
    if (auto and recorded.example_inputs is None) or (inputs is not None and inputs != recorded.example_inputs):
        have = (
            "no example inputs"
            if recorded.example_inputs is None
            else f"`{format_example_inputs(recorded.example_inputs)}`"
        )
        given = "--example-input auto" if auto else format_example_inputs(inputs or ())
        raise UsageError(
            f"{key}: entrypoint {name!r} is recorded with {have}, one set for all its argument sets (their "
            f"pins were made with it); expected no --example-input here or the same, found `{given}`. To record "
            "other inputs, re-lock the entrypoint with --upgrade (its other pinned argument sets are then dropped)"
        )
    return recorded.example_inputs


@dataclass(frozen=True)
class _Run:
    """One sandbox run of an entrypoint under ``lock -e``: what it fetched and what it produced."""

    broker: ArtifactBroker
    digests: OutputDigests
    #: Canonical per-tensor lines of the state (to name the first tensor two runs disagree on).
    lines: Mapping[str, bytes]
    #: The inputs the child found (``find="auto"``), else ``None``.
    found_inputs: tuple[InputSpec, ...] | None = None
    #: Why a load under the policy could not rebuild this output (see :func:`_unloadable`), else ``None``.
    unloadable: str | None = None
    #: The child's ``export_error`` when it ran no forward pass on a ``torch.compile``'d model, else ``None``.
    compiled: str | None = None


def _with_new_artifacts(lock: Lockfile, run: _Run) -> Lockfile:
    """``lock`` with the artifacts ``run`` fetched that it does not pin yet."""
    for url, art in run.broker.lock_entries().items():
        if lock.artifact(url) is None:
            lock = lock.with_artifact(url, art)
    return lock


def _run_once(
    ctx: Context,
    lock: Lockfile,
    tree: Path,
    name: str,
    args: Mapping[str, Any],
    inputs: Sequence[InputSpec] | None,
    *,
    find: FindInputs = "off",
    prepared: PreparedChild | None = None,
) -> _Run:
    """Run ``name`` in the sandbox as a load would (example inputs, export when the policy allows it).

    ``find="auto"``: no inputs are given; the child searches for some (checking they export when the
    policy allows ``export``) and reports them in :attr:`_Run.found_inputs`. ``prepared``: a child
    started ahead for this tree and policy, used instead of launching one.
    """
    # Nested torch.hub.load calls are answered under the lock as it stands now (so repos
    # pinned earlier in this same command count); their own artifacts must already be locked.
    now = dataclasses.replace(ctx, lock=lock)
    broker = ArtifactBroker(now, allow_unlocked=True)
    tensors = example_tensors(inputs) if inputs else None
    with ctx.cache.temp_dir("lock-") as out:  # flock-ed: a concurrent `cache prune` leaves it alone
        result = run_in_sandbox(
            "load",
            tree,
            name,
            (),
            dict(args),
            config=sandbox_config(ctx.policy),
            broker=broker,
            example_inputs=tensors,
            want_export=(tensors is not None or find == "auto") and "export" in ctx.policy.reconstruct.strategies,
            out_dir=Path(out),
            nested=nested_loader(now),
            find_inputs=find,
            prepared=prepared,
        )
        # Digested from the tensors the session received (each hashed as it arrived): the state file is
        # not read again.
        assert result.state is not None  # noqa: S101 - run_in_sandbox always receives a "load" state
        digests, lines = state_output(
            result.state.tensors, result.config, result.export, tree=tree, data_sha256=result.state.tensor_sha256
        )
        unloadable = _unloadable(ctx, result) if tensors is not None else None
    error = result.config.get("export_error")
    compiled = error if isinstance(error, str) and error.startswith(COMPILED_EXPORT_ERROR) else None
    return _Run(broker, digests, lines, result.found_inputs, unloadable, compiled)


def _unloadable(ctx: Context, result: SandboxResult) -> str | None:
    """Why a load of this output under ``ctx.policy`` would be refused although example inputs were given, or
    ``None``: torch.export failed with them and neither ``source`` nor another strategy rebuilds the model,
    or it exported and the parent would refuse the program (:func:`_unrebuildable_export`).

    Before, ``lock -e`` recorded such inputs and pinned the output, and every later load was
    ``reconstruct-refused`` (pytorchvideo's slowfast_r50 given its two clips: ``forward`` takes one list).
    The other strategies are tried as a load would try them (``trusted`` never runs repository code).
    """
    strategies = ctx.policy.reconstruct.strategies
    error = result.config.get("export_error")
    if "source" in strategies or result.state is None:
        return None
    if result.export is not None:
        return _unrebuildable_export(ctx, result)
    if not isinstance(error, str):
        return None
    others = [s for s in strategies if s != "export"]
    if others and result.state is not None:
        try:
            reconstruct(config=result.config, state=result.state.tensors, export=None, strategies=others,
                        trusted_modules=ctx.policy.reconstruct.trusted_modules, tree=None)  # fmt: skip
        except ReconstructError:
            pass
        else:
            return None
    return (
        f"torch.export failed in the sandbox with the given example inputs ({error[:500]}) and the policy's "
        f"other strategies ({', '.join(others) or 'none'}) cannot rebuild the model, so every load would be "
        f"refused; nothing was recorded. {POSITIONAL_INPUTS_ADVICE}"
    )


def _unrebuildable_export(ctx: Context, result: SandboxResult) -> str | None:
    """Why the parent would refuse to rebuild a model that torch.export did export, or ``None``.

    Before, ``lock -e`` pinned such an output and every later load was ``reconstruct-refused``: hustvl/YOLOP
    sets ``inplace``, ``index`` and ``from_`` on parameter-free layers after construction, which the
    exported module cannot carry (tests/integration/test_real_hub_zoo7.py). The rebuild is the one a
    load makes (no repository code runs); the module is dropped.
    """
    assert result.state is not None  # noqa: S101 - checked by the caller
    try:
        reconstruct(config=result.config, state=result.state.tensors, export=result.export,
                    strategies=ctx.policy.reconstruct.strategies,
                    trusted_modules=ctx.policy.reconstruct.trusted_modules, tree=None)  # fmt: skip
    except ReconstructError as exc:
        return f"every load would be refused, so nothing was recorded: {exc}"
    return None


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
