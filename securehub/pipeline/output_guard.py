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

:meth:`~securehub.trust.result.OutputGuard.check` (a pure decision in
:mod:`securehub.trust.result`, like the choice of the guard) compares the canonical digests
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
from typing import Any

import torch

from securehub.config.lockfile import EntrypointEntry
from securehub.pipeline.context import Context
from securehub.pipeline.tree import VerifiedTree
from securehub.sandbox.example_inputs import example_inputs_digest, example_tensors
from securehub.trust.result import OutputGuard, decide_output_guard, locked_entrypoint

__all__ = ["output_guard"]


def output_guard(
    ctx: Context,
    tree: VerifiedTree,
    spec: str,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    example_inputs: Sequence[torch.Tensor] | None,
) -> OutputGuard:
    """The guard for one load, decided before the sandbox runs; ``NotLocked`` under ``required`` if unpinned
    (:func:`securehub.trust.result.decide_output_guard`)."""
    policy = ctx.policy
    return decide_output_guard(
        (spec, entrypoint, args, kwargs),
        mode=policy.lock.outputs,
        ep=locked_entrypoint(tree.entry, tree.commit, entrypoint),
        may_record=policy.lock.mode == "auto" and ctx.lock_path is not None and tree.commit is not None,
        export_allowed="export" in policy.reconstruct.strategies,
        same_inputs=lambda ep: example_inputs is not None and _same_inputs(example_inputs, ep),
    )


def _same_inputs(example_inputs: Sequence[torch.Tensor], ep: EntrypointEntry) -> bool:
    """Whether ``example_inputs`` are exactly the tensors the lock's recorded shapes give (what lock ran)."""
    assert ep.example_inputs is not None  # noqa: S101 - checked by the caller
    return example_inputs_digest(example_inputs) == example_inputs_digest(example_tensors(ep.example_inputs))
