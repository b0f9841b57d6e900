"""Allowlist over the whole serialised ``ExportedProgram`` JSON, before torch's deserialiser sees it.

torch 2.13's deserialiser (``torch/_export/serde/serialize.py``) was written
for trusted input. It turns JSON into the dataclasses of ``schema.py``
without type-checking leaves, ignores unknown fields, and acts on many
strings: an ``Argument`` of kind ``as_operator`` is resolved by ``getattr``
walking from ``torch`` (so ``torch.ops.aten.from_file.default`` can be handed
to an *allowed* higher-order op as its callable and read or write any file
when the rebuilt module runs), ``as_custom_obj`` names TorchBind classes,
node metadata names functions to resolve, ``expr_str`` goes to ``sympify``
(``eval``), ``verifiers`` are looked up by name, a range-constraint key like
``u99999999999`` makes it count to that number.

So this module walks every field of every schema type and admits only what
is listed here (:func:`check_program`); everything else -- an unknown field,
a missing one, a wrong type, an argument kind we do not list -- is
``ReconstructRefused``. What crosses, in short:

- node targets: allowlisted aten overloads (schema without Storage,
  Any, futures, streams or classes; not ``save``/``from_file``; private ``_`` operators only
  from :data:`PRIVATE_OPS_ALLOWED`; no autograd ``*_backward``, sparse, nested or mkldnn
  operator; no operator with an ``unsafe`` switch; no prims; no overload that writes an argument
  other than ``self`` -- no ``out=`` overload -- and no functional twin torch generated for an
  in-place kernel, each but for a listed few),
  ``operator``/``math``/``torch.sym_*`` scalar functions, and a short list of
  higher-order ops;
- arguments: tensors (by node name), symbolic/plain ints, floats, bools,
  strings (only to aten/prims ops and the string slots of higher-order ops),
  dtypes, memory formats, the strided layout, devices ``cpu``/``meta``, and
  lists of those -- never ``as_operator``, ``as_custom_obj``,
  ``as_string_to_argument`` or nested int/float lists;
- callables: only the subgraph slots of higher-order ops, and only as
  ``as_graph`` (a graph inside this program, under a fresh identifier);
- symbolic expressions: :mod:`securehub.reconstruct.symexpr`; range constraints:
  shape-symbol names with bounded integer bounds;
- metadata (node and graph-module) is dropped, ``guards_code`` (Python
  source) is dropped, tree specs are tuple/list/dict/None containers only.

The result is the cleaned JSON object to hand to torch, plus the names of
the program's subgraphs (the post-deserialisation walk checks those).
"""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from securehub._util.strict_json import JsonLimits, JsonRefusedError, check_bounds
from securehub.errors import ReconstructRefused
from securehub.reconstruct import symexpr as _symexpr

__all__ = [
    "ADMITTED_ARGUMENT_KINDS",
    "ADMITTED_INPUT_SPECS",
    "ADMITTED_OUTPUT_SPECS",
    "HIGHER_ORDER_SLOTS",
    "GENERATED_OPS_ALLOWED",
    "PRIVATE_OPS_ALLOWED",
    "REFUSED_ARGUMENT_KINDS",
    "REFUSED_INPUT_SPECS",
    "REFUSED_OUTPUT_SPECS",
    "SCHEMA_FIELDS",
    "WRITES_ALLOWED",
    "CheckedProgram",
    "check_program",
    "operator_target_allowed",
    "plain_function_targets",
    "resolve_op_target",
    "is_attribute_path",
]

_MAX_NODES = 200_000
_MAX_LIST = 200_000
_MAX_GRAPH_DEPTH = 8
_MAX_JSON_DEPTH = 200
_MAX_NAME = 256
_MAX_STRING = 4096
_MAX_SPEC = 1 << 20
_MAX_INT = 1 << 63
#: JSON values the whole program may hold, scanned on the raw bytes before ``json.loads`` builds
#: anything: ``json.loads`` turns a 512 MB body of ``[],`` into ~13 GB of empty lists in the parent,
#: long before ``_MAX_NODES`` could be counted. A real program takes about 60 values per node
#: (measured on torch 2.13 exports), so this admits ``_MAX_NODES`` ordinary nodes and caps what a
#: hostile body can cost at about 64 bytes per value.
_MAX_PROGRAM_ITEMS = 64 * _MAX_NODES
#: Raw bytes of one string literal (escapes included): tree specs are JSON inside a string (escaped,
#: up to ``_MAX_SPEC`` decoded); node metadata (stack traces) is dropped after parsing.
_MAX_PROGRAM_STRING = 8 * _MAX_SPEC

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: a state-dict style name: ASCII word components joined by dots -- identifiers, non-negative integers
#: (nn.Sequential's "0"), names register_parameter admits that start with a digit (once-for-all's
#: ``5to3_matrix``) and module names holding spaces and colons, which add_module admits (NVIDIA's GPUNet
#: names its layers ``"head: 1"``, ``"stage: 2 layer3"``, ``" layer23"``) or hyphens (the RegNet of
#: torchvision and of facebookresearch/SWAG adds its blocks as ``f"block{stage}-{i}"``: ``block1-0``); each
#: part holds at least one word character, and nothing that could quote or escape (torch.fx writes
#: ``getattr(x, "head: 1")``)
_FQN_PART = r"[A-Za-z0-9_: -]*[A-Za-z0-9_][A-Za-z0-9_: -]*"
_FQN = re.compile(rf"{_FQN_PART}(?:\.{_FQN_PART})*\Z")

