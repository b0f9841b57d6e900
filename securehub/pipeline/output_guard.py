"""Output pinning at load time: the child's output must be the one hub.lock pins (SPEC sections 4 and 8).

:func:`output_guard` is decided *before* the sandbox runs, from the policy's
``lock.outputs`` and the lock entry of the entrypoint:

* ``off``: nothing is checked or recorded;
* ``verify``: when hub.lock pins an output for this entrypoint and
  ``args_sha256``, the output must match it; an unpinned argument set loads
  and (under ``lock.mode: auto``) its digests are recorded with the other
  auto-lock entries, only after the whole load succeeded;
* ``required``: as ``verify``, and an unpinned argument set is refused with
  ``not-locked`` here, before the sandbox starts, naming the exact
  ``securehub lock`` command that pins it.

:meth:`OutputGuard.check` compares the canonical digests
(:mod:`securehub.pipeline.state_digest`) of what the child produced: the state and
config always, the exported program only when this load exported with the
very example inputs the lock recorded (another input gives another program).
The caller checks before anything is rebuilt, cached or recorded, so a
mismatch leaves nothing behind. This is the anchor against a time-bomb
hubconf (same pinned code, different weights after a date), an environment-
or randomness-dependent entrypoint, and a child that forges its own output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from securehub._util.cli_args import arg_options
from securehub._util.digest import args_sha256
from securehub.config.lockfile import EntrypointEntry, OutputPin
from securehub.errors import HashMismatch, NotLocked, OutputMismatch
from securehub.pipeline.context import Context
from securehub.pipeline.state_digest import OutputDigests
from securehub.pipeline.tree import VerifiedTree
from securehub.sandbox.example_inputs import example_inputs_digest, example_tensors

__all__ = ["OutputGuard", "output_guard"]


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

    def check(self, found: OutputDigests, *, cached_key: str | None = None) -> None:
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

    def recorded(self, found: OutputDigests) -> tuple[str, OutputPin] | None:
        """The ``(args_sha256, pin)`` ``lock.mode: auto`` records for an unpinned output, else ``None``."""
        if not self.record:
            return None
        return self.args_digest, OutputPin(found.state_sha256, found.config_sha256, found.program_sha256)


def output_guard(
    ctx: Context,
    tree: VerifiedTree,
    spec: str,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    example_inputs: Sequence[torch.Tensor] | None,
) -> OutputGuard:
    """The guard for one load, decided before the sandbox runs; ``NotLocked`` under ``required`` if unpinned."""
    digest = args_sha256(args, kwargs)
    base = OutputGuard(spec, entrypoint, digest)
    mode = ctx.policy.lock.outputs
    if mode == "off":
        return base
    ep = _locked_entrypoint(tree, entrypoint)
    pin = ep.output(digest) if ep is not None else None
    if pin is None:
        if mode == "required":
            raise NotLocked(_unpinned_message(spec, entrypoint, args, kwargs, ep))
        record = ctx.policy.lock.mode == "auto" and ctx.lock_path is not None and tree.commit is not None
        return OutputGuard(spec, entrypoint, digest, record=record)
    check_program = (
        pin.program_sha256 is not None
        and ep is not None
        and bool(ep.example_inputs)
        and example_inputs is not None
        and "export" in ctx.policy.reconstruct.strategies
        and _same_inputs(example_inputs, ep)
    )
    return OutputGuard(spec, entrypoint, digest, pin=pin, check_program=check_program)


def _locked_entrypoint(tree: VerifiedTree, entrypoint: str) -> EntrypointEntry | None:
    """The entrypoint's lock entry, only when the tree is the pinned commit (a local dir has none)."""
    entry = tree.entry
    if entry is None or tree.commit is None or tree.commit != entry.commit:
        return None
    return entry.entrypoints.get(entrypoint)


def _same_inputs(example_inputs: Sequence[torch.Tensor], ep: EntrypointEntry) -> bool:
    """Whether ``example_inputs`` are exactly the tensors the lock's recorded shapes give (what lock ran)."""
    assert ep.example_inputs is not None  # noqa: S101 - checked by the caller
    return example_inputs_digest(example_inputs) == example_inputs_digest(example_tensors(ep.example_inputs))


def _unpinned_message(
    spec: str, entrypoint: str, args: Sequence[Any], kwargs: Mapping[str, Any], ep: EntrypointEntry | None
) -> str:
    """``not-locked`` for an unpinned argument set: what is missing and the exact command that pins it."""
    command = [f"securehub lock {spec} -e {entrypoint}"]
    command += arg_options(kwargs)
    if ep is not None and ep.example_inputs:
        dims = ["x".join(str(d) for d in s.shape) + f":{s.dtype}" for s in ep.example_inputs]
        command += [f"--example-input {d}" for d in dims]
    if ep is not None:
        command.append("--upgrade")  # the entrypoint is locked already: only --upgrade re-runs it
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
