"""The ``export`` strategy: an ``ExportedProgram`` from JSON and safetensors, never pickle.

The child serialises the program with ``torch._export.serde.serialize``
(graph as JSON, no state/constants/example inputs) and puts every tensor in
the safetensors file (see :mod:`securehub.sandbox._child_result`). Here the
parent builds a ``SerializedArtifact`` whose ``state_dict``/``constants`` are
plain dicts, so ``deserialize_torch_artifact`` passes them through and
``torch.load`` is never reached; ``example_inputs`` is empty (never loaded).

The JSON itself is hostile input, and torch's deserialiser was not written for
that. What it would otherwise do with attacker-chosen strings, and what we do:

- ``guards_code`` is Python source that ``ExportedProgram.module()`` compiles
  and ``exec``s (torch 2.13 does so only when example inputs were
  deserialised, which we never do) -> forced to ``[]`` anyway, and
  ``module(check_guards=False)``;
- ``expr_str`` (symbolic shapes, e.g. a dynamic batch size) goes through
  ``sympy.sympify`` (``eval``) -> only arithmetic over symbol names and a
  fixed set of sympy functions, in ``str`` or ``srepr`` form
  (``Symbol('s0', positive=True, integer=True)``), strictly tokenised: no
  attribute access, no brackets, quoted strings only symbol names or numbers;
  ``range_constraints`` are symbol names with integer (or open) bounds;
- a node ``target`` is resolved by ``getattr`` walking from ``torch``
  (``torch.os.system`` works) and any callable is accepted -> every target
  must be an allowlisted aten/prims operator, control-flow higher-order op or
  symbolic-arithmetic function; ``aten::save``/``aten::from_file`` are refused;
- pytree specs may name a ``defaultdict`` factory module to import, or an
  enum class -> only tuple/list/dict/OrderedDict/None specs are accepted;
- node metadata (stack traces end up as comments in generated code) is
  dropped; every remaining string must be free of control characters, and
  every graph node name must be a plain identifier before code generation.
"""

from __future__ import annotations

import json
import keyword
import math
import operator
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from securehub.errors import ReconstructMismatch, ReconstructRefused
from securehub.sandbox.messages import ExportInfo

__all__ = ["check_graph_module", "reconstruct_export", "sanitize_program_json"]

_DENIED_OPS = frozenset({"aten::save", "aten::from_file"})
_OP_NAMESPACES = frozenset({"aten", "prims"})
_HIGHER_ORDER = frozenset(
    {"cond", "while_loop", "map_impl", "scan", "wrap_with_set_grad_enabled", "wrap_with_autocast", "invoke_subgraph"}
)
_OPERATOR_FUNCS = frozenset(
    {
        "getitem", "add", "sub", "mul", "floordiv", "truediv", "mod", "pow", "neg", "pos",
        "eq", "ne", "lt", "le", "gt", "ge", "and_", "or_", "lshift", "rshift",
    }
)  # fmt: skip
_MATH_FUNCS = frozenset({"trunc", "ceil", "floor", "sqrt"})
_TORCH_SYM = frozenset({"sym_int", "sym_float", "sym_max", "sym_min", "sym_not", "sym_ite", "sym_sqrt"})
_PLAIN_TARGETS: frozenset[Any] = frozenset(
    {getattr(operator, n) for n in _OPERATOR_FUNCS}
    | {getattr(math, n) for n in _MATH_FUNCS}
    | {getattr(torch, n) for n in _TORCH_SYM if hasattr(torch, n)}
)
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
_SYMPY_NAMES = frozenset(
    {
        "FloorDiv", "ModularIndexing", "Where", "PythonMod", "Mod", "CleanDiv", "CeilToInt", "FloorToInt",
        "CeilDiv", "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
        "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
        "Max", "Min", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "True", "False",
    }
)  # fmt: skip
#: sympy constructors that ``srepr`` (torch's expr_str printer) emits, and their assumption keywords.
_SREPR_NAMES = frozenset(
    {
        "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Abs", "oo",
        "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite",
        "zero", "nonzero", "precision",
    }
)  # fmt: skip
_EXPR_TOKEN = re.compile(
    r"\s+|'[^'\\]{0,64}'|[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|[0-9]+"
    r"|[A-Za-z_][A-Za-z0-9_]*|==|!=|<=|>=|\*\*|//|[-+*/%(),<>=&|~]"
)
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?\Z")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYMBOL = re.compile(r"[a-z]{1,4}[0-9]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
_MAX_DEPTH = 200


def _refuse(what: str) -> ReconstructRefused:
    return ReconstructRefused(f"exported program: {what}; the sandbox child's export is malformed or hostile")


