"""Forged leading arguments of higher-order ops in an exported program (red team 12, left alone there).

``wrap_with_autocast(device_type, dtype, enabled, cache_enabled, subgraph, *operands)`` and
``wrap_with_set_grad_enabled(enabled, subgraph, *operands)`` have no operator schema for the parent's
per-slot type check to bind to, so their leading arguments were any admitted scalar or string: a
``"cuda"`` device type or an int dtype was rebuilt and failed only inside torch's autocast at
``forward()``. They are now enumerated (``cpu`` autocast to bfloat16/float16, bool flags): anything else is
``reconstruct-refused`` before a module exists.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from securehub.errors import SecureHubError
from securehub.reconstruct.export import reconstruct_export
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import ExportInfo, parse_export

Program = dict[str, Any]


class _Net(nn.Module):
    """A bfloat16 autocast region and a no-grad region, each exported as a higher-order op."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.fc(x)
        with torch.no_grad():
            z = y.float() * 2
        return z + 1


def _node(program: Program, name: str) -> dict[str, Any]:
    return next(n for n in program["graph_module"]["graph"]["nodes"] if n["target"].endswith(name))


def _leading(name: str, index: int, arg: dict[str, Any]) -> Callable[[Program], None]:
    def edit(program: Program) -> None:
        _node(program, name)["inputs"][index]["arg"] = arg

    return edit


FORGERIES: dict[str, Callable[[Program], None]] = {
    "autocast-device-cuda": _leading("wrap_with_autocast", 0, {"as_string": "cuda"}),
    "autocast-device-privateuseone": _leading("wrap_with_autocast", 0, {"as_string": "privateuseone"}),
    "autocast-device-int": _leading("wrap_with_autocast", 0, {"as_int": 0}),
    "autocast-dtype-int": _leading("wrap_with_autocast", 1, {"as_int": 999}),
    "autocast-dtype-float32": _leading("wrap_with_autocast", 1, {"as_scalar_type": 7}),
    "autocast-enabled-int": _leading("wrap_with_autocast", 2, {"as_int": 2}),
    "autocast-cache-string": _leading("wrap_with_autocast", 3, {"as_string": "yes"}),
    "grad-enabled-int": _leading("wrap_with_set_grad_enabled", 0, {"as_int": 1}),
    "grad-enabled-string": _leading("wrap_with_set_grad_enabled", 0, {"as_string": "True"}),
}


@pytest.fixture(scope="module")
def exported() -> tuple[ExportInfo, Program, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = _Net().eval()
    tensors, aliases = collect_tensors(model)
    package = export_program(model, (torch.randn(2, 4),), tensors, aliases)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    program = json.loads(package.program_json)
    targets = [n["target"] for n in program["graph_module"]["graph"]["nodes"]]
    assert any(t.endswith("wrap_with_autocast") for t in targets), targets
    assert any(t.endswith("wrap_with_set_grad_enabled") for t in targets), targets
    return export, program, tensors


def _with(exported: tuple[ExportInfo, Program, dict[str, torch.Tensor]], edit: Callable[[Program], None]) -> ExportInfo:
    export, program, _ = exported
    edited = copy.deepcopy(program)
    edit(edited)
    return ExportInfo(export.state, export.constants, export.parameters, json.dumps(edited).encode())


def test_the_honest_program_with_autocast_and_no_grad_loads_control(
    exported: tuple[ExportInfo, Program, dict[str, torch.Tensor]],
) -> None:
    module = reconstruct_export(_with(exported, lambda p: None), exported[2])
    assert module(torch.ones(2, 4)).dtype == torch.float32


@pytest.mark.parametrize("case", sorted(FORGERIES))
def test_forged_higher_order_leading_argument_is_reconstruct_refused(
    exported: tuple[ExportInfo, Program, dict[str, torch.Tensor]], case: str
) -> None:
    with pytest.raises(SecureHubError) as exc:
        reconstruct_export(_with(exported, FORGERIES[case]), exported[2])
    assert exc.value.code == "reconstruct-refused", f"{case}: {exc.value}"
    assert "higher-order op" in str(exc.value), f"{case}: refused elsewhere: {exc.value}"
