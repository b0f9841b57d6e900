"""The ``export`` strategy: an ``ExportedProgram`` from JSON and safetensors, never pickle.

The child serialises the program with ``torch._export.serde.serialize``
(graph as JSON, no state/constants/example inputs) and puts every tensor in
the safetensors file (see :mod:`securehub.sandbox.child.result`). Here the
parent rebuilds it in four steps, each of which refuses with
``reconstruct-refused``:

1. **Allowlist the JSON** (:mod:`securehub.reconstruct.export_schema`): every field of
   torch 2.13's schema, every argument kind, every node target, every
   symbolic expression (:mod:`securehub.reconstruct.symexpr`) -- before torch's
   deserialiser sees a byte. This is what stops an ``as_operator`` argument
   (``aten.from_file`` handed to an allowed higher-order op = file read/write
   in the parent), custom objects, ``9**9**9`` and unknown fields.
2. **Deserialise** with torch's ``GraphModuleDeserializer``, driven here
   rather than through ``ExportedProgramDeserializer`` so that: expression
   strings are built into sympy by our parser (torch would ``sympify``, i.e.
   ``eval``, them); ``state_dict``/``constants`` are dicts built from the
   safetensors file (``torch.load`` is never reached); there are no example
   inputs and no ``guards_code`` (Python source ``module()`` would exec);
   verifiers come from a fixed list. Any exception torch raises here is a
   refusal, not a crash.
3. **Walk the deserialised graphs** (:func:`check_graph_module`): every node
   target again, and every argument recursively must be a graph value, a
   plain scalar, a dtype/layout/memory format, a ``cpu``/``meta`` device, or
   -- only in a higher-order op's subgraph slot -- a subgraph of this
   program. A callable, module or operator object in an argument position is
   refused whatever route it took. Each operator call's arguments are bound to
   its schema: a dtype/layout/memory-format/device/generator slot takes only
   its own type, a string only a string slot (:func:`_check_typed_slots`).
4. ``ExportedProgram.module(check_guards=False)`` (exceptions -> refusal) and
   the same walk over the unlifted module; then every result of an operator
   that returns uninitialised memory (``aten.empty`` and kin) is zero-filled
   where it is made (:func:`zero_uninitialised`), so a program cannot hand
   back what the parent's allocator last freed.
5. Calls of operators whose CPU kernel trusts its arguments to agree
   (``aten::lstm``: oneDNN takes the hidden size from ``hx``; batch norm,
   ``_weight_norm``, ``embedding_bag``) first pass a check
   (:data:`CHECKED_OPS`, :func:`check_kernel_arguments`): a run on ``meta``
   copies of their arguments, where torch checks every shape, or an explicit
   check of the shapes/offsets the kernel trusts.
"""

from __future__ import annotations

import json
import keyword
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import torch
from torch import nn

from securehub.errors import ReconstructMismatch, ReconstructRefused, SecureHubError
from securehub.reconstruct import symexpr as _symexpr
from securehub.reconstruct.export_schema import (
    HIGHER_ORDER_SLOTS,
    CheckedProgram,
    check_program,
    is_attribute_path,
    operator_target_allowed,
    plain_function_targets,
)
from securehub.reconstruct.exported_module import describe_shapes, input_shapes
from securehub.reconstruct.schema_dataclass import to_program
from securehub.sandbox.wire.messages import ExportInfo

__all__ = ["check_graph_module", "reconstruct_export", "sanitize_program_json"]

_MAX_ARG_DEPTH = 32
_MAX_STRING = 4096
_SAFE_DEVICES = frozenset({"cpu", "meta"})
_SCALARS = (bool, int, float, complex, str, torch.dtype, torch.layout, torch.memory_format)


def _refuse(what: str) -> ReconstructRefused:
    return ReconstructRefused(f"exported program: {what}; the sandbox child's export is malformed or hostile")


def sanitize_program_json(program_json: bytes) -> bytes:
    """Check the serialised program (step 1) and return the cleaned JSON (raises ``ReconstructRefused``)."""
    return json.dumps(check_program(program_json).data).encode()


# --------------------------------------------------------------------------- step 2: deserialise