_OP_NAMESPACES = frozenset({"aten"})
#: save/from_file touch files; resize_/resize_as_/set_ grow a tensor's storage in place, and the grown bytes
#: are uninitialised (the parent's freed heap: the ``aten.empty`` family is zero-filled instead, see
#: ``securehub.reconstruct.export.zero_uninitialised``, but an in-place growth keeps the old bytes).
#: ctc_loss: its CPU kernel indexes log_probs by the target labels unchecked (a label of -10**7 or 2**40 from a
#: forged constant: SIGSEGV, red team 8), and torch.export cannot emit it (data-dependent output shape).
_DENIED_OPS = frozenset(
    {"aten::save", "aten::from_file", "aten::resize_", "aten::resize_as_", "aten::set_", "aten::ctc_loss"}
)
#: Private aten operators (``aten::_name``) are internals whose kernels trust their callers: e.g.
#: ``aten._reshape_alias`` makes a view of any size and stride without a bounds check, so a forged
#: program reads and writes the parent's heap at forward() time. Only these private operators --
#: the ones ``torch.export`` and core-ATen decompositions emit for ordinary layers, whose kernels
#: validate their inputs -- are admitted; every other ``_``-name is refused. (prims are not emitted
#: by ``torch.export`` at all and are not admitted.)
PRIVATE_OPS_ALLOWED = frozenset(
    {
        "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool3d", "aten::_assert_scalar",
        "aten::_assert_tensor_metadata", "aten::_local_scalar_dense", "aten::_log_softmax",
        "aten::_native_batch_norm_legit", "aten::_native_batch_norm_legit_functional",
        "aten::_native_batch_norm_legit_no_training", "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_softmax", "aten::_to_copy", "aten::_unsafe_view",
        # F.interpolate(mode="nearest-exact" / antialias=True) and weight_norm, as torch.export emits them
        "aten::_upsample_nearest_exact1d", "aten::_upsample_nearest_exact2d", "aten::_upsample_nearest_exact3d",
        "aten::_upsample_bilinear2d_aa", "aten::_upsample_bicubic2d_aa", "aten::_weight_norm",
    }
)  # fmt: skip
#: Operator families whose kernels trust index tensors they assume torch produced itself: autograd
#: ``*_backward`` kernels (``max_pool2d_with_indices_backward`` with forged indices writes out of
#: bounds: SIGSEGV), and the non-strided layouts (``sparse_coo_tensor`` with out-of-range indices,
#: then ``to_dense``, writes out of bounds; nested and mkldnn likewise build from caller metadata).
#: A program exported in eval mode from dense layers never calls them.
_REFUSED_NAME_PARTS = ("backward", "sparse", "nested", "mkldnn")
#: Operators allowed to write an argument other than ``self``. An overload admitted by signature may write
#: nothing (functional) or only its ``self`` (an in-place method: ``relu_``, ``add_``, ``copy_``); every other
#: writable argument -- the ``out=`` tensors of the ~575 ``.out`` overloads -- is refused unless listed here.
#: An ``out=`` kernel resizes the tensor it is handed and leaves it to each kernel whether every byte of the
#: grown storage is written: ``aten.resize.out(x, [2, 4096], out=x)`` wrote none (red team 6), so the
#: rebuilt ``forward()`` returned what the parent's allocator last freed. ``torch.export`` emits ``.out``
#: overloads only where model code passes ``out=`` itself. Listed: the batch-norm form that updates its
#: running statistics (train mode; its call is checked first, see ``export.CHECKED_OPS``).
WRITES_ALLOWED = frozenset({"aten::_native_batch_norm_legit.default"})
#: Overloads torch's codegen generated (``torch.Tag.generated``: the functional and ``out=`` twins of in-place
#: kernels) are admitted only from this list. ``torch.export`` keeps in-place calls in place, so a program
#: holds a generated functional twin only where model code named it -- and the twin shares its kernel with
#: the in-place form: ``aten.resize(x, size)`` is ``resize_`` on a copy and returned the parent's freed heap
#: in every byte it grew (red team 6; ``resize_``/``resize_as_`` themselves were refused by name). Listed:
#: the functional batch norm that core-ATen decompositions emit for a train-mode ``BatchNorm``.
GENERATED_OPS_ALLOWED = frozenset({"aten::_native_batch_norm_legit_functional.default"})
#: A public operator with an ``unsafe`` switch (``segment_reduce(..., unsafe=True)`` skips the check
#: that the segment lengths fit the data: an out-of-bounds read) is refused whatever the value.
_UNSAFE_ARGUMENT = "unsafe"
#: Types an allowlisted aten overload may take (as torch prints them): plain values, optionally in
#: ``List[...]``/``Optional[...]`` -- never a Storage, a class, Any, a Future, a generic ``t`` or a Dict.
_SCHEMA_ATOMS = frozenset(
    {
        "Tensor", "int", "SymInt", "float", "SymFloat", "bool", "SymBool", "str", "number", "complex",
        "Device", "Generator", "ScalarType", "Layout", "MemoryFormat", "Dimname",
    }
)  # fmt: skip
_SCHEMA_WRAPPER = re.compile(r"(?:List|Optional)\[(.*)\]\Z")
#: Higher-order ops and the positional slots that are subgraphs (and only those may be ``as_graph``).
#: Not ``while_loop``: a loop whose condition never turns false hangs the parent at forward() time,
#: which no sandbox limit covers; every other op here runs a number of steps bounded by tensor sizes.
HIGHER_ORDER_SLOTS: dict[str, frozenset[int]] = {
    "cond": frozenset({1, 2}),
    "map_impl": frozenset({0}),
    "scan": frozenset({0}),
    "wrap_with_set_grad_enabled": frozenset({1}),
    "wrap_with_autocast": frozenset({4}),
    "invoke_subgraph": frozenset({0}),
}
_OPERATOR_FUNCS = frozenset(
    {
        "getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "pos",
        "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "lshift", "rshift",
    }
)  # fmt: skip
_MATH_FUNCS = frozenset({"trunc", "ceil", "floor", "sqrt"})
_TORCH_SYM = frozenset({"sym_int", "sym_float", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt"})
_TREESPEC_TYPES = frozenset(
    {
        None,
        "builtins.tuple",
        "builtins.list",
        "builtins.dict",
        "collections.OrderedDict",
        "torch.fx.immutable_collections.immutable_list",
        "torch.fx.immutable_collections.immutable_dict",
    }
)
_VERIFIERS = frozenset({"ATEN", "TRAINING"})
_OPSET_NAMESPACES = frozenset({"aten", "prims"})
_DEVICE_TYPES = frozenset({"cpu", "meta"})
_LAYOUT_STRIDED = 7
_ARGUMENT_KINDS = frozenset({0, 1, 2})

#: Argument kinds that are plain values (the rest -- graph, operator, custom object, dict -- are special).
_VALUE_KINDS = frozenset(
    {
        "as_none", "as_tensor", "as_tensors", "as_int", "as_ints", "as_float", "as_floats", "as_bool",
        "as_bools", "as_sym_int", "as_sym_ints", "as_sym_float", "as_sym_floats", "as_sym_bool",
        "as_sym_bools", "as_optional_tensor", "as_optional_tensors",
    }
)  # fmt: skip
#: What an operator call may additionally receive.
_OP_INPUT_KINDS = _VALUE_KINDS | {
    "as_string", "as_strings", "as_scalar_type", "as_memory_format", "as_layout", "as_device",
    "as_complex", "as_nested_tensors",
}  # fmt: skip
_GRAPH_INPUT_KINDS = frozenset({"as_tensor", "as_sym_int", "as_int", "as_float", "as_bool", "as_none", "as_string"})
_GRAPH_OUTPUT_KINDS = frozenset(
    {"as_tensor", "as_sym_int", "as_sym_float", "as_sym_bool", "as_int", "as_float", "as_bool", "as_none"}
)
_NODE_OUTPUT_KINDS = _VALUE_KINDS
_SIGNATURE_ARG_KINDS = frozenset(
    {"as_tensor", "as_sym_int", "as_sym_float", "as_sym_bool", "as_int", "as_float", "as_bool", "as_none",
     "as_string"}
)  # fmt: skip


#: Argument kinds torch 2.13 defines that never cross (named here so a new torch kind is noticed in review:
#: tests/unit/test_export_schema.py compares these tables with ``torch/_export/serde/schema.py``).
REFUSED_ARGUMENT_KINDS = frozenset(
    {"as_custom_obj", "as_operator", "as_string_to_argument", "as_int_lists", "as_float_lists"}
)
ADMITTED_ARGUMENT_KINDS = _OP_INPUT_KINDS | {"as_graph"}
ADMITTED_INPUT_SPECS = frozenset({"user_input", "parameter", "buffer", "tensor_constant", "constant_input"})
REFUSED_INPUT_SPECS = frozenset({"custom_obj", "token"})
ADMITTED_OUTPUT_SPECS = frozenset({"user_output", "buffer_mutation", "parameter_mutation", "user_input_mutation"})
REFUSED_OUTPUT_SPECS = frozenset({"loss_output", "gradient_to_parameter", "gradient_to_user_input", "token"})


def _f(*names: str) -> frozenset[str]:
    return frozenset(names)


#: torch schema dataclass name -> (required fields, optional fields). Every object in the program is one
#: of these; any other key is refused.
SCHEMA_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "ExportedProgram": (
        _f("graph_module", "opset_version", "range_constraints", "schema_version"),
        _f("verifiers", "torch_version", "guards_code"),
    ),
    "SchemaVersion": (_f("major", "minor"), _f()),
    "RangeConstraint": (_f("min_val", "max_val"), _f()),
    "GraphModule": (_f("graph", "signature", "module_call_graph"), _f("metadata", "treespec_namedtuple_fields")),
    "Graph": (
        _f("inputs", "outputs", "nodes", "tensor_values", "sym_int_values", "sym_bool_values"),
        _f("is_single_tensor_return", "custom_obj_values", "sym_float_values"),
    ),
    "Node": (_f("target", "inputs", "outputs", "metadata"), _f("is_hop_single_tensor_return", "name")),
    "NamedArgument": (_f("name", "arg"), _f("kind")),
    "TensorArgument": (_f("name"), _f()),
    "GraphArgument": (_f("name", "graph"), _f()),
    "ComplexValue": (_f("real", "imag"), _f()),
    "Device": (_f("type"), _f("index")),
    "TensorMeta": (
        _f("dtype", "sizes", "requires_grad", "device", "strides", "storage_offset", "layout"),
        _f(),
    ),
    "SymExpr": (_f("expr_str"), _f("hint")),
    "GraphSignature": (_f("input_specs", "output_specs"), _f()),
    "UserInputSpec": (_f("arg"), _f()),
    "InputToConstantInputSpec": (_f("name", "value"), _f()),
    "InputToParameterSpec": (_f("arg", "parameter_name"), _f()),
    "InputToBufferSpec": (_f("arg", "buffer_name"), _f("persistent")),
    "InputToTensorConstantSpec": (_f("arg", "tensor_constant_name"), _f()),
    "UserOutputSpec": (_f("arg"), _f()),
    "BufferMutationSpec": (_f("arg", "buffer_name"), _f()),
    "ParameterMutationSpec": (_f("arg", "parameter_name"), _f()),
    "UserInputMutationSpec": (_f("arg", "user_input_name"), _f()),
    "ModuleCallEntry": (_f("fqn"), _f("signature")),
    "ModuleCallSignature": (_f("inputs", "outputs", "in_spec", "out_spec"), _f("forward_arg_names")),
}


def _refuse(what: str) -> ReconstructRefused:
    return ReconstructRefused(f"exported program: {what}; the sandbox child's export is malformed or hostile")


@dataclass
class CheckedProgram:
    """The cleaned program JSON (a dict for ``_dict_to_dataclass``) and the names of its subgraphs."""

    data: dict[str, Any]
    subgraphs: frozenset[str]


@dataclass
class _Walk:
    nodes: int = 0
    graph_depth: int = 0
    subgraphs: set[str] = field(default_factory=set)
    exprs: set[str] = field(default_factory=set)
    #: first components of parameter/buffer/constant names: module() unlifts those into submodules
    state_roots: set[str] = field(default_factory=set)


# --------------------------------------------------------------------------- leaves


def _obj(value: object, where: str, schema_class: str) -> dict[str, Any]:
    """``value`` as a JSON object of torch's ``schema_class``: all required fields, no unknown ones."""
    required, optional = SCHEMA_FIELDS[schema_class]
    if not isinstance(value, dict):
        raise _refuse(f"{where} is a {type(value).__name__}, expected an object")
    keys = set(value)
    if missing := required - keys:
        raise _refuse(f"{where} lacks the field(s) {sorted(missing)}")
    if unknown := keys - required - optional:
        raise _refuse(f"{where} has the unknown field(s) {sorted(str(k)[:40] for k in unknown)[:5]}")
    return value


def _union(value: object, where: str, allowed: frozenset[str]) -> tuple[str, Any]:
    """A schema union: an object with exactly one key, which must be in ``allowed``."""
    if not isinstance(value, dict) or len(value) != 1:
        raise _refuse(f"{where} is not a one-field union object")
    ((kind, inner),) = value.items()
    if not _is_one_of(kind, allowed):
        raise _refuse(f"{where} is of kind {str(kind)[:40]!r}, which is not allowed here")
    return kind, inner


def _int(value: object, where: str) -> int:
    if type(value) is not int or abs(value) > _MAX_INT:
        raise _refuse(f"{where} is not an integer within +-2**63")
    return value


#: How torch's serialiser writes non-finite floats (``_dataclass_to_dict``; JSON has no literal for them) and
#: its deserialiser reads back with ``float(data)``: ``masked_fill(mask, float("-inf"))`` in every attention
#: with a padding mask (``nn.MultiheadAttention(key_padding_mask=...)``, DETR) exports as ``"-Infinity"``.
#: Exactly these three strings; any other string (``"1e999"``, ``" 1"``) is still refused.
_NON_FINITE_FLOATS = {"Infinity": float("inf"), "-Infinity": float("-inf"), "NaN": float("nan")}


def _float(value: object, where: str) -> float | int:
    if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _MAX_INT):
        return value
    if isinstance(value, str) and value in _NON_FINITE_FLOATS:
        return _NON_FINITE_FLOATS[value]
    raise _refuse(f"{where} is not a number")


