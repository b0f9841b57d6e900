"""Red team 12: exported programs whose JSON has the wrong *shape* for torch's schema dataclasses.

Since this round the checked program JSON is turned into ``torch._export.serde.schema`` dataclasses by
securehub's own walker (``securehub/reconstruct/schema_dataclass.py``), not torch's
``_dict_to_dataclass``. The walker trusts :func:`~securehub.reconstruct.export_schema.check_program` to
have admitted only well-shaped JSON; these cases attack the difference: unknown and missing keys, a
union with two keys, ``null`` where a value is required, a list where an object goes and the reverse,
a float where a symbolic int union goes, scalar types/layouts/memory formats out of range, devices
other than ``cpu``/``meta``, and subgraph names that collide with the module's own attributes. Every
one must be ``reconstruct-refused`` -- never a ``TypeError``/``KeyError``/``AttributeError`` out of
``securehub.load`` -- with nothing cached and hub.lock unchanged.

Unit cases edit a real program and hand it to the parent's ``reconstruct_export``. The end-to-end cases
are a hostile hubconf (it rewrites what the child's serialiser sends) through the real git server,
sandbox and torch, under ``strict`` (the forgery reaches the parent at ``securehub lock -e``, which
rebuilds the model before pinning it: nothing is written) and ``default`` (a load with example inputs).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.reconstruct.export import reconstruct_export
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import ExportInfo, parse_export
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer

Program = dict[str, Any]


class _Net(nn.Module):
    """A factory call (dtype, layout, device arguments), a grad-mode subgraph and a ``cond`` with two subgraphs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = x * 2 + torch.ones(4, dtype=torch.float32)
        y = torch.cond(y.sum() > 0, lambda z: z.sin(), lambda z: z.cos(), (y,))
        return self.fc(y)