def _install_expression_parser(deserializer: Any) -> None:
    """Make this deserializer build sympy from ``expr_str`` with :mod:`securehub.reconstruct.symexpr`.

    torch's ``_parse_sym_expr`` calls ``sympy.sympify(expr_str, ...)``; handed
    an already-built sympy object, ``sympify`` returns it unchanged, so torch's
    own bookkeeping (symbol cache, hints, ranges) still runs while the string
    is never evaluated. The override is on this instance only.
    """
    original = deserializer._parse_sym_expr

    def parse(expr: Any, hint: Any = None) -> Any:
        if isinstance(expr, str):
            expr = _symexpr.build(_symexpr.parse(expr), expr, deserializer.symbol_name_to_symbol)
        return original(expr, hint)

    deserializer._parse_sym_expr = parse


def _deserialize(checked: CheckedProgram, state_dict: dict[str, Any], constants: dict[str, Any]) -> Any:
    """Steps of ``ExportedProgramDeserializer.deserialize``, without its trust in the input."""
    from torch._export.serde import serialize as serde  # noqa: PLC0415 - lazy: torch.export, only for the export strategy
    from torch._export.serde.schema import SCHEMA_VERSION  # noqa: PLC0415 - lazy: torch.export, only for the export strategy
    from torch._export.verifier import load_verifier  # noqa: PLC0415 - lazy: torch.export, only for the export strategy
    from torch.export.exported_program import ExportedProgram  # noqa: PLC0415 - lazy: torch.export, only for the export strategy
    from torch.utils._sympy.numbers import int_oo  # noqa: PLC0415 - lazy: torch.export, only for the export strategy
    from torch.utils._sympy.value_ranges import ValueRanges  # noqa: PLC0415 - lazy: torch.export, only for the export strategy

    program = to_program(checked.data)
    if program.schema_version.major != SCHEMA_VERSION[0]:
        raise _refuse(
            f"schema version {program.schema_version.major} is not this torch's {SCHEMA_VERSION[0]}; "
            "the child and the parent must run the same torch"
        )
    ranges = {
        name: ValueRanges(serde._int_to_sympy_int(r.min_val, -int_oo), serde._int_to_sympy_int(r.max_val, int_oo))
        for name, r in program.range_constraints.items()
    }
    deserializer = serde.GraphModuleDeserializer()
    _install_expression_parser(deserializer)
    result = deserializer.deserialize(program.graph_module, state_dict, constants, None, ranges)
    range_constraints = {
        result.names_to_symbols[name]: vr for name, vr in ranges.items() if name in result.names_to_symbols
    }
    return ExportedProgram(
        root=result.graph_module,
        graph=result.graph_module.graph,
        graph_signature=result.signature,
        state_dict=result.state_dict,
        range_constraints=range_constraints,
        module_call_graph=result.module_call_graph,
        example_inputs=None,
        constants=result.constants,
        verifiers=[load_verifier(v) for v in program.verifiers],
    )


# --------------------------------------------------------------------------- step 3: walk the graphs

_PLAIN_TARGETS: frozenset[Any] = frozenset(plain_function_targets(operator=operator, math=math, torch=torch))


def _target_allowed(target: Any) -> bool:
    if isinstance(target, torch._ops.OpOverload):
        return operator_target_allowed(target)
    if isinstance(target, torch._ops.HigherOrderOperator):
        return str(target._name) in HIGHER_ORDER_SLOTS
    try:
        return target in _PLAIN_TARGETS
    except TypeError:  # unhashable
        return False


def _graph_modules(gm: torch.fx.GraphModule) -> Iterator[torch.fx.GraphModule]:
    yield gm
    for sub in gm.modules():
        if sub is not gm and isinstance(sub, torch.fx.GraphModule):
            yield sub


def _attribute(owner: nn.Module, target: str) -> Any:
    value: Any = owner
    for part in target.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


