"""Fuzz the exported-program JSON (securehub/reconstruct/export_schema.py) and its rebuild
(securehub/reconstruct/export.py): a module or ``reconstruct-refused``/``reconstruct-mismatch``.

Inputs: a real program torch exported (dynamic batch, so it carries symbolic sizes and range
constraints), mutated structurally; and arbitrary JSON values.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct.export import reconstruct_export
from securehub.reconstruct.export_schema import check_program
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import ExportInfo
from tests.fuzz._harness import json_values, mutated, run_parser


@functools.cache
def _exported() -> tuple[dict[str, Any], ExportInfo, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval()
    tensors, aliases = collect_tensors(model)
    package = export_program(model, (torch.randn(2, 4),), tensors, aliases)
    info = ExportInfo(package.state, package.constants, package.parameters, package.program_json)
    return json.loads(package.program_json), info, dict(tensors)


@st.composite
def _mutated_program(draw: st.DrawFn) -> dict[str, Any]:
    program, _, _ = _exported()
    return draw(mutated(program, max_mutations=3))  # type: ignore[no-any-return]


def _check(data: bytes) -> None:
    run_parser("export.check_program", lambda: check_program(data), (ReconstructRefused,))


def _unhashable_device() -> bytes:
    program, _, _ = _exported()
    edited = json.loads(json.dumps(program))
    next(iter(edited["graph_module"]["graph"]["tensor_values"].values()))["device"]["type"] = [[0], "cpu"]
    return json.dumps(edited).encode()


@given(_mutated_program().map(lambda p: json.dumps(p).encode()))
@example(b"[" * 100_000)
@example(b'{"verifiers": [["ATEN"]]}')
@example(b'{"graph_module": ' + b"{" * 5000)
@example(b"NaN")
def test_fuzz_export_program_schema(data: bytes) -> None:
    _check(data)


def test_fuzz_export_program_regressions() -> None:
    """TypeError (unhashable device type) escaped check_program; fixed by _export_schema._is_one_of."""
    _check(_unhashable_device())


@given(json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzz_export_program_random_json(data: bytes) -> None:
    _check(data)


@settings(max_examples=25)
@given(_mutated_program())
def test_fuzz_export_program_rebuild(program: dict[str, Any]) -> None:
    """What passes the schema is deserialised by torch in the parent: still only a module or a refusal."""
    _, info, state = _exported()
    export = ExportInfo(info.state, info.constants, info.parameters, json.dumps(program).encode())
    run_parser("export.rebuild", lambda: reconstruct_export(export, state), (SecureHubError,))