def _bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise _refuse(f"{where} is not a boolean")
    return value


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > _MAX_LIST:
        raise _refuse(f"{where} is not a list of at most {_MAX_LIST} items")
    return value


def _dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > _MAX_LIST:
        raise _refuse(f"{where} is not an object of at most {_MAX_LIST} entries")
    return value


def _text(value: object, where: str, limit: int = _MAX_STRING) -> str:
    if not isinstance(value, str) or len(value) > limit or _CONTROL.search(value):
        raise _refuse(f"{where} is not a string of at most {limit} characters without control characters")
    return value


def _ident(value: object, where: str) -> str:
    """A graph value name: it becomes a Python identifier in generated code."""
    if not isinstance(value, str) or len(value) > _MAX_NAME or not _IDENT.match(value) or keyword.iskeyword(value):
        raise _refuse(f"{where} {str(value)[:80]!r} is not a plain identifier")
    return value


def _arg_name(value: object, where: str) -> str:
    """An operator's parameter name: torch maps it onto the op's schema (keywords like ``from`` exist)."""
    if not isinstance(value, str) or len(value) > _MAX_NAME or not _IDENT.match(value):
        raise _refuse(f"{where} {str(value)[:80]!r} is not an identifier")
    return value


def is_attribute_path(text: str) -> bool:
    """``text`` is a state-dict style name of at most ``_MAX_NAME`` characters (see ``_FQN``)."""
    return len(text) <= _MAX_NAME and _FQN.match(text) is not None