def _check_target_string(target: object) -> None:
    if not isinstance(target, str):
        raise _refuse(f"node target {target!r} is not a string")
    parts = target.split(".")
    ok = False
    if len(parts) == 5 and parts[:2] == ["torch", "ops"] and parts[2] in _OP_NAMESPACES:
        ok = f"{parts[2]}::{parts[3]}" not in _DENIED_OPS
    elif len(parts) == 4 and parts[:3] == ["torch", "ops", "higher_order"]:
        ok = parts[3] in _HIGHER_ORDER
    elif len(parts) == 2:
        ok = (
            (parts[0] == "_operator" and parts[1] in _OPERATOR_FUNCS)
            or (parts[0] == "math" and parts[1] in _MATH_FUNCS)
            or (parts[0] == "torch" and parts[1] in _TORCH_SYM)
        )
    if not ok or not all(_IDENT.fullmatch(p) for p in parts):
        raise _refuse(f"node target {target[:120]!r} is not an allowlisted torch operator")


def _check_expr(expr: object) -> None:
    """Plain arithmetic over symbol names, in ``str`` or ``srepr`` form (``Symbol('s0', integer=True)``).

    Tokenised strictly: numbers, symbol names (``s0``, ``u3``), allowlisted
    sympy names, operators, parentheses, commas, ``=`` (keyword arguments)
    and quoted strings that are a symbol name or a number. No ``.``
    (attribute access), no brackets or braces, no other names -- so
    ``sympify`` (``eval``) can only call allowlisted sympy constructors.
    """
    if not isinstance(expr, str) or len(expr) > 4096 or "__" in expr:
        raise _refuse(f"symbolic expression {str(expr)[:120]!r} is not plain arithmetic")
    pos = 0
    while pos < len(expr):
        match = _EXPR_TOKEN.match(expr, pos)
        if match is None:
            raise _refuse(f"symbolic expression {expr[:120]!r} is not plain arithmetic (at {expr[pos : pos + 20]!r})")
        token = match.group()
        pos = match.end()
        if token.startswith("'"):
            inner = token[1:-1]
            if not (_SYMBOL.match(inner) or _NUMBER.match(inner)):
                raise _refuse(f"symbolic expression {expr[:120]!r} quotes {inner[:40]!r}, not a symbol or number")
        elif _IDENT.fullmatch(token) and not (token in _SYMPY_NAMES or token in _SREPR_NAMES or _SYMBOL.match(token)):
            raise _refuse(f"symbolic expression {expr[:120]!r} uses the name {token!r}")


def _check_range_constraints(value: object) -> None:
    """``{symbol: {"min_val": int | None, "max_val": int | None}}`` and nothing else."""
    if not isinstance(value, dict):
        raise _refuse("range_constraints is not an object")
    for name, bounds in value.items():
        _check_expr(name)
        if not isinstance(bounds, dict) or set(bounds) != {"min_val", "max_val"}:
            raise _refuse(f"range constraint for {str(name)[:40]!r} is malformed")
        for bound in bounds.values():
            if bound is not None and (type(bound) is not int):
                raise _refuse(f"range constraint for {str(name)[:40]!r} has a non-integer bound")


def _check_treespec(spec: object) -> None:
    if not isinstance(spec, str):
        raise _refuse("a module call signature's tree spec is not a string")
    if "__enum__" in spec or "default_factory" in spec:
        raise _refuse("a tree spec names an enum or a defaultdict factory to import")
    try:
        data = json.loads(spec)
    except (ValueError, RecursionError):
        raise _refuse("a tree spec is not JSON") from None
    for value in _walk_values(data, "type", 0):
        if value not in _TREESPEC_TYPES:
            raise _refuse(f"a tree spec uses container type {str(value)[:80]!r}")


def _walk_values(data: Any, key: str, depth: int) -> Iterator[Any]:
    if depth > _MAX_DEPTH:
        raise _refuse("JSON nested too deeply")
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key:
                yield v
            yield from _walk_values(v, key, depth + 1)
    elif isinstance(data, list):
        for v in data:
            yield from _walk_values(v, key, depth + 1)


