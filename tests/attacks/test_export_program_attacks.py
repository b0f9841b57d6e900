"""Hostile exported programs (the ``export`` reconstruction strategy, issue 8).

The child sends the program as JSON; torch's deserialiser resolves strings in it to operators, sympy
expressions and classes. Each test builds its attack by exporting a small legitimate model and
editing the JSON, then hands it to the parent's ``reconstruct_export`` -- the boundary -- and asserts
``reconstruct-refused`` and that nothing happened (canary unread/unchanged, no file created). The
last test does the same end to end: a hubconf that monkeypatches the child's serializer, loaded
through the real git server, sandbox and torch.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.reconstruct import export_schema
from securehub.reconstruct.export import check_graph_module, reconstruct_export
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import ExportInfo, parse_export
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer

Program = dict[str, Any]
FROM_FILE = "torch.ops.aten.from_file.default"


class _NoGrad(nn.Module):
    """``torch.no_grad`` inside forward: the program calls the higher-order op wrap_with_set_grad_enabled."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = x * 2
        return self.fc(y)


class Exported:
    """A legitimately exported program: its tensors, export meta and (editable) JSON."""

    def __init__(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.model = model.eval()
        self.inputs = inputs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.tensors, aliases = collect_tensors(self.model)
            package = export_program(self.model, inputs, self.tensors, aliases)
        self.export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
        self.program: Program = json.loads(package.program_json)

    def edited(self, mutate: Callable[[Program], None]) -> ExportInfo:
        program = copy.deepcopy(self.program)
        mutate(program)
        body = json.dumps(program).encode()
        return ExportInfo(self.export.state, self.export.constants, self.export.parameters, body)

    def refused(self, mutate: Callable[[Program], None]) -> ReconstructRefused:
        """Reconstruct the edited program: it must be refused (had it loaded, forward() would run the payload)."""
        export = self.edited(mutate)
        with pytest.raises(SecureHubError) as exc:
            module = reconstruct_export(export, self.tensors)
            module(*self.inputs)
        assert type(exc.value) is ReconstructRefused, f"{type(exc.value).__name__}: {exc.value}"
        assert exc.value.code == "reconstruct-refused"
        return exc.value


@pytest.fixture(scope="module")
def nograd() -> Exported:
    return Exported(_NoGrad(), (torch.randn(3, 4),))


def _graph(p: Program) -> Program:
    graph: Program = p["graph_module"]["graph"]
    return graph


def _hop(p: Program) -> Program:
    (node,) = [n for n in _graph(p)["nodes"] if n["target"].endswith("wrap_with_set_grad_enabled")]
    return node


def _positional(arg: Program) -> Program:
    return {"name": "", "arg": arg, "kind": 1}


def _first_aten_node(p: Program) -> Program:
    node: Program = next(n for n in _graph(p)["nodes"] if n["target"].startswith("torch.ops.aten."))
    return node


def test_the_legitimate_program_loads(nograd: Exported) -> None:
    """Baseline for every test below: the unedited program passes all checks and computes the same."""
    module = reconstruct_export(nograd.export, nograd.tensors)
    with torch.no_grad():
        assert torch.allclose(module(*nograd.inputs), nograd.model(*nograd.inputs))


# --------------------------------------------------------------------------- finding 1: from_file


def _from_file_payload(path: Path, shared: bool, size: int) -> Callable[[Program], None]:
    """wrap_with_set_grad_enabled(False, aten.from_file, path, shared, size, dtype=uint8) -- the red-team PoC."""

    def mutate(p: Program) -> None:
        _hop(p)["inputs"] = [
            _positional({"as_bool": False}),
            _positional({"as_operator": FROM_FILE}),
            _positional({"as_string": str(path)}),
            _positional({"as_bool": shared}),
            _positional({"as_int": size}),
            {"name": "dtype", "arg": {"as_scalar_type": 1}, "kind": 2},
        ]

    return mutate


def test_from_file_argument_of_allowed_higher_order_op_reads_a_file(nograd: Exported, tmp_path: Path) -> None:
    secret = tmp_path / "id_rsa"
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    before = (secret.read_bytes(), secret.stat().st_mtime_ns)
    err = nograd.refused(_from_file_payload(secret, shared=False, size=16))
    assert "as_operator" in str(err)
    assert (secret.read_bytes(), secret.stat().st_mtime_ns) == before


def test_from_file_shared_argument_creates_a_file(nograd: Exported, tmp_path: Path) -> None:
    """shared=True creates the file (a .pth in site-packages would be code execution)."""
    target = tmp_path / "site-packages" / "evil.pth"
    target.parent.mkdir()
    nograd.refused(_from_file_payload(target, shared=True, size=64))
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_from_file_shared_argument_overwrites_a_file(nograd: Exported, tmp_path: Path) -> None:
    canary = tmp_path / "authorized_keys"
    canary.write_bytes(b"ssh-ed25519 AAAA good-key")
    before = (canary.read_bytes(), canary.stat().st_mtime_ns, canary.stat().st_size)
    nograd.refused(_from_file_payload(canary, shared=True, size=4096))
    assert (canary.read_bytes(), canary.stat().st_mtime_ns, canary.stat().st_size) == before


def test_from_file_as_node_target_is_refused(nograd: Exported, tmp_path: Path) -> None:
    target = tmp_path / "created"

    def mutate(p: Program) -> None:
        node = _first_aten_node(p)
        node["target"] = FROM_FILE
        node["inputs"] = [
            {"name": "filename", "arg": {"as_string": str(target)}, "kind": 1},
            {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
            {"name": "size", "arg": {"as_int": 8}, "kind": 1},
        ]

    assert "from_file" in str(nograd.refused(mutate))
    assert not target.exists()


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten.save.default",
        "torch.ops.aten.set_.source_Storage",  # a Storage argument: raw memory
        "torch.ops.aten.wait.default",  # a Future
        "torch.ops.aten.__dict__.default",
        "torch.os.system",
        "builtins.eval",
        "torch.ops.higher_order.while_loop",  # can run forever inside forward()
        "torch.ops.higher_order.with_effects",
        "#custom:evil",
    ],
)
def test_unsafe_operator_targets_are_refused(nograd: Exported, target: str) -> None:
    def mutate(p: Program) -> None:
        _first_aten_node(p)["target"] = target

    assert "not an allowlisted torch operator" in str(nograd.refused(mutate))