#: Schema types whose values torch's dispatcher takes as plain ints or strings (a ``ScalarType``,
#: ``Layout`` or ``MemoryFormat`` is an ``int`` to it, a ``Device`` may be a ``str``): each such slot must
#: hold exactly its own Python type (or ``None`` where optional), as the program's ``as_scalar_type``/
#: ``as_layout``/``as_memory_format``/``as_device`` arguments deserialise to, so the value passed the
#: schema check's enumeration. Red team 12: ``aten.ones(dtype=999)`` sent as ``as_int`` reached the
#: kernel (SIGSEGV in the parent at ``forward()``), ``layout=1`` as ``as_int`` built sparse tensors and
#: ``device="cuda"`` as ``as_string`` left ``cpu``/``meta``.
_ENUM_SLOTS: Final[dict[str, Callable[[Any], bool]]] = {
    "ScalarType": lambda v: isinstance(v, torch.dtype),
    "Layout": lambda v: v is torch.strided,
    "MemoryFormat": lambda v: isinstance(v, torch.memory_format),
    "Device": lambda v: isinstance(v, torch.device) and v.type in _SAFE_DEVICES,
    "Generator": lambda v: False,
}
#: Schema types a ``str`` argument may fill (anything else given a string is refused).
_STRING_SLOTS: Final = frozenset({"str", "Dimname"})


def _slot_type(real_type: Any) -> tuple[str, bool]:
    """The base type name of a schema argument (``Optional``/``List`` unwrapped) and whether ``None`` fits."""
    text, optional = str(real_type), False
    while True:
        if text.startswith("Optional[") and text.endswith("]"):
            text, optional = text[len("Optional[") : -1], True
        elif text.startswith("List[") and text.endswith("]"):
            text = text[len("List[") : -1]
        else:
            return text, optional


def _check_typed_slots(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], where: str) -> None:
    """Every argument of an operator call fits its schema slot's type where the dispatcher would not check it.

    A value in a ``ScalarType``/``Layout``/``MemoryFormat``/``Device``/``Generator`` slot must be that type
    (:data:`_ENUM_SLOTS`; a list slot item by item), and a string only fills a ``str``/``Dimname`` slot.
    A keyword the schema does not name is refused.
    """
    schema = op._schema.arguments
    if len(args) > len(schema):
        raise _refuse(f"{where}: {len(args)} positional arguments for {op!r}, which takes {len(schema)}")
    by_name = {a.name: a for a in schema}
    bound = [(a, v) for a, v in zip(schema, args, strict=False)]
    for name, value in kwargs.items():
        if name not in by_name:
            raise _refuse(f"{where}: {op!r} has no argument {str(name)[:60]!r}")
        bound.append((by_name[name], value))
    for argument, value in bound:
        base, optional = _slot_type(argument.real_type)
        items = value if isinstance(value, list | tuple) and str(argument.real_type).find("List[") >= 0 else [value]
        for item in items:
            if item is None and optional:
                continue
            fits = _ENUM_SLOTS.get(base)
            if (fits is not None and not fits(item)) or (isinstance(item, str) and base not in _STRING_SLOTS):
                raise _refuse(
                    f"{where}: argument {argument.name!r} of {op!r} is a {base} slot, given a "
                    f"{type(item).__name__} ({str(item)[:40]!r})"
                )


def _is_flag(value: Any) -> bool:
    return type(value) is bool


#: The leading (non-subgraph, non-operand) arguments of the higher-order ops that take any, each with
#: what it must be. These ops have no operator schema for :func:`_check_typed_slots` to bind to; before
#: (red team 12, left alone then), ``wrap_with_autocast``'s device type and dtype were any scalar or
#: string (``"cuda"``, an int dtype), rebuilt and failing only inside torch's autocast at ``forward()``.
_HIGHER_ORDER_LEADING: Final[dict[str, tuple[Callable[[Any], bool], ...]]] = {
    "wrap_with_set_grad_enabled": (_is_flag,),
    "wrap_with_autocast": (
        lambda v: v == "cpu" and type(v) is str,
        lambda v: v is None or v in (torch.bfloat16, torch.float16),
        _is_flag,
        lambda v: v is None or _is_flag(v),
    ),
}


def _check_higher_order_leading(name: str, args: tuple[Any, ...], where: str) -> None:
    """``args``' leading arguments of higher-order op ``name`` are what :data:`_HIGHER_ORDER_LEADING` admits."""
    for index, fits in enumerate(_HIGHER_ORDER_LEADING.get(name, ())):
        if index >= len(args) or not fits(args[index]):
            shown = str(args[index])[:40] if index < len(args) else "missing"
            raise _refuse(f"{where}: argument {index} of higher-order op {name!r} is not admitted ({shown!r})")