def _sanitize(data: Any, depth: int, parent_key: str) -> Any:
    """Check and rewrite one JSON value (see module docstring); returns the cleaned value."""
    if depth > _MAX_DEPTH:
        raise _refuse("JSON nested too deeply")
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        is_node = "target" in data and "inputs" in data and "outputs" in data
        for k, v in data.items():
            if _CONTROL.search(k):
                raise _refuse("a JSON key contains control characters")
            if is_node and k == "metadata":
                out[k] = {}  # stack traces, source fns, custom metadata: evidence we do not need
                continue
            if is_node and k == "target":
                _check_target_string(v)
            if k == "expr_str":
                _check_expr(v)
            if k == "range_constraints" and depth == 0:
                _check_range_constraints(v)
            if k in ("in_spec", "out_spec"):
                _check_treespec(v)
                out[k] = v
                continue
            if k in ("as_custom_obj", "custom_obj_values", "as_custom_objs") and v:
                raise _refuse("it uses custom (TorchBind) objects, which securehub does not load")
            out[k] = _sanitize(v, depth + 1, k)
        return out
    if isinstance(data, list):
        return [_sanitize(v, depth + 1, parent_key) for v in data]
    if isinstance(data, str) and _CONTROL.search(data):
        raise _refuse(f"a string under {parent_key!r} contains control characters")
    return data


def sanitize_program_json(program_json: bytes) -> bytes:
    """Validate the serialised program and return a cleaned copy (raises ``ReconstructRefused``)."""
    try:
        data = json.loads(program_json)
    except (ValueError, RecursionError):
        raise _refuse("the program is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("graph_module"), dict):
        raise _refuse("the program has no graph_module")
    data["guards_code"] = []  # Python source that module() would exec
    cleaned = _sanitize(data, 0, "")
    return json.dumps(cleaned).encode()


def _target_allowed(target: Any) -> bool:
    if isinstance(target, torch._ops.OpOverload):
        return target.namespace in _OP_NAMESPACES and target._schema.name not in _DENIED_OPS
    if isinstance(target, torch._ops.HigherOrderOperator):
        return str(target._name) in _HIGHER_ORDER
    try:
        return target in _PLAIN_TARGETS
    except TypeError:  # unhashable
        return False


def _graphs(gm: torch.fx.GraphModule) -> Iterator[torch.fx.Graph]:
    yield gm.graph
    for sub in gm.modules():
        if sub is not gm and isinstance(sub, torch.fx.GraphModule):
            yield sub.graph


def check_graph_module(gm: torch.fx.GraphModule) -> None:
    """After deserialising: every node is a placeholder/get_attr/call_function/output with an
    identifier name, and every called function is allowlisted."""
    for graph in _graphs(gm):
        for node in graph.nodes:
            if not node.name.isidentifier() or keyword.iskeyword(node.name):
                raise _refuse(f"graph node name {node.name[:80]!r} is not an identifier")
            if node.op == "call_function":
                if not _target_allowed(node.target):
                    raise _refuse(f"graph calls {node.target!r}, which is not an allowlisted torch operator")
            elif node.op == "get_attr":
                # Submodule names may be identifiers or non-negative integers (nn.Sequential's "0").
                if not all(p.isidentifier() or (p.isdigit() and p.isascii()) for p in str(node.target).split(".")):
                    raise _refuse(f"graph attribute {str(node.target)[:80]!r} is not a dotted identifier")
            elif node.op not in ("placeholder", "output"):
                raise _refuse(f"graph node {node.name!r} has op {node.op!r}")


def _tensors(names: Mapping[str, str], state: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    missing = sorted(key for key in names.values() if key not in state)
    if missing:
        raise ReconstructMismatch(f"the exported program's {what} name tensors the state file lacks: {missing[:12]}")
    return {name: state[key] for name, key in names.items()}


def reconstruct_export(export: ExportInfo, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Deserialise the exported program and return ``ExportedProgram.module()``.

    Guarantees: nothing is unpickled (state and constants are dicts built
    here from the safetensors file); the program passed the checks in the
    module docstring; input guards are not compiled (they are code).
    """
    from torch._export.serde.serialize import SerializedArtifact, SerializeError, deserialize

    program = sanitize_program_json(export.program_json)
    state_dict: dict[str, Any] = _tensors(export.state, state, "state")
    for name in export.parameters:
        state_dict[name] = nn.Parameter(state_dict[name], requires_grad=state_dict[name].is_floating_point())
    constants: dict[str, Any] = _tensors(export.constants, state, "constants")
    # dicts, not bytes: deserialize_torch_artifact returns them untouched (no torch.load, no pickle)
    artifact = SerializedArtifact(program, state_dict, constants, b"")  # type: ignore[arg-type]
    try:
        ep = deserialize(artifact)
    except (SerializeError, KeyError, ValueError, TypeError, AssertionError, RuntimeError) as exc:
        raise ReconstructRefused(
            f"the exported program could not be deserialised ({type(exc).__name__}: {str(exc)[:300]}); "
            "it was exported by a different torch version or is malformed"
        ) from None
    check_graph_module(ep.graph_module)
    try:
        module = ep.module(check_guards=False)
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise ReconstructRefused(f"ExportedProgram.module() failed: {type(exc).__name__}: {str(exc)[:300]}") from None
    check_graph_module(module)
    return module
