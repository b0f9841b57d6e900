"""securehub.reconstruct.export_schema enumerates torch 2.13's program schema: every field and union kind it defines
is either admitted or refused by name. If torch adds one, these tests fail and someone decides."""

from __future__ import annotations

import dataclasses
import math

import pytest
from torch._export.serde import schema

from securehub.errors import ReconstructRefused
from securehub.reconstruct import export_schema as s


@pytest.mark.parametrize("class_name", sorted(s.SCHEMA_FIELDS))
def test_admitted_structs_list_exactly_torchs_fields(class_name: str) -> None:
    required, optional = s.SCHEMA_FIELDS[class_name]
    assert not required & optional
    torch_fields = {f.name for f in dataclasses.fields(getattr(schema, class_name))}
    assert required | optional == torch_fields


@pytest.mark.parametrize(
    ("union", "admitted", "refused"),
    [
        ("Argument", s.ADMITTED_ARGUMENT_KINDS, s.REFUSED_ARGUMENT_KINDS),
        ("InputSpec", s.ADMITTED_INPUT_SPECS, s.REFUSED_INPUT_SPECS),
        ("OutputSpec", s.ADMITTED_OUTPUT_SPECS, s.REFUSED_OUTPUT_SPECS),
    ],
)
def test_union_kinds_are_all_admitted_or_refused(union: str, admitted: frozenset[str], refused: frozenset[str]) -> None:
    assert not admitted & refused
    assert admitted | refused == {f.name for f in dataclasses.fields(getattr(schema, union))}


def test_refused_argument_kinds_name_the_resolving_ones() -> None:
    assert {"as_operator", "as_custom_obj"} <= s.REFUSED_ARGUMENT_KINDS


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("torch.ops.aten.linear.default", True),
        ("torch.ops.aten.gelu.default", True),  # takes a str (approximate=...): a plain value
        ("torch.ops.aten.from_file.default", False),
        ("torch.ops.aten.save.default", False),
        ("torch.ops.aten.set_.source_Storage", False),
        ("torch.ops.aten.len.any", False),
        ("torch.ops.aten.__class__.default", False),
        ("torch.ops.myns.op.default", False),
        ("torch.ops.aten.nonexistent_op.default", False),
        # private kernels only from PRIVATE_OPS_ALLOWED (aten._reshape_alias: a view with no bounds check)
        ("torch.ops.aten._to_copy.default", True),
        ("torch.ops.aten._assert_tensor_metadata.default", True),
        ("torch.ops.aten._reshape_alias.default", False),
        ("torch.ops.aten._print.default", False),
        # families whose kernels trust torch-made index tensors; an `unsafe` switch; prims
        ("torch.ops.aten.max_pool2d_with_indices_backward.default", False),
        ("torch.ops.aten.sparse_coo_tensor.indices_size", False),
        ("torch.ops.aten.segment_reduce.default", False),
        ("torch.ops.prims.add.default", False),
        ("torch.ops.aten.unsafe_split.Tensor", True),  # the name says unsafe; the kernel is bounds-checked
    ],
)
def test_operator_targets(target: str, allowed: bool) -> None:
    assert s.operator_target_allowed(s.resolve_op_target(target)) is allowed


@pytest.mark.parametrize(("text", "value"), [("Infinity", math.inf), ("-Infinity", -math.inf), ("NaN", math.nan)])
def test_torchs_non_finite_float_strings_are_numbers(text: str, value: float) -> None:
    """torch writes inf/nan floats (an attention mask's ``masked_fill(mask, -inf)``) as these strings."""
    assert s._float(text, "x") == value or (math.isnan(value) and math.isnan(s._float(text, "x")))


@pytest.mark.parametrize("text", ["inf", "1e999", " 1", "1", "infinity", "+Infinity", "nan", ""])
def test_other_float_strings_are_refused(text: str) -> None:
    """torch's deserialiser would accept any ``float(text)``; only the three strings torch writes pass."""
    with pytest.raises(ReconstructRefused, match="is not a number"):
        s._float(text, "x")
