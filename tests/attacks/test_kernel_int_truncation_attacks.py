"""Geometry a kernel checks as 64-bit values and then narrows to ``int`` (red team 8).

``aten::col2im`` (``nn.Fold``) checks ``padding``/``stride``/``dilation`` as 64-bit integers and then
hands them to a kernel taking ``int``: ``nn.Fold((4, 4), 2, padding=2**31)`` passes the check, and
its first ``forward()`` crashes the process (SIGSEGV). No forging was needed: a hubconf returning
that layer was rebuilt by ``trusted`` under ``default`` (the recorder writes its arguments as they
are), and an exported program carrying ``col2im`` with that padding was admitted by ``export``.

Now ``trusted`` refuses any integer outside 32 bits in a constructor argument or a replayed knob,
and ``col2im``/``im2col`` calls in a rebuilt program pass a 32-bit check first
(``export.CHECKED_OPS``). A hostile program's ``forward()`` runs only in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct.export import reconstruct_export
from securehub.reconstruct.rebuild import reconstruct
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._reconstruct_helpers import record
from tests._servers import GitServer
from tests.attacks.test_export_program_attacks import Exported, Program

ROOT = Path(__file__).resolve().parents[2]


def _set_ints(op: str, name: str, values: list[int]) -> Any:
    def mutate(p: Program) -> None:
        (node,) = [n for n in p["graph_module"]["graph"]["nodes"] if n["target"] == f"torch.ops.aten.{op}.default"]
        (arg,) = [a for a in node["inputs"] if a["name"] == name]
        arg["arg"] = {"as_ints": values}

    return mutate


_PROBE = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from tests.attacks.test_kernel_int_truncation_attacks import _set_ints
    from tests.attacks.test_export_program_attacks import Exported
    from securehub.reconstruct.export import reconstruct_export
    op, name, value = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if op == "col2im":
        exported = Exported(nn.Sequential(nn.Fold((4, 4), 2, padding=1)), (torch.ones(1, 4, 25),))
    else:
        exported = Exported(nn.Sequential(nn.Unfold(2, padding=1)), (torch.ones(1, 1, 4, 4),))
    module = reconstruct_export(exported.edited(_set_ints(op, name, [value, value])), exported.tensors)
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
    ("op", "name", "value"),
    [
        ("col2im", "padding", 2**31),  # SIGSEGV before the check
        ("col2im", "padding", 2**62),  # truncated to 0: ran with another padding than the program says
        ("col2im", "stride", 2**31),  # ran with a truncated stride
        ("col2im", "dilation", -(2**31) - 1),
        ("im2col", "padding", 2**31),
        ("im2col", "stride", 2**32 + 1),
    ],
)
def test_exported_geometry_beyond_32_bits_never_reaches_the_kernel(op: str, name: str, value: int) -> None:
    proc = subprocess.run(  # noqa: S603 - our own interpreter and probe
        [sys.executable, "-c", _PROBE, op, name, str(value)], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )  # fmt: skip
    assert proc.returncode == 0, f"rc={proc.returncode} (negative: killed by a signal)\n{proc.stderr[-2000:]}"
    assert "REBUILT" in proc.stdout
    assert "REFUSED-AT-FORWARD" in proc.stdout and "32-bit" in proc.stdout, proc.stdout


@pytest.mark.parametrize(
    ("model", "x"),
    [
        (nn.Sequential(nn.Fold((4, 4), 2, padding=1)), torch.randn(1, 4, 25)),
        (nn.Sequential(nn.Unfold(2, padding=1, stride=2)), torch.randn(1, 1, 4, 4)),
    ],
)
def test_honest_fold_and_unfold_programs_still_compute_the_same(model: nn.Module, x: torch.Tensor) -> None:
    exported = Exported(model, (x,))
    module = reconstruct_export(exported.export, exported.tensors)
    with torch.no_grad():
        assert torch.equal(module(x), model(x))


# --------------------------------------------------------------------------- trusted


def _rebuild(config: dict[str, Any], state: Path) -> nn.Module:
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["trusted"], trusted_modules=["torch.nn"], tree=None
    )
    return model


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("padding", 2**31),
        ("padding", [2**31, 0]),
        ("stride", -(2**31) - 1),
        ("dilation", {"$tuple": [1, 2**40]}),
        ("output_size", [4, 2**63]),
    ],
)
def test_trusted_constructor_integer_beyond_32_bits_is_refused(tmp_path: Path, where: str, value: Any) -> None:
    _, config, state = record(lambda: nn.Sequential(nn.Fold((4, 4), 2, padding=1)), tmp_path)
    config["root"]["children"]["0"]["kwargs"][where] = value
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "does not fit 32 bits" in str(exc.value), str(exc.value)


def test_trusted_integer_beyond_32_bits_inside_a_partial_is_refused(tmp_path: Path) -> None:
    _, config, state = record(lambda: nn.TransformerEncoderLayer(8, 2, 16), tmp_path)
    config["root"]["kwargs"]["activation"] = {
        "$partial": {"func": {"$function": "torch.nn.functional:softmax"}, "args": [], "kwargs": {"dim": 2**31}}
    }
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "does not fit 32 bits" in str(exc.value)


def test_trusted_replayed_knob_beyond_32_bits_is_refused(tmp_path: Path) -> None:
    _, config, state = record(lambda: nn.Sequential(nn.Conv2d(1, 1, 2)), tmp_path)
    config["root"]["children"]["0"]["replay"] = {"children": [], "attrs": {"padding": {"$tuple": [2**31, 0]}}}
    with pytest.raises(ReconstructRefused) as exc:
        _rebuild(config, state)
    assert exc.value.code == "reconstruct-refused" and "does not fit 32 bits" in str(exc.value)


def test_trusted_fold_within_32_bits_still_rebuilds_control(tmp_path: Path) -> None:
    model, config, state = record(lambda: nn.Sequential(nn.Fold((4, 4), 2, padding=1)), tmp_path)
    x = torch.randn(1, 4, 25)
    assert torch.equal(_rebuild(config, state)(x), model(x))


# --------------------------------------------------------------------------- end to end: an honest-looking hubconf

HUBCONF = """
from torch import nn

dependencies = ["torch"]


def benign():
    return nn.Sequential(nn.Fold((4, 4), 2, padding=1))


def fold_padding_2_31():
    return nn.Sequential(nn.Fold((4, 4), 2, padding=2**31))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("int-truncation"), git_server) as env:
        spec = env.spec(publish(env, "int-truncation", {"hubconf.py": HUBCONF}))
        securehub.load(spec, "benign", policy="default", verbose=False)  # the tree is cached
        yield env, spec


def _results(hub: Path) -> list[str]:
    return sorted(str(p.relative_to(hub)) for p in (hub / "results").rglob("*")) if (hub / "results").exists() else []


@NEEDS_FULL_SANDBOX
def test_fold_with_padding_beyond_32_bits_is_refused_e2e(hub: tuple[HubEnv, str]) -> None:
    """Before the fix this loaded under ``default`` and ``model(torch.ones(1, 4, 9))`` was SIGSEGV."""
    env, spec = hub
    before, results = Snapshot.take(env.hub), _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "fold_padding_2_31", policy="default", verbose=False)
    assert exc.value.code == "reconstruct-refused" and "does not fit 32 bits" in str(exc.value), str(exc.value)
    before.assert_unchanged(env.hub)
    assert _results(env.hub) == results, "a refused result was cached"
