"""The child sends its exported program without node metadata, so the pin is the same wherever the tree lies.

torch's serializer writes each node's ``stack_trace`` (the absolute paths of the repository's files),
``nn_module_stack`` and ``torch_fn`` (per-process counters) into the program JSON; ``program_sha256``
covers the bytes the child sends, so the same code exported from two caches pinned two programs.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from securehub.reconstruct.export import reconstruct_export
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import parse_export

MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return torch.cond(y.sum() > 0, lambda z: z.sin(), lambda z: z.cos(), (y,))
"""


def _graphs(program: dict[str, Any]) -> list[dict[str, Any]]:
    found, todo = [], [program["graph_module"]["graph"]]
    while todo:
        graph = todo.pop()
        found.append(graph)
        inputs = [i["arg"] for n in graph["nodes"] for i in n["inputs"]]
        todo.extend(arg["as_graph"]["graph"] for arg in inputs if "as_graph" in arg)
    return found


def _exported_from(directory: Path) -> bytes:
    """``Net`` imported from a copy of its file under ``directory``, exported as the child does."""
    directory.mkdir(parents=True)
    (directory / "netmod.py").write_text(MODEL)
    sys.path.insert(0, str(directory))
    try:
        import netmod  # noqa: PLC0415 - each call imports its own copy

        torch.manual_seed(0)
        model = netmod.Net().eval()
        tensors, aliases = collect_tensors(model)
        package = export_program(model, (torch.randn(2, 4),), tensors, aliases)
        export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
        rebuilt = reconstruct_export(export, tensors)
        torch.testing.assert_close(rebuilt(torch.ones(2, 4)), model(torch.ones(2, 4)))
        return package.program_json
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("netmod", None)
        shutil.rmtree(directory)


def test_the_same_code_in_two_places_exports_the_same_program(tmp_path: Path) -> None:
    here = _exported_from(tmp_path / "cache-a" / "trees" / "x")
    there = _exported_from(tmp_path / "elsewhere" / "b")
    assert here == there
    program = json.loads(here)
    graphs = _graphs(program)
    assert len(graphs) == 3  # the forward and cond's two branches
    assert all(node["metadata"] == {} for graph in graphs for node in graph["nodes"])
    assert program["graph_module"]["metadata"] == {}
    assert b"stack_trace" not in here and b"cache-a" not in here and b"torch_fn" not in here