class _GraphWalk:
    """Checks one graph module's nodes; ``lifted`` is the program form (no tensor attributes)."""

    def __init__(self, gm: torch.fx.GraphModule, subgraphs: frozenset[str], lifted: bool) -> None:
        self.gm = gm
        self.subgraphs = subgraphs
        self.lifted = lifted

    def attr_kind(self, node: torch.fx.Node) -> str:
        """``"graph"`` (a subgraph of this program) or ``"tensor"``; anything else is refused."""
        target = str(node.target)
        if not is_attribute_path(target):
            raise _refuse(f"graph attribute {target[:80]!r} is not a dotted identifier")
        value = _attribute(self.gm, target)
        if isinstance(value, torch.fx.GraphModule) and target.rsplit(".", 1)[-1] in self.subgraphs:
            return "graph"
        if isinstance(value, torch.Tensor) and not self.lifted:
            return "tensor"
        raise _refuse(f"graph attribute {target[:80]!r} is a {type(value).__name__}, not a subgraph of this program")

    def value(self, value: Any, where: str, depth: int = 0) -> None:
        """An argument: graph values, plain scalars, dtype-like enums, safe devices, containers of those."""
        if depth > _MAX_ARG_DEPTH:
            raise _refuse(f"{where}: arguments nested too deeply")
        if value is None or isinstance(value, _SCALARS):
            if isinstance(value, str) and len(value) > _MAX_STRING:
                raise _refuse(f"{where}: a string argument is too long")
            return
        if isinstance(value, torch.device):
            if value.type not in _SAFE_DEVICES:
                raise _refuse(f"{where}: device {value.type!r}; only {sorted(_SAFE_DEVICES)} are allowed")
            return
        if isinstance(value, torch.fx.Node):
            if value.op == "get_attr" and self.attr_kind(value) == "graph":
                raise _refuse(f"{where}: a subgraph is passed outside a higher-order op's subgraph slot")
            return
        if isinstance(value, list | tuple):
            for item in value:
                self.value(item, where, depth + 1)
            return
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _refuse(f"{where}: a keyword of type {type(key).__name__}")
                self.value(item, where, depth + 1)
            return
        # A callable, OpOverload, module, class or any other object: the from_file-as-argument attack.
        raise _refuse(f"{where}: an argument of type {type(value).__module__}.{type(value).__qualname__}")

    def call(self, node: torch.fx.Node) -> None:
        where = f"node {node.name!r}"
        if not _target_allowed(node.target):
            raise _refuse(f"graph calls {node.target!r}, which is not an allowlisted torch operator")
        if isinstance(node.target, torch._ops.OpOverload):
            _check_typed_slots(node.target, node.args, node.kwargs, where)
        slots: frozenset[int] = frozenset()
        if isinstance(node.target, torch._ops.HigherOrderOperator):
            slots = HIGHER_ORDER_SLOTS[str(node.target._name)]
            _check_higher_order_leading(str(node.target._name), node.args, where)
        for index, arg in enumerate(node.args):
            if index in slots:
                if not (isinstance(arg, torch.fx.Node) and arg.op == "get_attr" and self.attr_kind(arg) == "graph"):
                    raise _refuse(f"{where}: argument {index} of {node.target!r} is not a subgraph of this program")
            else:
                self.value(arg, f"{where} argument {index}")
        if len(node.args) <= max(slots, default=-1):
            raise _refuse(f"{where}: {node.target!r} lacks its subgraph argument(s)")
        self.value(dict(node.kwargs), f"{where} keyword arguments")

    def run(self) -> None:
        for node in self.gm.graph.nodes:
            if not node.name.isidentifier() or keyword.iskeyword(node.name):
                raise _refuse(f"graph node name {node.name[:80]!r} is not an identifier")
            if node.op == "call_function":
                self.call(node)
            elif node.op == "get_attr":
                self.attr_kind(node)
            elif node.op == "output":
                self.value(node.args, f"output {node.name!r}")
            elif node.op != "placeholder":
                raise _refuse(f"graph node {node.name!r} has op {node.op!r}")


