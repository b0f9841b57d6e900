"""Admission of a child's output and of a result-cache entry: the output pin, what a run may store.

Pure decisions (SPEC sections 4 and 8): digests, lock entries and the policy's
modes in; an :class:`OutputGuard`, a yes/no or the coded
:class:`~securehub.errors.SecureHubError` out. Computing the digests
(:mod:`securehub.pipeline.state_digest`), reading and writing entries
(:mod:`securehub.store.results`) and running the sandbox stay in the pipeline;
the frame and JSON schemas the child's output must pass are the sandbox's
wire format (:mod:`securehub.sandbox.wire.messages`), checked as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from securehub._util.cli_args import arg_options
from securehub._util.digest import args_sha256
from securehub.config.lockfile import EntrypointEntry, Lockfile, OutputPin, RepoEntry
from securehub.errors import HashMismatch, NotLocked, OutputMismatch

__all__ = [
    "CachePlan",
    "Digests",
    "OutputGuard",
    "cacheable_artifacts",
    "decide_output_guard",
    "locked_entrypoint",
    "store_admits",
    "unpinned_message",
]


class Digests(Protocol):
    """The canonical digests of one output (:class:`securehub.pipeline.state_digest.OutputDigests`)."""

    @property
    def state_sha256(self) -> str: ...

    @property
    def config_sha256(self) -> str: ...

    @property
    def program_sha256(self) -> str | None: ...


@dataclass(frozen=True)
class OutputGuard:
    """What a load must check about its output (see the module docstring).

    ``pin``: the pinned digests, or ``None`` when the argument set is not
    pinned or ``lock.outputs`` is ``off``. ``check_program``: compare the
    program digest too. ``record``: compute the digests of an unpinned output
    so ``lock.mode: auto`` can record them.
    """

    spec: str
    entrypoint: str
    args_digest: str
    pin: OutputPin | None = None
    check_program: bool = False
    record: bool = False

    @property
    def active(self) -> bool:
        """Whether the output's digests are needed at all."""
        return self.pin is not None or self.record

    def check(self, found: Digests, *, cached_key: str | None = None) -> None:
        """Raise unless ``found`` matches the pin (``OutputMismatch``; ``HashMismatch`` for a cache entry)."""
        pin = self.pin
        if pin is None:
            return
        diffs: list[str] = []
        if found.state_sha256 != pin.state_sha256:
            diffs.append(f"state_sha256 {pin.state_sha256}, found {found.state_sha256}")
        if found.config_sha256 != pin.config_sha256:
            diffs.append(f"config_sha256 {pin.config_sha256}, found {found.config_sha256}")
        if self.check_program and found.program_sha256 != pin.program_sha256:
            diffs.append(f"program_sha256 {pin.program_sha256}, found {found.program_sha256 or 'no program'}")
        if not diffs:
            return
        what = f"{self.spec} entrypoint {self.entrypoint!r} (args_sha256 {self.args_digest})"
        if cached_key is not None:
            # The entry passed its own manifest, but the lock is the anchor: a consistently rewritten
            # entry (weights, files and manifest all changed together) is cache tampering.
            raise HashMismatch(
                f"results/{cached_key}: expected the output hub.lock pins for {what}: {'; '.join(diffs)}. The "
                "cached result was rewritten (or is stale) and nothing from it was used. Run `securehub cache "
                "prune`, or load with force_reload=True to rebuild it in the sandbox and check it against the lock"
            )
        raise OutputMismatch(
            f"{what}: expected the output hub.lock pins, {'; '.join(diffs)}. The pinned code produced a "
            "different output than when it was locked (it depends on the clock, the environment or randomness, "
            "or the sandboxed code forged its result); nothing was rebuilt, cached or recorded. If the change "
            f"is intended, re-pin it with `securehub lock {self.spec} -e {self.entrypoint} --upgrade`"
        )

    def recorded(self, found: Digests) -> tuple[str, OutputPin] | None:
        """The ``(args_sha256, pin)`` ``lock.mode: auto`` records for an unpinned output, else ``None``."""
        if not self.record:
            return None
        return self.args_digest, OutputPin(found.state_sha256, found.config_sha256, found.program_sha256)


@dataclass(frozen=True)
class CachePlan:
    """A cacheable load: its key, the inputs behind it and the locked artifact digests (url -> sha256).

    ``pinned``: hub.lock pins this load's output, so even a run that fetched
    nothing (a random init, deterministic in the sandbox) has an anchor.
    """

    key: str
    inputs: Mapping[str, Any]
    artifacts: Mapping[str, str]
    pinned: bool = False

    def admits(self, fetched: Sequence[tuple[str, str]]) -> bool:
        """True when a run that fetched ``fetched`` may be stored: only locked digests, and at least one
        unless the output is pinned."""
        return (bool(fetched) or self.pinned) and all(self.artifacts.get(url) == sha for url, sha in fetched)