# --------------------------------------------------------------------------- operators, custom objects, subgraphs


@pytest.mark.parametrize(
    "place",
    ["aten-input", "hop-operand", "hop-keyword", "graph-output", "user-input-spec", "module-call-input"],
)
def test_operator_argument_anywhere_is_refused(nograd: Exported, place: str) -> None:
    operator_arg = {"as_operator": "torch.ops.aten.from_file.default"}

    def mutate(p: Program) -> None:
        if place == "aten-input":
            _first_aten_node(p)["inputs"][0]["arg"] = operator_arg
        elif place == "hop-operand":
            _hop(p)["inputs"].append(_positional(operator_arg))
        elif place == "hop-keyword":
            _hop(p)["inputs"].append({"name": "fn", "arg": operator_arg, "kind": 2})
        elif place == "graph-output":
            _graph(p)["outputs"].append(operator_arg)
        elif place == "user-input-spec":
            p["graph_module"]["signature"]["input_specs"].append({"user_input": {"arg": operator_arg}})
        else:
            p["graph_module"]["module_call_graph"][0]["signature"]["inputs"].append(operator_arg)

    nograd.refused(mutate)


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda p: _first_aten_node(p)["inputs"].__setitem__(
                0, {"name": "self", "arg": {"as_custom_obj": {"name": "obj", "class_fqn": "__torch__.evil"}}}
            ),
            id="custom-obj-argument",
        ),
        pytest.param(
            lambda p: _graph(p).__setitem__(
                "custom_obj_values", {"obj": {"name": "obj", "class_fqn": "__torch__.torch.classes.evil"}}
            ),
            id="custom-obj-values",
        ),
        pytest.param(
            lambda p: p["graph_module"]["signature"]["input_specs"].append(
                {"custom_obj": {"arg": {"name": "obj", "class_fqn": "x"}, "custom_obj_name": "obj"}}
            ),
            id="custom-obj-input-spec",
        ),
        pytest.param(
            lambda p: _hop(p)["inputs"].append(
                _positional({"as_string_to_argument": {"f": {"as_operator": "torch.ops.aten.save.default"}}})
            ),
            id="string-to-argument",
        ),
        pytest.param(
            lambda p: _first_aten_node(p)["inputs"][0].__setitem__("arg", {"as_device": {"type": "cuda", "index": 0}}),
            id="cuda-device",
        ),
    ],
)
def test_custom_objects_and_unlisted_argument_kinds_are_refused(nograd: Exported, mutate: Any) -> None:
    nograd.refused(mutate)