# The same forgeries, as source for the hostile hubconf (it runs them in the child on what it sends).
FORGERIES = r"""
def _graph(p):
    return p["graph_module"]["graph"]


def _nodes(graph):
    for n in graph["nodes"]:
        yield n
        for i in n["inputs"]:
            if "as_graph" in i["arg"]:
                yield from _nodes(i["arg"]["as_graph"]["graph"])


def _node(p, suffix):
    return next(n for n in _nodes(_graph(p)) if n["target"].endswith(suffix))


def _meta(p):
    return next(iter(_graph(p)["tensor_values"].values()))


def _arg(p, suffix, name):
    return next(i for i in _node(p, suffix)["inputs"] if i["name"] == name)["arg"]


def _subgraph_arg(p):
    return next(i["arg"]["as_graph"] for i in _node(p, "cond")["inputs"] if "as_graph" in i["arg"])


def unknown_key_in_node(p):
    _graph(p)["nodes"][0]["callback"] = "os.system"


def unknown_key_in_tensor_meta(p):
    _meta(p)["is_sparse"] = True


def missing_node_target(p):
    del _graph(p)["nodes"][0]["target"]


def missing_graph_signature(p):
    del p["graph_module"]["signature"]


def union_with_two_keys(p):
    _node(p, "mul.Tensor")["inputs"][0]["arg"] = {"as_tensor": {"name": "x"}, "as_int": 1}


def output_union_with_two_keys(p):
    _graph(p)["outputs"][0] = {"as_tensor": {"name": "linear"}, "as_none": True}


def null_tensor_dtype(p):
    _meta(p)["dtype"] = None


def null_graph_nodes(p):
    _graph(p)["nodes"] = None


def null_subgraph(p):
    _subgraph_arg(p)["graph"] = None


def null_schema_version(p):
    p["schema_version"] = None


def object_where_a_list_goes(p):
    _graph(p)["nodes"] = {"0": _graph(p)["nodes"][0]}


def list_where_an_object_goes(p):
    _graph(p)["tensor_values"] = list(_graph(p)["tensor_values"].values())


def float_where_a_sym_int_goes(p):
    _meta(p)["sizes"][0] = 1.5


def string_where_a_float_goes(p):
    _node(p, "mul.Tensor")["inputs"][1]["arg"] = {"as_float": "1e999"}


def range_constraint_as_list(p):
    p["range_constraints"] = {k: [0, 1] for k in p["range_constraints"]} or {"s0": [0, 1]}


def scalar_type_out_of_range(p):
    _arg(p, "ones.default", "dtype")["as_scalar_type"] = 999


def layout_sparse(p):
    _node(p, "ones.default")["inputs"].append({"name": "layout", "arg": {"as_layout": 1}, "kind": 2})


def memory_format_out_of_range(p):
    _node(p, "ones.default")["inputs"].append(
        {"name": "memory_format", "arg": {"as_memory_format": 77}, "kind": 2})


def device_cuda_argument(p):
    _arg(p, "ones.default", "device")["as_device"] = {"type": "cuda", "index": 0}


def device_privateuseone_argument(p):
    _arg(p, "ones.default", "device")["as_device"] = {"type": "privateuseone"}


def device_cuda_tensor_meta(p):
    _meta(p)["device"] = {"type": "cuda"}


def subgraph_named_forward(p):
    _subgraph_arg(p)["name"] = "forward"


def subgraph_named_like_a_submodule(p):
    _subgraph_arg(p)["name"] = "fc"


def _set(p, name, arg):
    inputs = _node(p, "ones.default")["inputs"]
    inputs[:] = [i for i in inputs if i["name"] != name] + [{"name": name, "arg": arg, "kind": 2}]


# The dispatcher takes a ScalarType/Layout as an int and a Device as a string: these reached kernels
# past the schema check's enumerations (dtype 999: SIGSEGV in the parent at forward()).
def dtype_as_an_int(p):
    _set(p, "dtype", {"as_int": 999})


def dtype_as_a_bool(p):
    _set(p, "dtype", {"as_bool": True})


def layout_as_an_int(p):
    _set(p, "layout", {"as_int": 1})


def layout_as_a_string(p):
    _set(p, "layout", {"as_string": "sparse_coo"})


def device_as_a_string(p):
    _set(p, "device", {"as_string": "cuda"})


def string_argument_naming_an_op(p):
    _arg(p, "ones.default", "dtype").clear()
    _arg(p, "ones.default", "dtype")["as_string"] = "torch.ops.aten.from_file.default"
"""

_NAMESPACE: dict[str, Any] = {}
exec(compile(FORGERIES, "<forgeries>", "exec"), _NAMESPACE)  # noqa: S102 - the test's own source, above
CASES = sorted(name for name, value in _NAMESPACE.items() if callable(value) and not name.startswith("_"))