def unpinned_message(
    spec: str, entrypoint: str, args: Sequence[Any], kwargs: Mapping[str, Any], ep: EntrypointEntry | None
) -> str:
    """``not-locked`` for an unpinned argument set: what is missing and the exact command that pins it."""
    command = [f"securehub lock {spec} -e {entrypoint}"]
    command += arg_options(kwargs)
    if ep is not None and ep.example_inputs:
        dims = ["x".join(str(d) for d in s.shape) + f":{s.dtype}" for s in ep.example_inputs]
        command += [f"--example-input {d}" for d in dims]
    if ep is not None and args_sha256((), dict(ep.args or {})) == args_sha256(args, kwargs):
        # This very argument set is recorded without a pin (a lock from before output pinning): kept as
        # it is unless --upgrade. Another argument set of a recorded entrypoint is added by plain `lock -e`.
        command.append("--upgrade")
    positional = (
        f" Positional arguments {list(args)!r} cannot be pinned by `securehub lock`; pass them as keyword "
        "arguments instead."
        if args
        else ""
    )
    return (
        f"{spec} entrypoint {entrypoint!r} with args_sha256 {args_sha256(args, kwargs)}: expected an output "
        "pinned in hub.lock (the policy's lock.outputs is 'required'), found none for this argument set; "
        f"nothing was run. Pin it with `{' '.join(command)}`.{positional}"
    )


def locked_entrypoint(entry: RepoEntry | None, commit: str | None, entrypoint: str) -> EntrypointEntry | None:
    """The entrypoint's lock entry, only when the tree is the pinned commit (a local dir has none)."""
    if entry is None or commit is None or commit != entry.commit:
        return None
    return entry.entrypoints.get(entrypoint)


def decide_output_guard(
    call: tuple[str, str, Sequence[Any], Mapping[str, Any]],
    *,
    mode: str,
    ep: EntrypointEntry | None,
    may_record: bool,
    export_allowed: bool,
    same_inputs: Callable[[EntrypointEntry], bool],
) -> OutputGuard:
    """The guard for one load (``call`` = spec, entrypoint, args, kwargs), decided before the sandbox runs.

    ``mode``: the policy's ``lock.outputs``; ``ep``: the entrypoint's lock entry
    (:func:`locked_entrypoint`); ``may_record``: ``lock.mode: auto`` can record an unpinned output;
    ``export_allowed``: the policy lists the ``export`` strategy; ``same_inputs(ep)``: this load's
    example inputs are exactly the ones the lock recorded (asked only when it matters).
    ``not-locked`` under ``required`` when the argument set is not pinned.
    """
    spec, entrypoint, args, kwargs = call
    digest = args_sha256(args, kwargs)
    base = OutputGuard(spec, entrypoint, digest)
    if mode == "off":
        return base
    pin = ep.output(digest) if ep is not None else None
    if pin is None:
        if mode == "required":
            raise NotLocked(unpinned_message(spec, entrypoint, args, kwargs, ep))
        return OutputGuard(spec, entrypoint, digest, record=may_record)
    check_program = (
        pin.program_sha256 is not None
        and ep is not None
        and bool(ep.example_inputs)
        and export_allowed
        and same_inputs(ep)
    )
    return OutputGuard(spec, entrypoint, digest, pin=pin, check_program=check_program)


def cacheable_artifacts(
    entry: RepoEntry | None, commit: str | None, *, local: bool, entrypoint: str, lock: Lockfile, pinned: bool
) -> dict[str, str] | None:
    """The locked digests (url -> sha256) a cacheable load's key covers, or ``None`` when the load is not
    fully locked: no repo entry or commit, a local dir, no entrypoint entry, an artifact without a
    lock entry, or an entrypoint with no artifacts whose output is not ``pinned``."""
    if entry is None or commit is None or local:
        return None
    ep = entry.entrypoints.get(entrypoint)
    if ep is None or not (ep.artifacts or pinned):
        return None
    digests: dict[str, str] = {}
    for url in ep.artifacts:
        art = lock.artifact(url)
        if art is None:
            return None
        digests[url] = art.sha256
    return digests


def store_admits(plan: CachePlan | None, fetched: Sequence[tuple[str, str]], *, nested: bool) -> bool:
    """Whether a fresh, rebuilt result may be stored: a plan, no nested loads (their trees and artifacts
    are not covered by the key, and each must stay audited) and only locked artifacts fetched."""
    return plan is not None and not nested and plan.admits(fetched)
