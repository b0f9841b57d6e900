"""Public aten kernels that trust their arguments to agree, reached from a hostile exported program.

``aten.lstm.input`` is what ``torch.export`` emits for ``nn.LSTM``; its CPU (oneDNN) kernel takes the
hidden size from ``hx`` and never checks it against the weights. A child that enlarges the
``aten.zeros`` making ``h0``/``c0`` in its exported program (``[1, 2, 8]`` -> ``[1, 2, 16]``) got a
module whose forward() returned the parent's heap (NaNs and stale values beyond the 8-wide weights);
``[1, 2, 4096]`` crashed the parent with SIGSEGV (measured in a probe subprocess). GRU/RNN and the
cell operators take another path, which checks.

Every such call in the rebuilt graph now first runs on ``meta`` copies of its arguments (torch's
composite implementation, which checks every shape), so a forged size is a ``RuntimeError`` at
forward instead of a heap read. Forward() of the hostile program is run only in a subprocess.
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
from tests.attacks.test_export_program_attacks import Exported, Program

ROOT = Path(__file__).resolve().parents[2]


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 8, batch_first=True)
        self.gru = nn.GRU(4, 8, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lstm(x)[0], self.gru(x)[0]


def _widen_hx(hidden: int) -> object:
    def mutate(p: Program) -> None:
        nodes = p["graph_module"]["graph"]["nodes"]
        lstm = next(n for n in nodes if n["target"] == "torch.ops.aten.lstm.input")
        hx = {t["name"] for t in lstm["inputs"][1]["arg"]["as_tensors"]}
        for node in nodes:
            if node["outputs"][0].get("as_tensor", {}).get("name") in hx:
                arg = node["inputs"][0]["arg"]  # aten.zeros(size): as_sym_ints under a dynamic batch
                if "as_ints" in arg:
                    arg["as_ints"] = [*arg["as_ints"][:-1], hidden]
                else:
                    arg["as_sym_ints"] = [*arg["as_sym_ints"][:-1], {"as_int": hidden}]

    return mutate


_PROBE = textwrap.dedent(
    """
    import sys, torch
    from tests.attacks.test_export_kernel_trust_attacks import _Recurrent, _widen_hx
    from tests.attacks.test_export_program_attacks import Exported
    from securehub.reconstruct.export import reconstruct_export
    torch.manual_seed(0)
    exported = Exported(_Recurrent(), (torch.randn(2, 3, 4),))
    module = reconstruct_export(exported.edited(_widen_hx(int(sys.argv[1]))), exported.tensors)
    print("REBUILT", flush=True)
    try:
        with torch.no_grad():
            out, _ = module(*exported.inputs)
    except RuntimeError as exc:
        print("REFUSED-AT-FORWARD", str(exc)[:200], flush=True)
    else:
        print("RAN", tuple(out.shape), bool(out.isnan().any()), flush=True)
    """
)


@pytest.mark.parametrize("hidden", [16, 4096])
def test_lstm_hidden_state_wider_than_its_weights_never_reaches_the_kernel(hidden: int) -> None:
    """16: the kernel read past the weights (NaNs, heap values in the output); 4096: SIGSEGV."""
    proc = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE, str(hidden)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )  # fmt: skip
    assert proc.returncode == 0, f"rc={proc.returncode} (negative: killed by a signal)\n{proc.stderr[-2000:]}"
    assert "REBUILT" in proc.stdout
    assert "REFUSED-AT-FORWARD" in proc.stdout, proc.stdout


def test_honest_lstm_program_still_computes_the_same() -> None:
    torch.manual_seed(0)
    exported = Exported(_Recurrent(), (torch.randn(2, 3, 4),))
    module = reconstruct_export(exported.export, exported.tensors)
    with torch.no_grad():
        for x in (*exported.inputs, torch.randn(5, 3, 4)):  # and another batch size (dynamic batch)
            for got, want in zip(module(x), exported.model(x), strict=True):
                assert torch.allclose(got, want, atol=1e-6)
