"""Public aten kernels that trust their arguments to agree, reached from a hostile exported program.

``aten.lstm.input`` is what ``torch.export`` emits for ``nn.LSTM``; its CPU (oneDNN) kernel takes the
hidden size from ``hx`` and never checks it against the weights. A child that enlarges the
``aten.zeros`` making ``h0``/``c0`` in its exported program (``[1, 2, 8]`` -> ``[1, 2, 16]``) got a
module whose forward() returned the parent's heap (NaNs and stale values beyond the 8-wide weights);
``[1, 2, 4096]`` crashed the parent with SIGSEGV (measured in a probe subprocess). GRU/RNN and the
cell operators take another path, which checks. The same class, found by probing admitted kernels
with forged shapes and values: the batch-norm kernels (short per-channel tensors: heap read, and
SIGSEGV in training mode), ``_weight_norm`` with a short ``g`` (heap corruption, abort) and
``embedding_bag`` with negative offsets (an out-of-bounds read whose heap word came back in the error
message).

Every such call in the rebuilt graph now first passes a check (``export.CHECKED_OPS``: a run on
``meta`` copies of its arguments, where torch checks every shape, or an explicit check of what the
kernel trusts), so a forged size is a ``RuntimeError`` at forward instead of a heap read.
Forward() of a hostile program is run only in a subprocess.
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


class _Forgeable(nn.Module):
    """An honest program emitting ``embedding_bag`` (offsets from a buffer) and ``_weight_norm``."""

    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(10, 4, mode="sum")
        self.register_buffer("offsets", torch.tensor([0, 2]))
        self.wn = nn.utils.weight_norm(nn.Linear(4, 4096))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.wn(self.bag(idx, self.offsets))


def _forge_state(exported: Exported, case: str) -> None:
    """What a hostile child sends: the program unchanged (or its metadata adjusted), the state forged."""
    if case == "bag-negative-offsets":  # SIGSEGV before
        exported.tensors["offsets"] = torch.tensor([0, -100_000])
    elif case == "bag-offsets-past-the-indices":
        exported.tensors["offsets"] = torch.tensor([0, 100_000])
    elif case == "weight-norm-short-g":  # g of 1 element for 4096 rows: SIGSEGV before
        exported.tensors["wn.weight_g"] = torch.ones(1, 1)
        values = exported.program["graph_module"]["graph"]["tensor_values"]
        values["p_wn_weight_g"]["sizes"] = [{"as_int": 1}, {"as_int": 1}]


_STATE_PROBE = textwrap.dedent(
    """
    import sys, torch
    from tests.attacks.test_export_kernel_trust_attacks import _Forgeable, _forge_state
    from tests.attacks.test_export_program_attacks import Exported
    from securehub.reconstruct.export import reconstruct_export
    torch.manual_seed(0)
    exported = Exported(_Forgeable().eval(), (torch.tensor([1, 2, 3, 4]),))
    _forge_state(exported, sys.argv[1])
    module = reconstruct_export(exported.edited(lambda p: None), exported.tensors)
    print("REBUILT", flush=True)
    try:
        with torch.no_grad():
            out = module(*exported.inputs)
    except RuntimeError as exc:
        print("REFUSED-AT-FORWARD", str(exc)[:200], flush=True)
    else:
        print("RAN", tuple(out.shape), flush=True)
    """
)


@pytest.mark.parametrize(
    ("case", "says"),
    [
        # before: the kernel read indices[-100000] and put the heap word it found in its error message
        ("bag-negative-offsets", "embedding_bag: offsets"),
        ("bag-offsets-past-the-indices", "embedding_bag: offsets"),
        # before: malloc_consolidate(): invalid chunk size -- heap corruption, abort
        ("weight-norm-short-g", "_weight_norm: g has shape"),
    ],
)
def test_forged_state_behind_a_trusting_kernel_never_reaches_it(case: str, says: str) -> None:
    proc = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _STATE_PROBE, case], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )  # fmt: skip
    assert proc.returncode == 0, f"rc={proc.returncode} (negative: killed by a signal)\n{proc.stderr[-2000:]}"
    assert "REFUSED-AT-FORWARD" in proc.stdout and says in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("op", "args"),
    [
        # eval BatchNorm with 2-element weight/stats over 10**5 channels: heap read (NaNs); training: SIGSEGV
        ("_native_batch_norm_legit_no_training.default", "x, short, short, short, short, 0.1, 1e-5"),
        ("_native_batch_norm_legit.default", "x, short, short, short.clone(), short.clone(), True, 0.1, 1e-5"),
        ("_native_batch_norm_legit.no_stats", "x, short, short, True, 0.1, 1e-5"),
        ("native_batch_norm.default", "x, short, short, short.clone(), short.clone(), True, 0.1, 1e-5"),
    ],
)
def test_batch_norm_kernels_with_short_per_channel_tensors_are_checked(op: str, args: str) -> None:
    probe = textwrap.dedent(
        f"""
        import torch
        from securehub.reconstruct.export import kernel_checked
        x, short = torch.randn(2, 100_000, 1), torch.ones(2)
        try:
            kernel_checked(torch.ops.aten.{op}, {args})
        except RuntimeError as exc:
            print("REFUSED", str(exc)[:120])
        else:
            print("RAN")
        """
    )
    proc = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )  # fmt: skip
    assert proc.returncode == 0 and "REFUSED" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr[-1000:])


def test_honest_bag_weight_norm_program_still_computes_the_same() -> None:
    torch.manual_seed(0)
    exported = Exported(_Forgeable().eval(), (torch.tensor([1, 2, 3, 4]),))
    module = reconstruct_export(exported.export, exported.tensors)
    assert "kernel_checked" in module.code  # both calls are routed through their checks
    with torch.no_grad():
        assert torch.allclose(module(*exported.inputs), exported.model(*exported.inputs))