def _fqn(value: object, where: str, *, empty: bool = False) -> str:
    if empty and value == "":
        return ""
    if not isinstance(value, str) or len(value) > _MAX_NAME or not _FQN.match(value):
        raise _refuse(f"{where} {str(value)[:80]!r} is not a dotted attribute name")
    return value


def _is_one_of(value: object, allowed: AbstractSet[object]) -> bool:
    """``value`` is a string in ``allowed``.

    Every membership test of a hostile value goes through this: ``[...] in frozenset`` hashes
    the value first, and a list or object there raised ``TypeError`` (unhashable) out of
    :func:`check_program` instead of a refusal (found by tests/fuzz/test_fuzz_export.py).
    """
    return isinstance(value, str) and value in allowed


def _enum(value: object, where: str, allowed: frozenset[int]) -> int:
    if type(value) is not int or value not in allowed:
        raise _refuse(f"{where} is {str(value)[:20]!r}, not one of the allowed values")
    return value


def _scalar_types() -> frozenset[int]:
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    return frozenset(int(k) for k in _SERIALIZE_TO_TORCH_DTYPE)


def _memory_formats() -> frozenset[int]:
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_MEMORY_FORMAT  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    return frozenset(int(k) for k in _SERIALIZE_TO_TORCH_MEMORY_FORMAT)


# --------------------------------------------------------------------------- operator targets