def _hop_slot(arg: Program) -> Callable[[Program], None]:
    def mutate(p: Program) -> None:
        _hop(p)["inputs"][1] = _positional(arg)

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_hop_slot({"as_tensor": {"name": "p_fc_weight"}}), id="slot-names-a-parameter"),
        pytest.param(_hop_slot({"as_string": "submod_1"}), id="slot-names-a-graph-by-string"),
        pytest.param(_hop_slot({"as_operator": "torch.ops.aten.from_file.default"}), id="slot-names-an-operator"),
        pytest.param(
            lambda p: _first_aten_node(p)["inputs"].append(
                {"name": "fn", "arg": copy.deepcopy(_hop(p)["inputs"][1]["arg"]), "kind": 2}
            ),
            id="subgraph-passed-to-an-aten-op",
        ),
        pytest.param(
            lambda p: _hop(p)["inputs"][1]["arg"]["as_graph"].__setitem__("name", "fc"),
            id="subgraph-shadows-the-module-holding-parameters",
        ),
        pytest.param(
            lambda p: _hop(p)["inputs"][1]["arg"]["as_graph"].__setitem__("name", "__class__"),
            id="subgraph-named-like-a-dunder",
        ),
    ],
)
def test_subgraph_reference_to_a_graph_not_in_the_program(nograd: Exported, mutate: Any) -> None:
    nograd.refused(mutate)


def test_callable_in_argument_position_is_refused_after_deserialising() -> None:
    """Second layer, independent of the JSON check: an operator object as an argument of an allowed op."""
    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    body = graph.call_function(torch.ops.aten.mul.Tensor, (x, x))
    hop = graph.call_function(
        torch.ops.higher_order.wrap_with_set_grad_enabled, (False, torch.ops.aten.from_file.default, "/etc/passwd")
    )
    graph.output((body, hop))
    gm = torch.fx.GraphModule(nn.Module(), graph)
    with pytest.raises(ReconstructRefused) as exc:
        check_graph_module(gm, frozenset(), lifted=True)
    assert exc.value.code == "reconstruct-refused"
    assert "not a subgraph of this program" in str(exc.value)

    graph2 = torch.fx.Graph()
    y = graph2.placeholder("y")
    graph2.output(graph2.call_function(torch.ops.aten.add.Tensor, (y, torch.ops.aten.from_file.default)))
    with pytest.raises(ReconstructRefused) as exc:
        check_graph_module(torch.fx.GraphModule(nn.Module(), graph2), frozenset(), lifted=True)
    assert "OpOverload" in str(exc.value)


# --------------------------------------------------------------------------- unknown fields