# --------------------------------------------------------------------------- step 4: no uninitialised memory out

#: Operators whose result is memory they do not initialise: in the parent that is whatever the allocator
#: last freed there (tokens, keys, other models' activations), which a forged program could hand back as
#: its output. Each such result is zero-filled where it is made (:func:`zero_uninitialised`).
UNINITIALISED_OPS: Final = frozenset(
    {
        "aten::empty", "aten::empty_like", "aten::empty_permuted", "aten::empty_strided",
        "aten::new_empty", "aten::new_empty_strided",
    }
)  # fmt: skip


def zero_uninitialised(gm: torch.fx.GraphModule) -> int:
    """Make every :data:`UNINITIALISED_OPS` result in ``gm`` and its subgraphs zeros before anything uses it.

    A ``torch.ops.aten.zero_`` node is inserted right after each such node and
    takes over all its uses, so the program computes what it computed with
    zero-filled memory (a legitimate program writes before it reads; only a
    program that reads uninitialised memory sees a difference). Returns the
    number of nodes covered.
    """
    covered = 0
    for module in _graph_modules(gm):
        graph = module.graph
        made = [
            node for node in graph.nodes
            if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and node.target._schema.name in UNINITIALISED_OPS
        ]  # fmt: skip
        for node in made:
            with graph.inserting_after(node):
                zeroed = graph.call_function(torch.ops.aten.zero_.default, (node,))
            node.replace_all_uses_with(zeroed, delete_user_cb=lambda user, z=zeroed: user is not z)
        if made:
            module.recompile()  # only the graphs that changed
        covered += len(made)
    return covered


# --------------------------------------------------------------------------- step 5: kernels that trust agreement