def resolve_op_target(target: str) -> Any | None:
    """The ``OpOverload`` a ``torch.ops.<ns>.<op>.<overload>`` string names, or None.

    Looked up through ``torch.ops`` (the dispatcher's registry), never by a
    ``getattr`` walk over arbitrary modules.
    """
    import torch  # noqa: PLC0415 - lazy: only operator checks need torch

    parts = target.split(".")
    if len(parts) != 5 or parts[:2] != ["torch", "ops"] or parts[2] not in _OP_NAMESPACES:
        return None
    if not all(_IDENT.match(p) and not p.startswith("__") for p in parts[3:]):
        return None
    try:
        packet = getattr(getattr(torch.ops, parts[2]), parts[3])
        overload = getattr(packet, parts[4])
    except (AttributeError, RuntimeError):
        return None
    return overload if isinstance(overload, torch._ops.OpOverload) else None


def operator_target_allowed(op: Any) -> bool:
    """An aten overload (no prims), not denied, whose every argument and return has a plain-value type.

    Also refused unless listed: a torch-generated overload (:data:`GENERATED_OPS_ALLOWED`) and one that writes
    an argument other than ``self`` (:data:`WRITES_ALLOWED`).
    """
    import torch  # noqa: PLC0415 - lazy: only operator checks need torch

    if not isinstance(op, torch._ops.OpOverload) or op.namespace not in _OP_NAMESPACES:
        return False
    schema = op._schema
    if schema.name in _DENIED_OPS or _private_op_refused(schema.name):
        return False
    if any(a.name == _UNSAFE_ARGUMENT for a in schema.arguments):
        return False
    overload = f"{schema.name}.{op._overloadname}"
    if torch.Tag.generated in op.tags and overload not in GENERATED_OPS_ALLOWED:
        return False
    writes = {a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write}
    if writes - {"self"} and overload not in WRITES_ALLOWED:
        return False
    types = [str(a.type) for a in schema.arguments] + [str(r.type) for r in schema.returns]
    return all(_plain_schema_type(t.replace(" ", "")) for t in types)


def _private_op_refused(name: str) -> bool:
    """``aten::_x`` not in :data:`PRIVATE_OPS_ALLOWED`, or of a refused family (see :data:`_REFUSED_NAME_PARTS`)."""
    base = name.split("::", 1)[-1]
    if any(part in base for part in _REFUSED_NAME_PARTS):
        return True
    return base.startswith("_") and name not in PRIVATE_OPS_ALLOWED


def _plain_schema_type(text: str) -> bool:
    while (match := _SCHEMA_WRAPPER.match(text)) is not None:
        text = match.group(1)
    return text in _SCHEMA_ATOMS


def plain_function_targets(**modules: Any) -> set[Any]:
    """The scalar functions a node may call, looked up in the given ``operator``/``math``/``torch`` modules."""
    names = {"operator": _OPERATOR_FUNCS, "math": _MATH_FUNCS, "torch": _TORCH_SYM}
    return {getattr(modules[m], n) for m, group in names.items() for n in group if hasattr(modules[m], n)}


def _node_target(target: object) -> tuple[str, frozenset[int] | None]:
    """Check a node target string; returns ``(kind, graph slots)`` with kind ``op``/``hop``/``sym``."""
    text = _text(target, "a node target", _MAX_NAME)
    parts = text.split(".")
    if len(parts) == 4 and parts[:3] == ["torch", "ops", "higher_order"] and parts[3] in HIGHER_ORDER_SLOTS:
        return "hop", HIGHER_ORDER_SLOTS[parts[3]]
    if len(parts) == 2 and (
        (parts[0] == "_operator" and parts[1] in _OPERATOR_FUNCS)
        or (parts[0] == "math" and parts[1] in _MATH_FUNCS)
        or (parts[0] == "torch" and parts[1] in _TORCH_SYM)
    ):
        return "sym", None
    if operator_target_allowed(resolve_op_target(text)):
        return "op", None
    raise _refuse(f"node target {text[:120]!r} is not an allowlisted torch operator")


# --------------------------------------------------------------------------- symbolic values


def _expr(value: object, where: str, walk: _Walk) -> None:
    text = _text(value, where, _symexpr.MAX_CHARS)
    if text not in walk.exprs:
        _symexpr.build(_symexpr.parse(text), text, {})
        walk.exprs.add(text)


def _sym_expr(value: object, where: str, walk: _Walk) -> dict[str, Any]:
    data = _obj(value, where, "SymExpr")
    _expr(data["expr_str"], f"{where}.expr_str", walk)
    if data.get("hint") is not None:
        kind, hint = _union(data["hint"], f"{where}.hint", frozenset({"as_int", "as_bool", "as_float"}))
        hint_checks: dict[str, Callable[[object, str], object]] = {"as_int": _int, "as_bool": _bool, "as_float": _float}
        hint_checks[kind](hint, f"{where}.hint")
    return data


def _sym_value(value: object, where: str, walk: _Walk, plain: str, check: Callable[[object, str], object]) -> None:
    """``SymInt``/``SymFloat``/``SymBool``: an expression or a plain constant."""
    kind, inner = _union(value, where, frozenset({"as_expr", plain}))
    if kind == "as_expr":
        _sym_expr(inner, where, walk)
    else:
        check(inner, where)


def _sym_int(value: object, where: str, walk: _Walk) -> None:
    _sym_value(value, where, walk, "as_int", _int)


def _sym_argument(value: object, where: str, plain: str, check: Callable[[object, str], object]) -> None:
    """``SymIntArgument``/...: a graph value by name, or a constant."""
    kind, inner = _union(value, where, frozenset({"as_name", plain}))
    if kind == "as_name":
        _ident(inner, where)
    else:
        check(inner, where)