@pytest.mark.parametrize(
    "where",
    ["program", "graph_module", "graph", "node", "named-argument", "tensor-meta", "signature", "module-call"],
)
def test_unknown_schema_field_is_refused(nograd: Exported, where: str) -> None:
    def mutate(p: Program) -> None:
        target = {
            "program": lambda: p,
            "graph_module": lambda: p["graph_module"],
            "graph": lambda: _graph(p),
            "node": lambda: _first_aten_node(p),
            "named-argument": lambda: _first_aten_node(p)["inputs"][0],
            "tensor-meta": lambda: next(iter(_graph(p)["tensor_values"].values())),
            "signature": lambda: p["graph_module"]["signature"],
            "module-call": lambda: p["graph_module"]["module_call_graph"][0],
        }[where]()
        target["as_operator"] = FROM_FILE

    assert "unknown field" in str(nograd.refused(mutate))


# --------------------------------------------------------------------------- finding 4a: expression bombs

BOMBS = {
    "power-tower": "9**9**9",
    "srepr-power-tower": "Pow(Integer(9), Pow(Integer(9), Integer(9)))",
    "pow-by-natural": "PowByNatural(Integer(9), Integer(99999999999))",
    "left-shift": "LShift(Integer(1), Integer(99999999999))",
    "nested-constant-powers": "Pow(Pow(Pow(Integer(99), Integer(64)), Integer(64)), Integer(64))",
    "deep-nesting": "(" * 5000 + "1" + ")" * 5000,
    "wide-product": "*".join(["s77"] * 5000),
    "huge-literal": "1" + "0" * 5000,
}

_BOMB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from securehub.reconstruct.export import reconstruct_export
    from securehub.errors import SecureHubError
    from securehub.sandbox.wire.messages import ExportInfo
    from safetensors.torch import load_file

    cases = json.load(open(sys.argv[1]))
    tensors = load_file(sys.argv[2])
    for name, case in cases.items():
        export = ExportInfo(case["state"], case["constants"], tuple(case["parameters"]), case["program"].encode())
        try:
            reconstruct_export(export, tensors)
            outcome = "loaded"
        except SecureHubError as exc:
            outcome = exc.code
        except BaseException as exc:
            outcome = "raised " + type(exc).__name__
        print(json.dumps({"case": name, "outcome": outcome}), flush=True)
    """
)


def _bomb_cases(exported: Exported) -> dict[str, Program]:
    cases: dict[str, Program] = {}
    for name, expr in BOMBS.items():

        def in_size(p: Program, expr: str = expr) -> None:
            # the input's batch dimension: evaluated as soon as the input placeholder is deserialised
            _graph(p)["tensor_values"]["x"]["sizes"][0] = {"as_expr": {"expr_str": expr, "hint": {"as_int": 3}}}

        cases[name] = {"mutate": in_size}

    def counter(p: Program) -> None:
        # torch counts up to the index of an unbacked symbol named in the range constraints
        p["range_constraints"]["u99999999999"] = {"min_val": 0, "max_val": None}

    cases["unbacked-symbol-counter"] = {"mutate": counter}
    out: dict[str, Program] = {}
    for name, case in cases.items():
        export = exported.edited(case["mutate"])
        out[name] = {
            "program": export.program_json.decode(),
            "state": export.state,
            "constants": export.constants,
            "parameters": list(export.parameters),
        }
    return out


@pytest.fixture(scope="module")
def bomb_outcomes(nograd: Exported, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Run every bomb in one child Python (torch imports once) under a hard wall-clock bound.

    A bomb that hangs is never interrupted by an alarm (big-integer arithmetic runs in C without
    checking signals), so the bound is the subprocess timeout; cases after a hang report nothing.
    """
    from safetensors.torch import save_file

    assert nograd.export.dynamic_batch, "the bombs edit a symbolic batch size"
    work = tmp_path_factory.mktemp("bombs")
    (work / "cases.json").write_text(json.dumps(_bomb_cases(nograd)))
    save_file({k: v.contiguous() for k, v in nograd.tensors.items()}, str(work / "state.safetensors"))
    (work / "run.py").write_text(_BOMB_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(securehub.__file__).parent.parent)}
    try:
        proc = subprocess.run(
            [sys.executable, str(work / "run.py"), str(work / "cases.json"), str(work / "state.safetensors")],
            capture_output=True, text=True, timeout=120, env=env, check=False,
        )  # fmt: skip
        stdout = proc.stdout
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    outcomes = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            outcomes[record["case"]] = record["outcome"]
    return outcomes


