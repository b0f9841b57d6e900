"""``repeat_interleave`` with ``output_size`` and forged repeats (red team 8).

Given ``output_size``, the CPU kernel of ``aten::repeat_interleave`` skips its check that repeats are
non-negative and trusts them to sum to that size. An honest exported program
``x.repeat_interleave(self.reps, dim=0, output_size=4)`` whose ``reps`` buffer a hostile child set to
``[-1, 5]`` in its state (no program edit at all) was rebuilt, and its first ``forward()`` corrupted
the parent's heap (``free(): invalid pointer``, SIGABRT); ``[-3, 5]`` with ``output_size=2`` was
SIGSEGV. Every ``repeat_interleave`` call in a rebuilt program now checks its repeats first
(``export.CHECKED_OPS``): a ``RuntimeError`` at ``forward()``. Forward() of the hostile program runs
only in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from securehub.reconstruct.export import reconstruct_export
from tests.attacks.test_export_program_attacks import Exported

ROOT = Path(__file__).resolve().parents[2]


class Repeats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("reps", torch.tensor([1, 3]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.reps, dim=0, output_size=4)


_PROBE = textwrap.dedent(
    """
    import sys, torch
    from tests.attacks.test_export_repeat_interleave_attacks import Repeats
    from tests.attacks.test_export_program_attacks import Exported
    from securehub.reconstruct.export import reconstruct_export
    exported = Exported(Repeats(), (torch.randn(2, 3),))
    exported.tensors["reps"] = torch.tensor([int(v) for v in sys.argv[1].split(",")])
    module = reconstruct_export(exported.export, exported.tensors)
    print("REBUILT", flush=True)
    try:
        out = module(torch.randn(2, 3))
    except RuntimeError as exc:
        print("REFUSED-AT-FORWARD", str(exc)[:200], flush=True)
    else:
        print("RAN", tuple(out.shape), flush=True)
    """
)


@pytest.mark.parametrize(("reps", "says"), [("-1,5", "negative"), ("-3,7", "negative"), ("1,1", "sum to 2")])
def test_forged_repeats_never_reach_the_kernel(reps: str, says: str) -> None:
    proc = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE, reps], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )  # fmt: skip
    assert proc.returncode == 0, f"rc={proc.returncode} (negative: killed by a signal)\n{proc.stderr[-2000:]}"
    assert "REBUILT" in proc.stdout
    assert "REFUSED-AT-FORWARD" in proc.stdout and says in proc.stdout, proc.stdout


def test_honest_repeat_interleave_program_still_computes_the_same() -> None:
    model = Repeats()
    exported = Exported(model, (torch.randn(2, 3),))
    module = reconstruct_export(exported.export, exported.tensors)
    x = torch.randn(2, 3)
    assert torch.equal(module(x), model(x))
