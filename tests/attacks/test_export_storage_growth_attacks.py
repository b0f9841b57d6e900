"""Storage growth through sibling overloads: a hostile exported program hands back the parent's freed heap.

Red team 6. ``aten::resize_``/``resize_as_``/``set_`` were refused by schema name because the bytes they grow
are uninitialised, and the ``aten.empty`` family is zero-filled where it is made. But the same kernel was
admitted under other names: the functional twin torch generates for ``resize_`` (``aten.resize``, which is
``resize_`` on a copy), ``aten.resize_as``, and the ``out=`` overloads (``aten.resize.out(x, size, out=x)``;
an ``out=`` kernel resizes whatever tensor it is handed and leaves to each kernel whether the grown bytes are
written). A child whose model calls ``torch.ops.aten.resize(x, [2, 4096])`` -- no JSON editing needed --
got a rebuilt module whose ``forward()`` returned 8184 of 8192 values equal to a secret the parent had freed
just before the call.

Now an overload torch generated (``torch.Tag.generated``) is admitted only from
``export_schema.GENERATED_OPS_ALLOWED`` and one that writes an argument other than ``self`` only from
``export_schema.WRITES_ALLOWED``: ``reconstruct-refused`` before anything is deserialised. These tests never
run ``forward()`` of a hostile program (it would read the test runner's heap).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct import export_schema
from securehub.reconstruct.export import reconstruct_export
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context
from tests._servers import GitServer
from tests.attacks.test_export_program_attacks import Exported, Program, refused_end_to_end

_RESIZE = "torch.ops.aten.resize.default"


class _Resize(nn.Module):
    """What a hostile hubconf's model does: grow a fresh tensor with the functional ``resize`` and return it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten.resize(self.fc(x), [x.shape[0], 4096])


class _Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.bn(self.fc(x))).add_(1)


@pytest.fixture(scope="module")
def resize() -> Exported:
    return Exported(_Resize(), (torch.randn(2, 4),))


def _nodes(p: Program) -> list[Program]:
    nodes: list[Program] = p["graph_module"]["graph"]["nodes"]
    return nodes


def _resize_node(p: Program) -> Program:
    (node,) = [n for n in _nodes(p) if n["target"] == _RESIZE]
    return node


def _refused_without_running(exported: Exported, mutate: Any) -> ReconstructRefused:
    with pytest.raises(SecureHubError) as exc:
        reconstruct_export(exported.edited(mutate), exported.tensors)  # no forward(): it would read our heap
    assert type(exc.value) is ReconstructRefused, f"{type(exc.value).__name__}: {exc.value}"
    assert exc.value.code == "reconstruct-refused"
    return exc.value


def test_functional_resize_in_the_models_own_code_is_refused(resize: Exported) -> None:
    """The PoC as torch.export writes it: ``aten.resize.default`` (the generated twin of ``resize_``)."""
    assert _RESIZE in json.dumps(resize.program)
    err = _refused_without_running(resize, lambda p: None)
    assert "aten.resize.default" in str(err) and "not an allowlisted torch operator" in str(err)


def _retarget(target: str, *, out: bool = False) -> Any:
    def mutate(p: Program) -> None:
        node = _resize_node(p)
        node["target"] = target
        if out:  # the grown tensor is the node's own input, handed back as out=
            node["inputs"].append({"name": "out", "arg": node["inputs"][0]["arg"], "kind": 2})

    return mutate


@pytest.mark.parametrize(
    ("target", "out"),
    [
        ("torch.ops.aten.resize.out", True),  # out=x: x grown, 8184 of 8192 values the parent's freed heap
        ("torch.ops.aten.resize_as.default", False),  # generated twin of resize_as_
        ("torch.ops.aten.resize_as.out", True),
        ("torch.ops.aten.add.out", True),  # any out= overload resizes what it is handed
        ("torch.ops.aten.empty_like.out", True),
        ("torch.ops.aten.zero.default", False),  # generated functional twins: only a listed few
        ("torch.ops.aten.uniform.default", False),
        ("torch.ops.aten.rrelu_with_noise.default", False),  # writes its `noise` argument
    ],
)
def test_sibling_overloads_of_storage_growth_are_refused(resize: Exported, target: str, out: bool) -> None:
    err = _refused_without_running(resize, _retarget(target, out=out))
    assert target.removeprefix("torch.ops.") in str(err) and "not an allowlisted torch operator" in str(err)


def test_no_admitted_overload_writes_beyond_self_or_was_generated_unless_listed() -> None:
    """Over every aten overload of this torch: the two allowlists are the only exceptions."""
    leaks = []
    for name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, name, None)
        for overload in getattr(packet, "overloads", list)():
            op = getattr(packet, overload)
            if not export_schema.operator_target_allowed(op):
                continue
            qualified = f"{op._schema.name}.{overload}"
            writes = {a.name for a in op._schema.arguments if a.alias_info is not None and a.alias_info.is_write}
            if (writes - {"self"} and qualified not in export_schema.WRITES_ALLOWED) or (
                torch.Tag.generated in op.tags and qualified not in export_schema.GENERATED_OPS_ALLOWED
            ):
                leaks.append(qualified)
    assert leaks == []
    for qualified in export_schema.WRITES_ALLOWED | export_schema.GENERATED_OPS_ALLOWED:
        name, overload = qualified.removeprefix("aten::").rsplit(".", 1)
        assert export_schema.operator_target_allowed(getattr(getattr(torch.ops.aten, name), overload))


def test_in_place_methods_and_batch_norm_still_load() -> None:
    """Honest programs keep working: in-place ``self`` writes (``relu_``, ``add_``) and a BatchNorm."""
    plain = Exported(_Plain(), (torch.randn(3, 4),))
    program = json.dumps(plain.program)
    assert "aten.relu_.default" in program and "aten.add_.Tensor" in program
    module = reconstruct_export(plain.export, plain.tensors)
    with torch.no_grad():
        assert torch.allclose(module(*plain.inputs), plain.model(*plain.inputs))


# --------------------------------------------------------------------------- end to end through the sandbox

HUBCONF = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        # Grows a fresh tensor to 4096 columns: in the parent, the grown bytes are its freed heap.
        return torch.ops.aten.resize(self.fc(x), [x.shape[0], 4096])


def net():
    return Net()
"""


@pytest.fixture(scope="module")
def git_world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("export-resize-e2e"), git_server) as env:
        yield env


@NEEDS_FULL_SANDBOX
def test_hostile_child_returns_a_resizing_program(git_world: HubEnv, tmp_path: Any) -> None:
    """The built-in ``default`` policy (trusted cannot rebuild the repo's class, export is tried): refused,
    nothing cached, hub.lock and the hub dir unchanged (before: loaded, forward() returned freed heap)."""
    refused_end_to_end(git_world, tmp_path, "export-resize", HUBCONF, says="aten.resize.default", policy="default")