@pytest.mark.parametrize("case", [*BOMBS, "unbacked-symbol-counter"])
def test_symbolic_expression_bomb_is_refused_promptly(bomb_outcomes: dict[str, str], case: str) -> None:
    assert bomb_outcomes.get(case, "did not return (hung past the bound)") == "reconstruct-refused"


def test_huge_range_constraint_bound_is_refused(nograd: Exported) -> None:
    def mutate(p: Program) -> None:
        (name,) = p["range_constraints"]
        p["range_constraints"][name]["max_val"] = 10**400

    nograd.refused(mutate)


# --------------------------------------------------------------------------- finding 7a: torch exceptions


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda p: _first_aten_node(p)["inputs"][0].__setitem__("arg", {"as_tensor": {"name": "undefined"}}),
            id="undefined-value-KeyError",
        ),
        pytest.param(
            lambda p: p["range_constraints"].update({"s77": {"min_val": 9, "max_val": 2}}),
            id="empty-range-ValueRangeError",
        ),
        pytest.param(lambda p: _graph(p).__setitem__("is_single_tensor_return", True), id="single-return-Assertion"),
        pytest.param(
            lambda p: p["graph_module"]["signature"]["output_specs"][0]["user_output"]["arg"].__setitem__(
                "as_tensor", {"name": "x"}
            ),
            id="signature-mismatch-SpecViolation",
        ),
        pytest.param(
            lambda p: p["graph_module"]["signature"]["input_specs"][0].__setitem__(
                "parameter", {"arg": {"name": "p_fc_weight"}, "parameter_name": "no.such.param"}
            ),
            id="parameter-not-in-state",
        ),
        pytest.param(lambda p: p["schema_version"].__setitem__("major", 99), id="schema-version"),
        pytest.param(lambda p: _graph(p)["nodes"].reverse(), id="nodes-out-of-order"),
        pytest.param(
            lambda p: _first_aten_node(p).__setitem__("target", "torch.ops.aten.add.Tensor"),
            id="wrong-arguments-for-op-KeyError",
        ),
    ],
)
def test_deserializer_exception_is_reconstruct_refused(nograd: Exported, mutate: Any) -> None:
    nograd.refused(mutate)


# --------------------------------------------------------------------------- end to end: a hostile child

HUBCONF = """
import json

import torch
import torch._export.serde.serialize as serde
from torch import nn

dependencies = ["torch"]
TARGET = "@TARGET@"
_serialize = serde.serialize


def _inject_from_file(ep, *args, **kwargs):
    # Runs in the child, which is hostile: it rewrites what it sends so that the parent's rebuilt
    # module calls aten.from_file(TARGET, shared=True) through an allowed higher-order op.
    art = _serialize(ep, *args, **kwargs)
    program = json.loads(art.exported_program)
    for node in program["graph_module"]["graph"]["nodes"]:
        if node["target"].endswith("wrap_with_set_grad_enabled"):
            node["inputs"] = [
                {"name": "", "arg": {"as_bool": False}, "kind": 1},
                {"name": "", "arg": {"as_operator": "torch.ops.aten.from_file.default"}, "kind": 1},
                {"name": "", "arg": {"as_string": TARGET}, "kind": 1},
                {"name": "", "arg": {"as_bool": True}, "kind": 1},
                {"name": "", "arg": {"as_int": 64}, "kind": 1},
            ]
    return type(art)(json.dumps(program).encode(), art.state_dict, art.constants, art.example_inputs)


serde.serialize = _inject_from_file


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            y = x * 2
        return self.fc(y)


def net():
    return Net()
"""