@pytest.fixture(scope="module")
def exported() -> tuple[ExportInfo, Program, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = _Net().eval()
    tensors, aliases = collect_tensors(model)
    package = export_program(model, (torch.randn(2, 4),), tensors, aliases)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    return export, json.loads(package.program_json), tensors


def _with(exported: tuple[ExportInfo, Program, dict[str, torch.Tensor]], edit: Callable[[Program], None]) -> ExportInfo:
    export, program, _ = exported
    edited = copy.deepcopy(program)
    edit(edited)
    return ExportInfo(export.state, export.constants, export.parameters, json.dumps(edited).encode())


def test_the_unedited_program_loads_control(exported: tuple[ExportInfo, Program, dict[str, torch.Tensor]]) -> None:
    module = reconstruct_export(_with(exported, lambda p: None), exported[2])
    assert module(torch.ones(2, 4)).shape == (2, 4)


@pytest.mark.parametrize("case", CASES)
def test_program_json_of_the_wrong_shape_is_reconstruct_refused(
    exported: tuple[ExportInfo, Program, dict[str, torch.Tensor]], case: str
) -> None:
    export = _with(exported, _NAMESPACE[case])
    with pytest.raises(SecureHubError) as exc:
        reconstruct_export(export, exported[2])
    assert exc.value.code == "reconstruct-refused", f"{case}: {type(exc.value).__name__}: {exc.value}"


# --------------------------------------------------------------------------- end to end

HUBCONF = (
    r"""
import json

import torch
import torch._export.serde.serialize as serde
from torch import nn

dependencies = ["torch"]
_serialize = serde.serialize
_EDIT = []
"""
    + FORGERIES
    + r"""

def _forged(ep, *args, **kwargs):
    art = _serialize(ep, *args, **kwargs)
    program = json.loads(art.exported_program)
    for edit in _EDIT:
        edit(program)
    return type(art)(json.dumps(program).encode(), art.state_dict, art.constants, art.example_inputs)


serde.serialize = _forged


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            y = x * 2 + torch.ones(4, dtype=torch.float32)
        y = torch.cond(y.sum() > 0, lambda z: z.sin(), lambda z: z.cos(), (y,))
        return self.fc(y)


def net(forgery=""):
    _EDIT[:] = [globals()[forgery]] if forgery else []
    torch.manual_seed(0)
    return Net()
"""
)

#: A representative forgery of each kind for the (slow) end-to-end runs; the unit cases cover all.
E2E_CASES = [
    "dtype_as_an_int",
    "layout_as_an_int",
    "device_as_a_string",
    "union_with_two_keys",
    "null_tensor_dtype",
    "object_where_a_list_goes",
    "unknown_key_in_tensor_meta",
    "scalar_type_out_of_range",
    "device_privateuseone_argument",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("schema-shapes"), git_server) as env:
        yield env, env.spec(publish(env, "schema-shapes", {"hubconf.py": HUBCONF}))


def _results(hub: Path) -> list[str]:
    root = hub / "results"
    return sorted(str(p.relative_to(hub)) for p in root.rglob("*")) if root.exists() else []


@NEEDS_FULL_SANDBOX
def test_the_hubconf_loads_when_honest_control(world: tuple[HubEnv, str], tmp_path: Path) -> None:
    env, spec = world
    lock = tmp_path / "hub.lock"
    lock_repos([spec], entrypoints=["net"], example_inputs=["2x4:float32"], policy="strict", lock=lock)
    model = securehub.load(spec, "net", policy="strict", lock=lock, verbose=False)
    assert model(torch.ones(2, 4)).shape == (2, 4)


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize("case", E2E_CASES)
def test_hostile_program_shape_under_strict_is_refused_at_lock(
    world: tuple[HubEnv, str], tmp_path: Path, case: str
) -> None:
    env, spec = world
    lock = tmp_path / "hub.lock"
    before, results = Snapshot.take(env.hub, lock), _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        lock_repos([spec], entrypoints=["net"], args={"forgery": case},
                   example_inputs=["2x4:float32"], policy="strict", lock=lock)  # fmt: skip
    assert exc.value.code == "reconstruct-refused", f"{case}: {type(exc.value).__name__}: {exc.value}"
    assert "exported program" in str(exc.value), str(exc.value)
    assert not lock.exists(), "a refused lock run wrote hub.lock"
    before.assert_unchanged(env.hub, lock)
    assert _results(env.hub) == results, "a refused result was cached"


@NEEDS_FULL_SANDBOX
@pytest.mark.parametrize("case", E2E_CASES)
def test_hostile_program_shape_under_default_is_refused_at_load(
    world: tuple[HubEnv, str], tmp_path: Path, case: str
) -> None:
    env, spec = world
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)  # the tree is pinned and cached before the attack
    policy = write_policy(tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"})
    before, results = Snapshot.take(env.hub, lock), _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "net", forgery=case, policy=policy, lock=lock, verbose=False,
                       example_inputs=(torch.randn(2, 4),))  # fmt: skip
    assert exc.value.code == "reconstruct-refused", f"{case}: {type(exc.value).__name__}: {exc.value}"
    before.assert_unchanged(env.hub, lock)
    assert _results(env.hub) == results, "a refused result was cached"