def _device(value: object, where: str) -> None:
    data = _obj(value, where, "Device")
    if not _is_one_of(data["type"], _DEVICE_TYPES):
        raise _refuse(f"{where} is device {str(data['type'])[:20]!r}; only {sorted(_DEVICE_TYPES)} are allowed")
    if data.get("index") not in (None, 0) or type(data.get("index")) is bool:
        raise _refuse(f"{where} has device index {str(data.get('index'))[:20]!r}")


def _tensor_meta(value: object, where: str, walk: _Walk) -> None:
    data = _obj(value, where, "TensorMeta")
    _enum(data["dtype"], f"{where}.dtype", _scalar_types())
    for key in ("sizes", "strides"):
        for item in _list(data[key], f"{where}.{key}"):
            _sym_int(item, f"{where}.{key}", walk)
    _bool(data["requires_grad"], f"{where}.requires_grad")
    _device(data["device"], f"{where}.device")
    _sym_int(data["storage_offset"], f"{where}.storage_offset", walk)
    _enum(data["layout"], f"{where}.layout", frozenset({_LAYOUT_STRIDED}))


# --------------------------------------------------------------------------- arguments


def _tensor_ref(value: object, where: str) -> None:
    _ident(_obj(value, where, "TensorArgument")["name"], f"{where}.name")


def _optional_tensor(value: object, where: str) -> None:
    kind, inner = _union(value, where, frozenset({"as_tensor", "as_none"}))
    if kind == "as_tensor":
        _tensor_ref(inner, where)
    else:
        _bool(inner, where)


def _each(value: object, where: str) -> Iterator[Any]:
    yield from _list(value, where)


def _argument(value: object, where: str, allowed: frozenset[str], walk: _Walk) -> str:
    """Check one ``Argument`` whose kind must be in ``allowed``; returns the kind.

    ``as_graph`` recurses into the subgraph (a graph of this same program,
    registered under a fresh identifier); the refused kinds never get here
    because no caller lists them.
    """
    kind, inner = _union(value, where, allowed)
    simple: dict[str, Callable[[object, str], object]] = {
        "as_none": _bool, "as_int": _int, "as_float": _float, "as_bool": _bool,
        "as_tensor": _tensor_ref, "as_optional_tensor": _optional_tensor,
        "as_string": _text, "as_scalar_type": lambda v, w: _enum(v, w, _scalar_types()),
        "as_memory_format": lambda v, w: _enum(v, w, _memory_formats()),
        "as_layout": lambda v, w: _enum(v, w, frozenset({_LAYOUT_STRIDED})), "as_device": _device,
        "as_sym_int": lambda v, w: _sym_argument(v, w, "as_int", _int),
        "as_sym_float": lambda v, w: _sym_argument(v, w, "as_float", _float),
        "as_sym_bool": lambda v, w: _sym_argument(v, w, "as_bool", _bool),
        "as_complex": lambda v, w: [_float(x, w) for x in _obj(v, w, "ComplexValue").values()],
    }  # fmt: skip
    if kind in simple:
        simple[kind](inner, f"{where}.{kind}")
    elif kind == "as_graph":
        _graph_argument(inner, f"{where}.as_graph", walk)
    elif kind == "as_nested_tensors":
        for row in _each(inner, where):
            for item in _each(row, where):
                _tensor_ref(item, where)
    else:
        element = {
            "as_tensors": "as_tensor", "as_ints": "as_int", "as_floats": "as_float", "as_bools": "as_bool",
            "as_strings": "as_string", "as_sym_ints": "as_sym_int", "as_sym_floats": "as_sym_float",
            "as_sym_bools": "as_sym_bool", "as_optional_tensors": "as_optional_tensor",
        }[kind]  # fmt: skip
        for item in _each(inner, where):
            simple[element](item, f"{where}.{kind}[]")
    return kind


def _graph_argument(value: object, where: str, walk: _Walk) -> None:
    data = _obj(value, where, "GraphArgument")
    name = _ident(data["name"], f"{where}.name")
    if name in walk.subgraphs:
        raise _refuse(f"{where} reuses the subgraph name {name!r}")
    walk.subgraphs.add(name)
    walk.graph_depth += 1
    if walk.graph_depth > _MAX_GRAPH_DEPTH:
        raise _refuse(f"subgraphs nested more than {_MAX_GRAPH_DEPTH} deep")
    data["graph"] = _graph(data["graph"], f"{where}.graph", walk)
    walk.graph_depth -= 1


# --------------------------------------------------------------------------- graph


def _node(value: object, where: str, walk: _Walk) -> dict[str, Any]:
    data = _obj(value, where, "Node")
    walk.nodes += 1
    if walk.nodes > _MAX_NODES:
        raise _refuse(f"more than {_MAX_NODES} nodes")
    kind, graph_slots = _node_target(data["target"])
    where = f"node {str(data.get('name'))[:60]!r} ({str(data['target'])[:80]})"
    slots_seen: set[int] = set()
    for index, item in enumerate(_each(data["inputs"], f"{where} inputs")):
        named = _obj(item, f"{where} input", "NamedArgument")
        if named["name"] != "":
            _arg_name(named["name"], f"{where} input name")
        if named.get("kind") is not None:
            _enum(named["kind"], f"{where} input kind", _ARGUMENT_KINDS)
        if graph_slots is not None and index in graph_slots:
            # A higher-order op's callable: only a subgraph of this program, never an operator by name.
            if named["name"] != "" or named.get("kind") not in (None, 1):
                raise _refuse(f"{where} input {index} (a subgraph slot) is not positional")
            _argument(named["arg"], f"{where} input {index}", frozenset({"as_graph"}), walk)
            slots_seen.add(index)
        elif kind == "hop":
            _argument(named["arg"], f"{where} input {index}", _VALUE_KINDS | {"as_string", "as_scalar_type"}, walk)
        else:
            _argument(named["arg"], f"{where} input {index}", _OP_INPUT_KINDS, walk)
    if graph_slots is not None and slots_seen != graph_slots:
        raise _refuse(f"{where} lacks its subgraph argument(s)")
    for item in _each(data["outputs"], f"{where} outputs"):
        _argument(item, f"{where} output", _NODE_OUTPUT_KINDS, walk)
    data["metadata"] = {}  # stack traces, module paths, function names to resolve: evidence we do not need
    if data.get("is_hop_single_tensor_return") is not None:
        _bool(data["is_hop_single_tensor_return"], f"{where} is_hop_single_tensor_return")
    if data.get("name") is not None:
        _ident(data["name"], f"{where} name")
    return data