@pytest.fixture(scope="module")
def git_world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("export-e2e"), git_server) as env:
        yield env


def _results(hub: Path) -> list[Path]:
    return sorted((hub / "results").glob("*")) if (hub / "results").exists() else []


def refused_end_to_end(
    env: HubEnv, tmp_path: Path, name: str, hubconf: str, *, says: str, policy: str | None = None
) -> SecureHubError:
    """Publish a hostile hubconf, pin its tree, load ``net`` with example inputs (under ``policy``; by default
    one that enforces but never writes hub.lock): ``reconstruct-refused`` naming ``says``, nothing cached,
    hub.lock and the hub dir unchanged. Returns the error."""
    spec = env.spec(publish(env, name, {"hubconf.py": hubconf}))
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)  # the tree is pinned and cached before the attack
    before = Snapshot.take(env.hub, lock)
    results_before = _results(env.hub)
    used = policy or write_policy(tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"})
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "net", policy=used, lock=lock, verbose=False, example_inputs=(torch.randn(2, 4),))
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert says in str(exc.value), str(exc.value)
    assert _results(env.hub) == results_before
    before.assert_unchanged(env.hub, lock)
    return exc.value


def _hostile_load(env: HubEnv, tmp_path: Path, policy: str | Path) -> tuple[SecureHubError, Path, Path, Snapshot]:
    """Publish the injecting hubconf, pin its tree, load it with example_inputs; returns the error."""
    target = tmp_path / "evil.pth"
    repo = publish(env, "export-from-file", {"hubconf.py": HUBCONF.replace("@TARGET@", str(target))})
    spec = env.spec(repo)
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)  # the tree is pinned and cached before the attack
    before = Snapshot.take(env.hub, lock)
    results_before = _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "net", policy=policy, lock=lock, verbose=False, example_inputs=(torch.randn(2, 4),))
    assert _results(env.hub) == results_before  # nothing cached
    return exc.value, target, lock, before


@NEEDS_FULL_SANDBOX
def test_hostile_child_injects_from_file_into_its_exported_program(git_world: HubEnv, tmp_path: Path) -> None:
    # lock.mode optional: the lock is enforced, never written (see the auto-lock test below)
    policy = write_policy(tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"})
    err, target, lock, before = _hostile_load(git_world, tmp_path, policy)
    assert err.code == "reconstruct-refused", str(err)
    assert "as_operator" in str(err)
    assert not target.exists()
    before.assert_unchanged(git_world.hub, lock)


@NEEDS_FULL_SANDBOX
def test_hostile_export_under_auto_lock_leaves_hub_lock_unchanged(git_world: HubEnv, tmp_path: Path) -> None:
    err, target, lock, before = _hostile_load(git_world, tmp_path, "default")
    assert err.code == "reconstruct-refused", str(err)
    assert not target.exists()
    before.assert_unchanged(git_world.hub, lock)


# --------------------------------------------------------------------------- unhashable values where names go


def _first_tensor_meta(p: Program) -> Program:
    meta: Program = next(iter(_graph(p)["tensor_values"].values()))
    return meta


def _spec_with_list_type(p: Program) -> None:
    signature = p["graph_module"]["module_call_graph"][0]["signature"]
    signature["out_spec"] = json.dumps([1, {"type": ["builtins.tuple"], "context": "null", "children_spec": []}])


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: _first_tensor_meta(p)["device"].__setitem__("type", [[0], "cpu"]), id="device-type"),
        pytest.param(lambda p: p.__setitem__("verifiers", [["ATEN"]]), id="verifiers"),
        pytest.param(_spec_with_list_type, id="treespec-type"),
    ],
)
def test_unhashable_value_where_a_name_is_expected_is_refused(nograd: Exported, mutate: Any) -> None:
    """A list where the schema expects a name from a fixed set: the set lookup raised ``TypeError``
    (unhashable) out of the schema check -- a crash, not a refusal (found by
    tests/fuzz/test_fuzz_export.py)."""
    err = nograd.refused(mutate)
    assert "allowed" in str(err) or "container type" in str(err) or "verifiers" in str(err)


