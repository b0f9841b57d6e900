"""Exported-program structure beyond operators, and result-cache key separation (red team 4 regressions).

Each case edits a legitimately exported program's JSON (graph signature, range constraints, verifiers,
schema version, strings that reach messages) and hands it to the parent's ``reconstruct_export``: all
are ``reconstruct-refused`` before forward() runs. Tensor metadata that contradicts the state is the
one admitted edit: the rebuilt module runs on the real tensors, so it computes what the honest program
computes. Last, the result-cache key: a result stored for one policy, argument set or set of example
inputs is never the entry another load looks up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from securehub.config.policy import Policy
from securehub.pipeline.result_cache import result_inputs, result_key
from securehub.reconstruct.export import reconstruct_export
from securehub.sandbox.example_inputs import example_inputs_digest
from tests.attacks.test_export_program_attacks import Exported, Program

ESC = "\x1b]0;owned\x07\x1b[2J"


class _Stateful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("count", torch.zeros(4))
        self.c = torch.ones(4)  # a plain tensor attribute: a lifted tensor constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.count + self.c


@pytest.fixture(scope="module")
def stateful() -> Exported:
    return Exported(_Stateful(), (torch.randn(2, 4),))


def _gm(p: Program) -> Program:
    gm: Program = p["graph_module"]
    return gm


def _mutation(kind: str, name_key: str, target: str, arg: str = "linear") -> Callable[[Program], None]:
    def mutate(p: Program) -> None:
        _gm(p)["signature"]["output_specs"].insert(0, {kind: {"arg": {"name": arg}, name_key: target}})
        _gm(p)["graph"]["outputs"].insert(0, {"as_tensor": {"name": arg}})

    return mutate


def _twice(mutate: Callable[[Program], None]) -> Callable[[Program], None]:
    return lambda p: (mutate(p), mutate(p)) and None


def _input_spec(spec: Program) -> Callable[[Program], None]:
    return lambda p: _gm(p)["signature"]["input_specs"].append(spec)


def _output_spec(spec: Program) -> Callable[[Program], None]:
    return lambda p: _gm(p)["signature"]["output_specs"].append(spec)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Program], None]:
    def mutate(p: Program) -> None:
        target = p
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _non_persistent(p: Program) -> None:
    for spec in _gm(p)["signature"]["input_specs"]:
        if "buffer" in spec:
            spec["buffer"]["persistent"] = False


def _in_spec(text: str) -> Callable[[Program], None]:
    return lambda p: _gm(p)["module_call_graph"][0]["signature"].__setitem__("in_spec", text)


_DICT_SPEC = '[1, {"type": "builtins.dict", "context": "[\\"' + ESC.replace("\x1b", "\\u001b").replace(
    "\x07", "\\u0007") + '\\"]", "children_spec": []}]'  # fmt: skip
_TENSOR = {"name": "x"}

REFUSED: dict[str, Callable[[Program], None]] = {
    "buffer_mutation_of_a_parameter": _mutation("buffer_mutation", "buffer_name", "fc.weight"),
    "buffer_mutation_of_a_tensor_constant": _mutation("buffer_mutation", "buffer_name", "c", arg="c_c"),
    "buffer_mutation_of_another_modules_buffer": _mutation("buffer_mutation", "buffer_name", "fc.count"),
    "duplicate_buffer_mutation": _twice(_mutation("buffer_mutation", "buffer_name", "count")),
    "loss_output": _output_spec({"loss_output": {"arg": _TENSOR}}),
    "gradient_to_parameter": _output_spec({"gradient_to_parameter": {"arg": _TENSOR, "parameter_name": "fc.weight"}}),
    "gradient_to_user_input": _output_spec({"gradient_to_user_input": {"arg": _TENSOR, "user_input_name": "x"}}),
    "token_output": _output_spec({"token": {"arg": {"name": "tok"}}}),
    "token_input": _input_spec({"token": {"arg": {"name": "tok"}}}),
    "custom_obj_input": _input_spec(
        {"custom_obj": {"arg": {"name": "obj", "class_fqn": "__torch__.Evil"}, "custom_obj_name": "obj"}}
    ),  # fmt: skip
    "custom_obj_values": _set(
        ("graph_module", "graph", "custom_obj_values"), {"obj": {"name": "obj", "class_fqn": "x"}}
    ),
    "non_persistent_buffer_in_the_state": _non_persistent,
    "inverted_range_constraint": _set(("range_constraints", "s0"), {"min_val": 10, "max_val": 2}),
    "range_constraint_over_2_63": _set(("range_constraints", "s0"), {"min_val": 0, "max_val": 1 << 70}),
    "unbacked_symbol_counting_up": _set(("range_constraints", "u99999999999"), {"min_val": 0, "max_val": 4}),
    "unknown_verifier": _set(("verifiers",), ["ATEN", "os.system"]),
    "too_many_verifiers": _set(("verifiers",), ["ATEN", "TRAINING", "ATEN"]),
    "other_schema_major": _set(("schema_version", "major"), 999),
    "torch_version_with_escapes": _set(("torch_version",), f"2.13{ESC}"),
    "tree_spec_with_escapes": _in_spec(_DICT_SPEC),
    "tree_spec_namedtuple": _set(("graph_module", "treespec_namedtuple_fields"), {"evil": {"field_names": ["a"]}}),
    "module_call_fqn_not_a_name": lambda p: _gm(p)["module_call_graph"].append({"fqn": "fc;import os"}),
    "forward_arg_name_not_an_identifier": lambda p: _gm(p)["module_call_graph"][0]["signature"].__setitem__(
        "forward_arg_names", ["x) or __import__('os').system('id') #"]
    ),  # fmt: skip
    "constant_input_with_escapes": lambda p: (
        (
            _input_spec({"constant_input": {"name": "k", "value": {"as_string": ESC}}})(p),
            _gm(p)["graph"]["inputs"].append({"as_string": ESC}),
        )
        and None
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_program_structure_edit_is_refused(stateful: Exported, case: str) -> None:
    err = stateful.refused(REFUSED[case])
    assert "\x1b" not in str(err) and "\x07" not in str(err)


@pytest.mark.parametrize(
    "changes",
    [
        {"sizes": [{"as_int": 1000}, {"as_int": 1000}], "strides": [{"as_int": 1 << 40}, {"as_int": 7}]},
        {"storage_offset": {"as_int": 1 << 40}},
        {"requires_grad": True},
        {"dtype": 1, "requires_grad": False},  # uint8 claimed for float tensors
    ],
    ids=["shape-and-strides", "storage-offset", "requires-grad", "dtype"],
)
def test_tensor_meta_contradicting_the_state_changes_nothing(stateful: Exported, changes: dict[str, Any]) -> None:
    """tensor_values only feed fake tensors; the rebuilt module runs on the state's real tensors."""

    def mutate(p: Program) -> None:
        for name, meta in _gm(p)["graph"]["tensor_values"].items():
            if name.startswith("p_"):
                meta.update(changes)

    module = reconstruct_export(stateful.edited(mutate), dict(stateful.tensors))
    with torch.no_grad():
        assert torch.equal(module(*stateful.inputs), stateful.model(*stateful.inputs))