def _graph(value: object, where: str, walk: _Walk) -> dict[str, Any]:
    data = _obj(value, where, "Graph")
    for item in _each(data["inputs"], f"{where}.inputs"):
        _argument(item, f"{where}.inputs", _GRAPH_INPUT_KINDS, walk)
    for item in _each(data["outputs"], f"{where}.outputs"):
        _argument(item, f"{where}.outputs", _GRAPH_OUTPUT_KINDS, walk)
    data["nodes"] = [_node(n, f"{where}.nodes", walk) for n in _each(data["nodes"], f"{where}.nodes")]
    for name, meta in _dict(data["tensor_values"], f"{where}.tensor_values").items():
        _tensor_meta(meta, f"tensor_values[{_ident(name, 'a tensor value name')}]", walk)
    for name, sym in _dict(data["sym_int_values"], f"{where}.sym_int_values").items():
        _sym_value(sym, f"sym_int_values[{_ident(name, 'a symbol value name')}]", walk, "as_int", _int)
    for name, sym in _dict(data.get("sym_float_values", {}), f"{where}.sym_float_values").items():
        _sym_value(sym, f"sym_float_values[{_ident(name, 'a symbol value name')}]", walk, "as_float", _float)
    for name, sym in _dict(data["sym_bool_values"], f"{where}.sym_bool_values").items():
        _sym_value(sym, f"sym_bool_values[{_ident(name, 'a symbol value name')}]", walk, "as_bool", _bool)
    if data.get("custom_obj_values"):
        raise _refuse("it uses custom (TorchBind) objects, which securehub does not load")
    if "is_single_tensor_return" in data:
        _bool(data["is_single_tensor_return"], f"{where}.is_single_tensor_return")
    return data


# --------------------------------------------------------------------------- signature and module call graph


def _input_spec(value: object, walk: _Walk) -> None:
    where = "an input spec"
    kind, inner = _union(value, where, ADMITTED_INPUT_SPECS)
    if kind == "user_input":
        _argument(_obj(inner, where, "UserInputSpec")["arg"], where, _GRAPH_INPUT_KINDS, walk)
    elif kind == "constant_input":
        data = _obj(inner, where, "InputToConstantInputSpec")
        _ident(data["name"], where)
        const_kind, const = _union(
            data["value"], where, frozenset({"as_none", "as_int", "as_float", "as_string", "as_bool"})
        )
        checks: dict[str, Callable[[object, str], object]] = {
            "as_none": _bool, "as_int": _int, "as_float": _float, "as_string": _text, "as_bool": _bool,
        }  # fmt: skip
        checks[const_kind](const, where)
    else:
        schema_class, name_key = {
            "parameter": ("InputToParameterSpec", "parameter_name"),
            "buffer": ("InputToBufferSpec", "buffer_name"),
            "tensor_constant": ("InputToTensorConstantSpec", "tensor_constant_name"),
        }[kind]
        data = _obj(inner, where, schema_class)
        _tensor_ref(data["arg"], where)
        walk.state_roots.add(_fqn(data[name_key], f"{where} name").split(".")[0])
        if "persistent" in data:
            _bool(data["persistent"], f"{where} persistent")


def _output_spec(value: object, walk: _Walk) -> None:
    where = "an output spec"
    kind, inner = _union(value, where, ADMITTED_OUTPUT_SPECS)
    if kind == "user_output":
        _argument(_obj(inner, where, "UserOutputSpec")["arg"], where, _GRAPH_OUTPUT_KINDS, walk)
        return
    schema_class, name_key = {
        "buffer_mutation": ("BufferMutationSpec", "buffer_name"),
        "parameter_mutation": ("ParameterMutationSpec", "parameter_name"),
        "user_input_mutation": ("UserInputMutationSpec", "user_input_name"),
    }[kind]
    data = _obj(inner, where, schema_class)
    _tensor_ref(data["arg"], where)
    _fqn(data[name_key], f"{where} name")


def _treespec(value: object, where: str) -> None:
    text = _text(value, where, _MAX_SPEC)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise _refuse(f"{where} is not JSON") from None
    for node_type in _spec_types(data, 0):
        if not (node_type is None or _is_one_of(node_type, _TREESPEC_TYPES)):
            raise _refuse(f"{where} uses container type {str(node_type)[:80]!r}")


def _spec_types(data: Any, depth: int) -> Iterator[Any]:
    if depth > _MAX_JSON_DEPTH:
        raise _refuse("a tree spec is nested too deeply")
    if isinstance(data, dict):
        if "__enum__" in data or "default_factory_module" in data:
            raise _refuse("a tree spec names an enum or a defaultdict factory to import")
        for key, item in data.items():
            if key == "type":
                yield item
            elif key == "context" and isinstance(item, str):
                yield from _spec_types(_context(item), depth + 1)
            yield from _spec_types(item, depth + 1)
    elif isinstance(data, list):
        for item in data:
            yield from _spec_types(item, depth + 1)
    elif isinstance(data, str):
        if "__enum__" in data or "default_factory" in data:
            raise _refuse("a tree spec names an enum or a defaultdict factory to import")
        if _CONTROL.search(data):
            raise _refuse("a tree spec string contains control characters")