#: The plain model both hostile serializer hubconfs below export (appended to each).
_LINEAR_NET = """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x)


def net():
    return Net()
"""

UNHASHABLE_HUBCONF = (
    """
import json

import torch._export.serde.serialize as serde
from torch import nn

dependencies = ["torch"]
_serialize = serde.serialize


def _list_device(ep, *args, **kwargs):
    # Runs in the hostile child: every tensor's device type becomes a list (unhashable).
    art = _serialize(ep, *args, **kwargs)
    program = json.loads(art.exported_program)
    for meta in program["graph_module"]["graph"]["tensor_values"].values():
        meta["device"]["type"] = [[0], "cpu"]
    return type(art)(json.dumps(program).encode(), art.state_dict, art.constants, art.example_inputs)


serde.serialize = _list_device

"""
    + _LINEAR_NET
)


@NEEDS_FULL_SANDBOX
def test_hostile_child_sends_unhashable_device_type_end_to_end(git_world: HubEnv, tmp_path: Path) -> None:
    refused_end_to_end(git_world, tmp_path, "export-unhashable", UNHASHABLE_HUBCONF, says="device")


# --------------------------------------------------------------------------- a JSON value flood (parent OOM)

#: Just over the program's value cap (``export_schema._MAX_PROGRAM_ITEMS``): ``[],`` is three bytes and
#: one value, so the body is ~40 MB. Parsed, it would be ~13 million lists (~1 GB); the 512 MB a
#: child may send would be ~13 GB in the parent.
_FLOOD_ITEMS = 64 * 200_000 + 1_000


def _flooded(program_json: bytes, items: int) -> bytes:
    """The program with an extra member holding ``items`` empty lists, placed first (parsed first)."""
    return b'{"padding": [' + b"[]," * (items - 1) + b"[]], " + program_json.lstrip()[1:]