# --------------------------------------------------------------------------- result-cache key separation


def _key(**changes: Any) -> str:
    base: dict[str, Any] = {
        "commit": "a" * 40, "tree_sha256": "b" * 64, "entrypoint": "net", "args": [], "kwargs": {"n": 1},
        "artifact_digests": {"https://h/w.bin": "c" * 64}, "policy_sha256": Policy.load("strict").sha256,
        "securehub_version": "1", "torch_version": "2.13", "example_inputs_digest": None,
    }  # fmt: skip
    base.update(changes)
    return result_key(result_inputs(**base))


def test_result_key_separates_policy_arguments_inputs_and_pins() -> None:
    """An entry stored under permissive (source strategy), or for another argument set, other example
    inputs or another pin, is never what a strict load with these inputs looks up."""
    keys = {
        "strict": _key(),
        "permissive": _key(policy_sha256=Policy.load("permissive").sha256),
        "default": _key(policy_sha256=Policy.load("default").sha256),
        "kwarg float": _key(kwargs={"n": 1.0}),
        "kwarg bool": _key(kwargs={"n": True}),
        "kwarg string": _key(kwargs={"n": "1"}),
        "positional": _key(args=[1], kwargs={}),
        "inputs": _key(example_inputs_digest=example_inputs_digest((torch.zeros(1, 4),))),
        "other inputs": _key(example_inputs_digest=example_inputs_digest((torch.zeros(2, 4),))),
        "pinned": _key(output_pin={"state_sha256": "d" * 64, "config_sha256": "e" * 64, "program_sha256": None}),
    }
    assert len(set(keys.values())) == len(keys), keys
    # key order of kwargs is not a difference: the same call
    assert _key(kwargs={"a": 1, "b": 2}) == _key(kwargs={"b": 2, "a": 1})
