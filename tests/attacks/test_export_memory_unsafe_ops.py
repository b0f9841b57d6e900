"""Memory-unsafe aten operators in a hostile exported program (parent heap read/write).

The op allowlist admitted every ``aten``/``prims`` overload whose signature takes plain values,
minus ``save``/``from_file``. Some of those are internals whose CPU kernels trust their caller:
``aten._reshape_alias(x, size, stride)`` builds a view of any size over ``x``'s storage without a
bounds check. A child that edits the size in its exported program JSON got a module whose
forward() returned the parent's heap memory (a 12-element zero input came back as 4096 values,
~3600 of them non-zero) and, with a write after it (``fill_``) or a larger size, corrupted the
parent's heap / crashed it with SIGSEGV -- code execution material in the process that holds the
user's credentials. ``segment_reduce(..., unsafe=True)`` reads out of bounds the same way; public
autograd kernels (``max_pool2d_with_indices_backward``, ``adaptive_max_pool2d_backward``) and sparse
constructors (``sparse_coo_tensor`` then ``to_dense``) given forged index tensors wrote out of bounds
(SIGSEGV in a probe), and ``segment_reduce`` with forged offsets did so even in its safe mode.

Now private ``aten::_x`` operators are refused unless listed in
``export_schema.PRIVATE_OPS_ALLOWED``; autograd ``*_backward``, sparse, nested and mkldnn operators,
operators with an ``unsafe`` switch and prims (never emitted by ``torch.export``) are refused:
``reconstruct-refused``. These tests never run
forward() on an admitted hostile program in the test process (it would read or write the test
runner's heap); the refusal must come from ``reconstruct_export``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct import export_schema
from securehub.reconstruct.export import reconstruct_export
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, hub_env_context
from tests._servers import GitServer
from tests.attacks.test_export_program_attacks import Exported, Program, refused_end_to_end

_RESHAPE_ALIAS = "torch.ops.aten._reshape_alias.default"


class _Alias(nn.Module):
    """Calls ``aten._reshape_alias`` with in-bounds arguments (what a child would export honestly)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._reshape_alias(x, [12], [1]) * 2


class _Plain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc(x.to(torch.float32)), -1)


@pytest.fixture(scope="module")
def alias() -> Exported:
    return Exported(_Alias(), (torch.randn(3, 4),))


@pytest.fixture(scope="module")
def plain() -> Exported:
    return Exported(_Plain(), (torch.randn(3, 4),))


def _nodes(p: Program) -> list[Program]:
    nodes: list[Program] = p["graph_module"]["graph"]["nodes"]
    return nodes


def _enlarge_alias(size: int) -> object:
    def mutate(p: Program) -> None:
        (node,) = [n for n in _nodes(p) if n["target"] == _RESHAPE_ALIAS]
        node["inputs"][1]["arg"] = {"as_ints": [size]}

    return mutate


def _refused_without_running(exported: Exported, mutate: object) -> ReconstructRefused:
    export = exported.edited(mutate)  # type: ignore[arg-type]
    with pytest.raises(SecureHubError) as exc:
        reconstruct_export(export, exported.tensors)  # no forward(): an admitted program would touch our heap
    assert type(exc.value) is ReconstructRefused, f"{type(exc.value).__name__}: {exc.value}"
    assert exc.value.code == "reconstruct-refused"
    return exc.value


def test_reshape_alias_beyond_its_storage_reads_the_parents_heap(alias: Exported) -> None:
    """The PoC: a 12-element view enlarged to 4096 elements would return parent heap memory."""
    err = _refused_without_running(alias, _enlarge_alias(4096))
    assert "_reshape_alias" in str(err) and "not an allowlisted torch operator" in str(err)