def _context(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _module_call_entry(value: object, walk: _Walk) -> None:
    data = _obj(value, "a module call entry", "ModuleCallEntry")
    _fqn(data["fqn"], "a module call entry fqn", empty=True)
    if data.get("signature") is None:
        return
    where = f"module call signature of {data['fqn'][:60]!r}"
    sig = _obj(data["signature"], where, "ModuleCallSignature")
    for key in ("inputs", "outputs"):
        for item in _each(sig[key], f"{where} {key}"):
            _argument(item, f"{where} {key}", _SIGNATURE_ARG_KINDS, walk)
    _treespec(sig["in_spec"], f"{where} in_spec")
    _treespec(sig["out_spec"], f"{where} out_spec")
    if sig.get("forward_arg_names") is not None:
        for name in _each(sig["forward_arg_names"], where):
            _ident(name, f"{where} forward argument name")


# --------------------------------------------------------------------------- program


def _range_constraints(value: object) -> None:
    """``{symbol: {"min_val": int | None, "max_val": int | None}}`` with bounded integers.

    torch parses the index out of an unbacked symbol's name (``u<N>``) and
    counts up to it, so names are short shape-symbol names, nothing more.
    """
    for name, bounds in _dict(value, "range_constraints").items():
        _symexpr.check_symbol_name(name)
        data = _obj(bounds, f"range constraint {name!r}", "RangeConstraint")
        for key in ("min_val", "max_val"):
            if data[key] is not None:
                _int(data[key], f"range constraint {name!r} {key}")


def _graph_module(value: object, walk: _Walk) -> dict[str, Any]:
    data = _obj(value, "graph_module", "GraphModule")
    data["graph"] = _graph(data["graph"], "the graph", walk)
    sig = _obj(data["signature"], "the graph signature", "GraphSignature")
    for spec in _each(sig["input_specs"], "input_specs"):
        _input_spec(spec, walk)
    for spec in _each(sig["output_specs"], "output_specs"):
        _output_spec(spec, walk)
    for entry in _each(data["module_call_graph"], "module_call_graph"):
        _module_call_entry(entry, walk)
    if data.get("treespec_namedtuple_fields"):
        raise _refuse("it names namedtuple types for its tree specs, which securehub does not rebuild")
    data["metadata"] = {}  # "custom" metadata is arbitrary JSON the rebuilt module does not need
    data["treespec_namedtuple_fields"] = {}
    return data


def _program(value: object, walk: _Walk) -> dict[str, Any]:
    data = _obj(value, "the program", "ExportedProgram")
    data["graph_module"] = _graph_module(data["graph_module"], walk)
    for namespace, version in _dict(data["opset_version"], "opset_version").items():
        if not _is_one_of(namespace, _OPSET_NAMESPACES):
            raise _refuse(f"opset_version names the namespace {str(namespace)[:40]!r}")
        _int(version, "an opset version")
    _range_constraints(data["range_constraints"])
    schema = _obj(data["schema_version"], "schema_version", "SchemaVersion")
    _int(schema["major"], "schema_version.major")
    _int(schema["minor"], "schema_version.minor")
    verifiers = _list(data.get("verifiers", []), "verifiers")
    if len(verifiers) > len(_VERIFIERS) or any(not _is_one_of(v, _VERIFIERS) for v in verifiers):
        raise _refuse(f"verifiers must be among {sorted(_VERIFIERS)}")
    if "torch_version" in data:
        _text(data["torch_version"], "torch_version", 64)
    data["guards_code"] = []  # Python source that ExportedProgram.module() would compile and exec
    return data


_PROGRAM_LIMITS = JsonLimits(
    max_bytes=1 << 62, max_depth=_MAX_JSON_DEPTH, max_items=_MAX_PROGRAM_ITEMS, max_str_bytes=_MAX_PROGRAM_STRING
)


def check_program(program_json: bytes) -> CheckedProgram:
    """Parse and check the serialised program; return the cleaned JSON object and its subgraph names.

    Guarantees (or ``ReconstructRefused``): every field is one torch 2.13's
    schema defines and this module admits, every leaf has the expected type
    and bounds, every node target is allowlisted, every callable argument is a
    subgraph of this program, every symbolic expression parses under
    :mod:`securehub.reconstruct.symexpr`'s limits. Metadata and guards are removed.
    Before ``json.loads`` builds anything, one scan of the raw bytes refuses more than
    ``_MAX_PROGRAM_ITEMS`` values, nesting deeper than ``_MAX_JSON_DEPTH`` or a string literal over
    ``_MAX_PROGRAM_STRING`` bytes, so a hostile body costs the parent a pass over its bytes, not
    gigabytes of Python objects.
    """
    try:
        check_bounds(program_json, _PROGRAM_LIMITS)
    except JsonRefusedError as exc:
        raise _refuse(f"the program JSON is out of bounds ({exc}), checked before parsing it") from None
    try:
        data = json.loads(program_json)
    except (ValueError, RecursionError):
        raise _refuse("the program is not JSON") from None
    walk = _Walk()
    try:
        cleaned = _program(data, walk)
    except RecursionError:
        raise _refuse("the program is nested too deeply") from None
    if shadowing := walk.subgraphs & walk.state_roots:
        # module() registers parameters under their dotted names: a subgraph of the same name would
        # stand where the parameters' module should be.
        raise _refuse(f"subgraph name(s) {sorted(shadowing)[:5]} shadow the model's own attributes")
    return CheckedProgram(cleaned, frozenset(walk.subgraphs))