def _on_meta(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
    if isinstance(value, (list, tuple)):
        return type(value)(_on_meta(v) for v in value)
    return value


def _bound(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments by schema name (defaults filled in)."""
    schema = op._schema.arguments
    named = {a.name: a.default_value for a in schema if a.has_default_value()}
    named.update({a.name: v for a, v in zip(schema, args, strict=False)})
    named.update(kwargs)
    return named


def _meta_run(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The same call on ``meta`` copies: torch's meta/composite implementation checks every shape."""
    op(*_on_meta(args), **{k: _on_meta(v) for k, v in kwargs.items()})


def _weight_norm_shapes(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``_weight_norm(v, g, dim)``: ``g`` must have the shape of ``v``'s norm over every other dimension."""
    named = _bound(op, args, kwargs)
    v, g, dim = named["v"], named["g"], named["dim"]
    want = torch.norm_except_dim(_on_meta(v), 2, dim).shape
    if tuple(g.shape) != tuple(want):
        raise RuntimeError(f"_weight_norm: g has shape {tuple(g.shape)}, expected {tuple(want)} for v {tuple(v.shape)}")


def _bag_offsets(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``embedding_bag``: offsets must be non-negative, non-decreasing and within the indices."""
    named = _bound(op, args, kwargs)
    indices, offsets = named["indices"], named["offsets"]
    if offsets is None or indices.dim() != 1:
        return  # 2-d indices: fixed-size bags, offsets unused
    if offsets.dim() != 1 or offsets.is_floating_point():
        raise RuntimeError("embedding_bag: offsets must be a 1-d integer tensor")
    if offsets.numel() and (
        bool((offsets < 0).any()) or bool((offsets[1:] < offsets[:-1]).any()) or int(offsets.max()) > indices.numel()
    ):
        raise RuntimeError("embedding_bag: offsets must be non-negative, non-decreasing and at most len(indices)")


#: Bounds of a C ``int``: the CPU kernels of :data:`CHECKED_OPS`'s geometry operators narrow their
#: ``int[]`` arguments to it after checking them as 64-bit values.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _repeats_agree(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``repeat_interleave``: repeats are non-negative and sum to ``output_size`` when one is given."""
    named = _bound(op, args, kwargs)
    repeats, output_size = named["repeats"], named.get("output_size")
    if isinstance(repeats, torch.Tensor):
        if repeats.is_floating_point() or repeats.is_complex() or repeats.dim() > 1:
            raise RuntimeError("repeat_interleave: repeats must be an integer scalar or 1-d tensor")
        negative, total = bool((repeats < 0).any()), int(repeats.sum()) if repeats.numel() else 0
    else:
        negative, total = int(repeats) < 0, None
    if negative:
        raise RuntimeError("repeat_interleave: repeats can not be negative")
    if output_size is not None and total is not None and total != output_size:
        raise RuntimeError(f"repeat_interleave: repeats sum to {total}, output_size says {output_size}")


def _int32_geometry(op: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``col2im``/``im2col``: every integer argument (sizes, kernel, dilation, padding, stride) fits a C int."""
    for name, value in _bound(op, args, kwargs).items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, int) and not INT32_MIN <= item <= INT32_MAX:
                raise RuntimeError(
                    f"{op._schema.name}: {name}={list(items) if isinstance(value, (list, tuple)) else value} "
                    f"does not fit a 32-bit int; the CPU kernel would truncate it"
                )


#: Admitted operators whose CPU kernel trusts that its arguments agree with each other, and the check each
#: call passes first (:func:`check_kernel_arguments`; December 2026 red team 3, each a parent heap read or a
#: SIGSEGV in a probe):
#:
#: - ``aten::lstm`` (what ``torch.export`` emits for ``nn.LSTM``) runs on oneDNN with the hidden size taken
#:   from ``hx``, never checked against the weights: a forged ``h0``/``c0`` of width 16 over 8-wide weights
#:   returned the parent's heap, width 4096 crashed it;
#: - the batch-norm kernels (``_native_batch_norm_legit_no_training`` is what ``torch.export`` emits for an
#:   eval ``BatchNorm``) read ``weight``/``bias``/running stats per input channel unchecked: 2-element stats
#:   for 10**6 channels read the heap, in training mode they wrote it (SIGSEGV);
#: - ``_weight_norm`` with a ``g`` smaller than ``v``'s output dimension: SIGSEGV;
#: - ``embedding_bag`` with negative or decreasing offsets: SIGSEGV;
#: - ``col2im`` (``nn.Fold``) and ``im2col`` (``nn.Unfold``) check their geometry as 64-bit values and
#:   then narrow it to ``int``: ``padding=2**31`` passed the check and crashed the parent (SIGSEGV) in
#:   ``col2im`` (red team 8); every integer argument must fit 32 bits;
#: - ``repeat_interleave`` with ``output_size`` skips its negativity check: repeats ``[-1, 3]`` with
#:   ``output_size=2`` corrupted the heap (``free(): invalid pointer``), ``[-3, 5]`` was SIGSEGV (red team 8).
#:
#: The first two are checked by a run on ``meta`` copies (torch's meta implementations check the shapes);
#: the meta kernels of the others do not check, so their arguments are checked here.
CHECKED_OPS: Final[Mapping[str, Callable[[Any, tuple[Any, ...], Mapping[str, Any]], None]]] = {
    "aten::lstm": _meta_run,
    "aten::_native_batch_norm_legit_no_training": _meta_run,
    "aten::_native_batch_norm_legit": _meta_run,
    "aten::native_batch_norm": _meta_run,
    "aten::cudnn_batch_norm": _meta_run,
    "aten::_weight_norm": _weight_norm_shapes,
    "aten::embedding_bag": _bag_offsets,
    "aten::col2im": _int32_geometry,
    "aten::im2col": _int32_geometry,
    "aten::repeat_interleave": _repeats_agree,
}


def kernel_checked(op: Any, *args: Any, **kwargs: Any) -> Any:
    """``op(*args, **kwargs)`` after its :data:`CHECKED_OPS` check passed (a failed check raises ``RuntimeError``)."""
    CHECKED_OPS[op._schema.name](op, args, kwargs)
    return op(*args, **kwargs)


def check_kernel_arguments(gm: torch.fx.GraphModule) -> int:
    """Route every :data:`CHECKED_OPS` call in ``gm`` and its subgraphs through :func:`kernel_checked`.

    The node keeps its arguments and users; its target becomes ``kernel_checked`` with the operator as the
    first argument. Returns the number of nodes rerouted.
    """
    covered = 0
    for module in _graph_modules(gm):
        nodes = [
            node for node in module.graph.nodes
            if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
            and node.target._schema.name in CHECKED_OPS
        ]  # fmt: skip
        for node in nodes:
            node.args = (node.target, *node.args)
            node.target = kernel_checked
        if nodes:
            module.recompile()
        covered += len(nodes)
    return covered


def check_graph_module(gm: nn.Module, subgraphs: frozenset[str], *, lifted: bool) -> None:
    """Walk every node of ``gm`` and its subgraph modules (see step 3 in the module docstring).

    ``subgraphs``: the subgraph names the JSON check admitted; a graph
    attribute is accepted only under one of those names. ``lifted``: the
    program form, where parameters are inputs, so ``get_attr`` may only name
    a subgraph; after ``module()`` it may also name a tensor.
    """
    if not isinstance(gm, torch.fx.GraphModule):
        raise _refuse(f"the rebuilt program is a {type(gm).__name__}, not a torch.fx.GraphModule")
    for module in _graph_modules(gm):
        _GraphWalk(module, subgraphs, lifted).run()


def _tensors(names: Mapping[str, str], state: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    missing = sorted(key for key in names.values() if key not in state)
    if missing:
        raise ReconstructMismatch(f"the exported program's {what} name tensors the state file lacks: {missing[:12]}")
    return {name: state[key] for name, key in names.items()}


def _check_dynamic_dims(export: ExportInfo, module: torch.fx.GraphModule) -> None:
    """Refuse a program whose symbolic input dims are not the ones the child's export meta names.

    The meta's claim is only displayed (the verbose load line); the error for
    a wrong input size is written from the program's own shapes. A meta that
    disagrees with its program is refused rather than shown (deny by default).
    """
    if export.dynamic_dims is None:
        return  # a result cached before the meta named them: the program's shapes are used as they are
    have = tuple(tuple(i for i, d in enumerate(shape) if d is None) for shape in input_shapes(module))
    if have != export.dynamic_dims:
        raise ReconstructRefused(
            f"export: the child's meta says the program's symbolic input dims are "
            f"{[list(d) for d in export.dynamic_dims][:8]}, but the program's inputs are "
            f"{describe_shapes(input_shapes(module))[:300]} (symbolic: {[list(d) for d in have][:8]}); the "
            "sandbox child's result is malformed or hostile"
        )


def reconstruct_export(export: ExportInfo, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Rebuild the exported program and return ``ExportedProgram.module()``.

    Guarantees: nothing is unpickled (state and constants are dicts built
    here from the safetensors file); no string from the program is
    evaluated; the program and the resulting graphs passed the checks in the
    module docstring; input guards are not compiled (they are code). Every
    failure is a ``SecureHubError`` (``reconstruct-refused`` or
    ``reconstruct-mismatch``).
    """
    checked = check_program(export.program_json)
    state_dict: dict[str, Any] = _tensors(export.state, state, "state")
    for name in export.parameters:
        state_dict[name] = nn.Parameter(state_dict[name], requires_grad=state_dict[name].is_floating_point())
    constants: dict[str, Any] = _tensors(export.constants, state, "constants")
    step = "deserialised"
    try:
        program = _deserialize(checked, state_dict, constants)
        check_graph_module(program.graph_module, checked.subgraphs, lifted=True)
        step = "turned into a module (ExportedProgram.module())"
        module: nn.Module = program.module(check_guards=False)
        check_graph_module(module, checked.subgraphs, lifted=False)
        assert isinstance(module, torch.fx.GraphModule)  # noqa: S101 - check_graph_module refused anything else
        zero_uninitialised(module)
        check_kernel_arguments(module)
        _check_dynamic_dims(export, module)
    except SecureHubError:
        raise
    except Exception as exc:
        # torch's deserialiser and unlifting were not written for hostile input: SerializeError, KeyError,
        # SpecViolationError, ValueRangeError, SyntaxError from code generation... are all refusals.
        raise ReconstructRefused(
            f"the exported program could not be {step} ({type(exc).__name__}: {str(exc)[:300]}); "
            "it was exported by a different torch version or is malformed"
        ) from None
    return module