def test_reshape_alias_is_refused_even_with_in_bounds_arguments(alias: Exported) -> None:
    """The operator is refused, not its arguments: the parent cannot tell a safe size from an unsafe one
    without re-implementing the kernel's missing check."""
    _refused_without_running(alias, lambda p: None)


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten._reshape_alias.default",  # view of any size/stride, no bounds check
        "torch.ops.aten._nested_view_from_buffer.default",  # nested view from caller-given offsets
        "torch.ops.aten._sparse_coo_tensor_with_dims_and_tensors.default",  # indices not validated
        "torch.ops.aten._embedding_bag_backward.default",  # internal kernel, trusts its offsets
        "torch.ops.aten._index_put_impl_.default",  # its own `unsafe` switch
        "torch.ops.aten.segment_reduce.default",  # unsafe=True skips the lengths check (OOB read)
        "torch.ops.aten._print.default",  # writes to the parent's stdout
        # public, but trusting indices torch made itself: forged ones wrote out of bounds (SIGSEGV)
        "torch.ops.aten.max_pool2d_with_indices_backward.default",
        "torch.ops.aten.adaptive_max_pool2d_backward.default",
        "torch.ops.aten.embedding_dense_backward.default",
        # sparse_coo_tensor(indices=[[2**28]], size=[4]) then to_dense: out-of-bounds write (SIGSEGV)
        "torch.ops.aten.sparse_coo_tensor.indices_size",
        "torch.ops.aten.sparse_resize_.default",
        "torch.ops.aten.to_sparse.default",
        "torch.ops.aten.to_mkldnn.default",
        # red team 8: indexes log_probs by unchecked target labels (SIGSEGV); torch.export cannot emit it
        "torch.ops.aten.ctc_loss.IntList",
        "torch.ops.aten.ctc_loss.Tensor",
        "torch.ops.prims.as_strided.default",  # prims: never emitted by torch.export
        "torch.ops.prims.view_of_dtype.default",
    ],
)
def test_memory_unsafe_or_internal_operator_target_is_refused(plain: Exported, target: str) -> None:
    def mutate(p: Program) -> None:
        next(n for n in _nodes(p) if n["target"].startswith("torch.ops.aten."))["target"] = target

    err = _refused_without_running(plain, mutate)
    assert "not an allowlisted torch operator" in str(err), str(err)


def test_allowlisted_private_operators_exist_in_this_torch() -> None:
    """A renamed operator in a new torch must be noticed in review, not silently dropped."""
    for name in export_schema.PRIVATE_OPS_ALLOWED:
        assert hasattr(torch.ops.aten, name.split("::", 1)[1]), name


def test_ordinary_program_with_an_allowlisted_private_operator_still_loads(plain: Exported) -> None:
    """Baseline: dtype conversion exports as the private ``_assert_tensor_metadata``/``_to_copy``."""
    targets = {n["target"] for n in _nodes(plain.program)}
    assert any(t.startswith("torch.ops.aten._") for t in targets), targets
    module = reconstruct_export(plain.export, plain.tensors)
    with torch.no_grad():
        assert torch.allclose(module(*plain.inputs), plain.model(*plain.inputs))


class _Resize(nn.Module):
    """Layers whose exports use admitted private operators (antialias, nearest-exact, weight_norm)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=(8, 8), mode="bilinear", antialias=True)
        x = nn.functional.interpolate(x, size=(12, 12), mode="bicubic", antialias=True)
        return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest-exact"))


def test_layers_exported_with_admitted_private_operators_still_load() -> None:
    """Baseline: the refusal of private operators does not refuse ordinary layers that use them."""
    resize = Exported(_Resize(), (torch.randn(2, 3, 16, 16),))
    targets = {n["target"] for n in _nodes(resize.program)}
    assert {"torch.ops.aten._upsample_bilinear2d_aa.vec", "torch.ops.aten._weight_norm.default"} <= targets, targets
    module = reconstruct_export(resize.export, resize.tensors)
    with torch.no_grad():
        assert torch.allclose(module(*resize.inputs), resize.model(*resize.inputs), atol=1e-6)


# --------------------------------------------------------------------------- end to end: a hostile child

ALIAS_HUBCONF = """
import json

import torch
import torch._export.serde.serialize as serde
from torch import nn

dependencies = ["torch"]
_serialize = serde.serialize


def _enlarge(ep, *args, **kwargs):
    # Runs in the hostile child: the honest 8-element view becomes a 65536-element one, so the
    # parent's forward() would read (and, with a write after it, corrupt) its own heap.
    art = _serialize(ep, *args, **kwargs)
    program = json.loads(art.exported_program)
    for node in program["graph_module"]["graph"]["nodes"]:
        if node["target"] == "torch.ops.aten._reshape_alias.default":
            node["inputs"][1]["arg"] = {"as_ints": [65536]}
    return type(art)(json.dumps(program).encode(), art.state_dict, art.constants, art.example_inputs)


serde.serialize = _enlarge


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.ops.aten._reshape_alias(self.fc(x), [8], [1])


def net():
    return Net()
"""


@pytest.fixture(scope="module")
def git_world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("export-unsafe-ops"), git_server) as env:
        yield env


@NEEDS_FULL_SANDBOX
def test_hostile_child_exports_an_out_of_bounds_view_end_to_end(git_world: HubEnv, tmp_path: Path) -> None:
    """Through the real git server and sandbox: refused, nothing cached, hub.lock byte-identical."""
    refused_end_to_end(git_world, tmp_path, "export-reshape-alias", ALIAS_HUBCONF, says="_reshape_alias")