def test_json_value_flood_is_refused_before_parsing(nograd: Exported, monkeypatch: pytest.MonkeyPatch) -> None:
    """A program body of millions of tiny JSON values is refused by a scan of its bytes, before
    ``json.loads`` builds a Python object per value (a hostile child could make the parent OOM)."""
    body = _flooded(nograd.export.program_json, _FLOOD_ITEMS)
    export = ExportInfo(nograd.export.state, nograd.export.constants, nograd.export.parameters, body)
    parsed: list[int] = []
    real_loads = export_schema.json.loads

    def spy(text: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(len(text))
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(export_schema.json, "loads", spy)
    with pytest.raises(ReconstructRefused) as exc:
        reconstruct_export(export, nograd.tensors)
    assert exc.value.code == "reconstruct-refused"
    assert "before parsing" in str(exc.value) and "values" in str(exc.value), str(exc.value)
    # Parsing would have built ~13 million lists (~800 MB): the body never reached json.loads.
    assert len(body) not in parsed


def test_json_value_flood_under_the_cap_still_loads(nograd: Exported) -> None:
    """The cap is on values, not on the program: a legitimate program is far below it (baseline)."""
    body = nograd.export.program_json
    assert body.count(b",") + body.count(b"[") + body.count(b"{") < 64 * 200_000 // 1000
    module = reconstruct_export(nograd.export, nograd.tensors)
    with torch.no_grad():
        assert torch.allclose(module(*nograd.inputs), nograd.model(*nograd.inputs))


FLOOD_HUBCONF = (
    """
import torch._export.serde.serialize as serde
from torch import nn

dependencies = ["torch"]
ITEMS = @ITEMS@
_serialize = serde.serialize


def _flood(ep, *args, **kwargs):
    # Runs in the hostile child: the program it sends starts with millions of empty lists.
    art = _serialize(ep, *args, **kwargs)
    body = b'{"padding": [' + b"[]," * (ITEMS - 1) + b"[]], " + art.exported_program.lstrip()[1:]
    return type(art)(body, art.state_dict, art.constants, art.example_inputs)


serde.serialize = _flood

"""
    + _LINEAR_NET
)


@NEEDS_FULL_SANDBOX
def test_hostile_child_floods_its_exported_program_with_json_values(git_world: HubEnv, tmp_path: Path) -> None:
    """End to end: the child's export body is a JSON value flood; the parent refuses it unparsed,
    caches nothing and leaves hub.lock byte-identical."""
    hubconf = FLOOD_HUBCONF.replace("@ITEMS@", str(_FLOOD_ITEMS))
    refused_end_to_end(git_world, tmp_path, "export-flood", hubconf, says="before parsing", policy="default")


# --------------------------------------------------------------------------- uninitialised memory


class _Scratch(nn.Module):
    """Returns buffers it never writes: in the parent they would hold what its allocator last freed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():  # the allocations inside a higher-order op's subgraph are covered too
            inner = torch.empty(x.shape[0], 512)
        return self.fc(x), torch.empty(x.shape[0], 512), torch.empty_like(x), x.new_empty(512), inner


def test_uninitialised_memory_never_leaves_an_exported_program() -> None:
    """``aten.empty``/``empty_like``/``new_empty`` results are zero-filled in the rebuilt program, so a program
    cannot return the parent's freed heap (a secret freed just before the call is the bait); the rest of the
    program computes the same."""
    scratch = Exported(_Scratch(), (torch.randn(2, 4),))
    program = json.dumps(scratch.program)
    assert all(op in program for op in ("aten.empty.memory_format", "aten.empty_like", "aten.new_empty"))
    module = reconstruct_export(scratch.export, scratch.tensors)
    for _ in range(20):
        secret = torch.full((2 * 512,), 4242.0)
        del secret  # freed: the next allocation of this size reuses the chunk
        with torch.no_grad():
            out = module(*scratch.inputs)
        assert torch.allclose(out[0], scratch.model.fc(scratch.inputs[0]))
        for leaked in out[1:]:
            assert torch.count_nonzero(leaked) == 0, "uninitialised parent memory came out of the program"


class _Grow(nn.Module):
    """Grows a tensor in place: torch.export keeps ``aten.resize_`` in the graph, and the grown bytes are whatever
    the allocator last freed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y.resize_(x.shape[0], 512)
        return y


def test_in_place_storage_growth_is_refused() -> None:
    """``resize_`` (and ``resize_as_``/``set_``, which grow the same way) cannot be zero-filled without losing
    the kept bytes, so a program calling them is refused before anything runs."""
    grow = Exported(_Grow(), (torch.randn(2, 4),))
    assert "aten.resize_.default" in json.dumps(grow.program)
    with pytest.raises(ReconstructRefused, match="resize_"):
        reconstruct_export(grow.export, grow.tensors)
    for target in ("torch.ops.aten.resize_as_.default", "torch.ops.aten.set_.source_Tensor_storage_offset"):
        with pytest.raises(ReconstructRefused, match="not an allowlisted torch operator"):
            reconstruct_export(grow.edited(lambda p, t=target: _retarget(p, "aten.resize_.default", t)), grow.tensors)


def _retarget(p: Program, old: str, new: str) -> None:
    next(n for n in _graph(p)["nodes"] if n["target"] == f"torch.ops.{old}")["target"] = new
