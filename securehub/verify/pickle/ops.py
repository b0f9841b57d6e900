"""Opcode-level pickle walker and the ``weights_only`` allowlist (private).

The walker reads pickle opcodes one by one and simulates the unpickler's
*stack and memo* symbolically: values are placeholders (``_V``) that remember
only what a security decision needs -- string constants (the operands of
``STACK_GLOBAL``), which global a callable is, and which values a container
holds (for the expansion check). It never imports, resolves or calls anything
and never uses :mod:`pickle` to load.

Why not :func:`pickletools.genops`: it stops at the first ``STOP``, raises on
garbage, and does not model the stack or memo, so it cannot resolve
``STACK_GLOBAL`` (the memo-confusion and computed-operand bypasses of
picklescan/modelscan).

The allowlist is the set ``torch.load(weights_only=True)`` accepts by default
in torch 2.13 (``torch/_weights_only_unpickler.py``: ``_get_allowed_globals``
lines 174-227 and ``_tensor_rebuild_functions`` lines 150-171; the user
allowlist ``_get_user_allowed_globals`` is empty by default and deliberately
not consulted). It is written out as data so that a scanner decision never
depends on what is importable; ``tests/unit/test_pickle_scan.py`` checks it
against the installed torch. It is stricter than torch in one way: the
``(module, name)`` split must be the canonical one torch.save writes
(``torch._utils`` + ``_rebuild_tensor_v2``), so ``GLOBAL torch
_utils._rebuild_tensor_v2`` (which torch's string lookup and pickle's
dotted-name lookup resolve differently in general) is refused.
"""

from __future__ import annotations

import codecs
import mmap
import pickletools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ALLOWED_GLOBALS",
    "Data",
    "IMPORT_MAPPING",
    "LEGACY_MAGIC_NUMBER",
    "NAME_MAPPING",
    "PickleLimits",
    "RawFinding",
    "Value",
    "WalkResult",
    "map_global",
    "walk_pickle",
]

#: torch's legacy (pre-1.6) ``_save`` writes this int as its first pickle.
LEGACY_MAGIC_NUMBER: Final = 0x1950A86A20F9469CFC6C
HIGHEST_PROTOCOL: Final = 5

#: What the walker reads: bytes, or a memory-mapped file (never copied whole).
Data = bytes | mmap.mmap


def _pairs(module: str, names: str) -> frozenset[tuple[str, str]]:
    return frozenset((module, n) for n in names.split())


_TENSOR_TYPES: Final = "BFloat16 Bool Byte Char Double Float Half Int Long Short"
_STORAGES: Final = " ".join(f"{t}Storage" for t in _TENSOR_TYPES.split()) + (
    " ComplexDoubleStorage ComplexFloatStorage"
)
_TENSORS: Final = " ".join(f"{t}Tensor" for t in _TENSOR_TYPES.split() if t != "Bool")

#: (module, name) pairs torch 2.13 ``weights_only`` accepts by default.
ALLOWED_GLOBALS: Final[frozenset[tuple[str, str]]] = frozenset().union(
    # _get_allowed_globals, the literal dict (lines 176-188)
    _pairs("collections", "OrderedDict Counter"),
    _pairs("torch.nn.parameter", "Parameter"),
    _pairs("torch.serialization", "_get_layout"),
    _pairs("torch", "Size Tensor device"),
    _pairs("_codecs", "encode"),
    _pairs("builtins", "bytearray set complex"),
    # dtypes: _dtype_to_storage_type_map, _new_dtypes, uint1-7, int1-7 (lines 190-198)
    _pairs(
        "torch",
        "bfloat16 bits16 bits1x8 bits2x4 bits4x2 bits8 bool complex128 complex32 complex64 "
        "float16 float32 float4_e2m1fn_x2 float64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 "
        "float8_e5m2fnuz float8_e8m0fnu int1 int2 int3 int4 int5 int6 int7 int8 int16 int32 "
        "int64 qint32 qint8 quint2x4 quint4x2 quint8 uint1 uint2 uint3 uint4 uint5 uint6 uint7 "
        "uint8 uint16 uint32 uint64",
    ),
    # torch._tensor_classes (lines 201-202)
    _pairs("torch", _TENSORS + " BoolTensor"),
    _pairs("torch.cuda", _TENSORS + " BoolTensor"),
    _pairs("torch.sparse", _TENSORS),
    _pairs("torch.cuda.sparse", _TENSORS),
    # torch._storage_classes (lines 204-211)
    _pairs("torch", _STORAGES + " QInt32Storage QInt8Storage QUInt2x4Storage QUInt4x2Storage QUInt8Storage"),
    _pairs("torch.cuda", _STORAGES),
    _pairs("torch.storage", "TypedStorage UntypedStorage"),
    # quantization schemes (lines 213-220)
    _pairs(
        "torch",
        "per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric "
        "per_channel_affine_float_qparams",
    ),
    # _tensor_rebuild_functions (lines 150-171, registered at 222-223)
    _pairs(
        "torch._utils",
        "_rebuild_parameter _rebuild_parameter_with_state _rebuild_qtensor _rebuild_tensor "
        "_rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_sparse_tensor "
        "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_wrapper_subclass "
        "_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor",
    ),
    # line 227
    _pairs("torch._tensor", "_rebuild_from_type_v2"),
)

#: Python 2 name fixes torch applies to every GLOBAL (torch/_utils.py lines 1112-1150,
#: adapted from CPython's _compat_pickle); pickle applies the same for protocol < 3.
IMPORT_MAPPING: Final[dict[str, str]] = {
    "__builtin__": "builtins",
    "copy_reg": "copyreg",
    "Queue": "queue",
    "repr": "reprlib",
    "_abcoll": "collections.abc",
    "UserDict": "collections",
    "UserList": "collections",
    "UserString": "collections",
    "whichdb": "dbm",
    "StringIO": "io",
    "cStringIO": "io",
}
NAME_MAPPING: Final[dict[tuple[str, str], tuple[str, str]]] = {
    ("__builtin__", "xrange"): ("builtins", "range"),
    ("__builtin__", "reduce"): ("functools", "reduce"),
    ("__builtin__", "intern"): ("sys", "intern"),
    ("__builtin__", "unichr"): ("builtins", "chr"),
    ("__builtin__", "unicode"): ("builtins", "str"),
    ("__builtin__", "long"): ("builtins", "int"),
    ("itertools", "izip"): ("builtins", "zip"),
    ("itertools", "imap"): ("builtins", "map"),
    ("itertools", "ifilter"): ("builtins", "filter"),
    ("itertools", "ifilterfalse"): ("itertools", "filterfalse"),
    ("itertools", "izip_longest"): ("itertools", "zip_longest"),
    ("UserDict", "IterableUserDict"): ("collections", "UserDict"),
    ("UserList", "UserList"): ("collections", "UserList"),
    ("UserString", "UserString"): ("collections", "UserString"),
    ("__builtin__", "basestring"): ("builtins", "str"),
    ("exceptions", "StandardError"): ("builtins", "Exception"),
    ("UserDict", "UserDict"): ("collections", "UserDict"),
}


def map_global(module: str, name: str) -> tuple[str, str]:
    """Apply torch's Python 2 name mapping, exactly as ``_read_global_instruction`` does."""
    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    if module in IMPORT_MAPPING:
        return IMPORT_MAPPING[module], name
    return module, name


@dataclass(frozen=True)
class PickleLimits:
    """Caps that bound the scanner's own work and catch expansion bombs.

    ``max_expanded_nodes`` bounds the size of the unpickled object graph when
    every shared reference is counted at each use (billion laughs via
    DUP/GET: a few KB of pickle that expands to 10**9 nodes for any code that
    walks or copies the result).
    """

    max_opcodes: int = 20_000_000
    max_stack: int = 2_000_000
    max_memo: int = 2_000_000
    max_expanded_nodes: int = 50_000_000


@dataclass(frozen=True)
class RawFinding:
    """A problem at ``offset`` (absolute, within the scanned byte string)."""

    offset: int
    kind: str
    detail: str


class Value:
    """A symbolic stack value. ``kind`` is a type tag; ``text`` the constant or global name."""

    __slots__ = ("children", "kind", "text")

    def __init__(self, kind: str, text: str | None = None, children: list[Value] | None = None) -> None:
        self.kind = kind
        self.text = text
        self.children = children


@dataclass(frozen=True)
class WalkResult:
    """Outcome of walking one pickle starting at some offset.

    ``end`` is the offset just after ``STOP``, or ``None`` when the stream
    broke (truncated, unknown opcode, ...); then a ``malformed`` (or
    ``limit``/``frame``/``protocol``) finding says why. ``root`` is the
    symbolic value ``STOP`` returned. ``persistent_ids`` are the operands of
    every PERSID/BINPERSID (the storages a torch pickle references).
    """

    end: int | None
    root: Value | None
    findings: tuple[RawFinding, ...]
    opcodes: int
    persistent_ids: tuple[Value, ...]


class _StopWalkError(Exception):
    """Internal: the walk cannot continue (a finding was recorded)."""


_DUNDER_STATE_OK: Final = frozenset({"__dict__"})
_SETITEM_CALLABLES: Final = frozenset({"collections.OrderedDict", "collections.Counter"})
_ADDITEMS_CALLABLES: Final = frozenset({"builtins.set"})


class _Walker:
    def __init__(self, data: Data, pos: int, limits: PickleLimits, opcode_budget: int) -> None:
        self.data = data
        self.n = len(self.data)
        self.pos = pos
        self.limits = limits
        self.budget = opcode_budget
        self.opcodes = 0
        self.stack: list[Value] = []
        self.metastack: list[list[Value]] = []
        self.memo: dict[int, Value] = {}
        self.findings: list[RawFinding] = []
        self.pids: list[Value] = []
        self.frame_end: int | None = None
        self.op_start = pos

    # -- helpers --------------------------------------------------------------------------------
    def finding(self, kind: str, detail: str, offset: int | None = None) -> None:
        self.findings.append(RawFinding(self.op_start if offset is None else offset, kind, detail))

    def fatal(self, kind: str, detail: str) -> _StopWalkError:
        self.finding(kind, detail)
        return _StopWalkError()

    def take(self, k: int, what: str) -> bytes:
        if k < 0 or self.pos + k > self.n:
            raise self.fatal(
                "malformed",
                f"truncated pickle: {what} needs {k} bytes at offset {self.pos}, {self.n - self.pos} remain",
            )
        b = bytes(self.data[self.pos : self.pos + k])
        self.pos += k
        return b

    def line(self, what: str) -> bytes:
        idx = self.data.find(b"\n", self.pos)
        if idx < 0:
            raise self.fatal("malformed", f"truncated pickle: {what} has no terminating newline")
        b = bytes(self.data[self.pos : idx])
        self.pos = idx + 1
        return b

    def push(self, v: Value) -> None:
        if len(self.stack) >= self.limits.max_stack:
            raise self.fatal("limit", f"pickle stack exceeds {self.limits.max_stack} items")
        self.stack.append(v)

    def pop(self, op: str) -> Value:
        if not self.stack:
            raise self.fatal("malformed", f"{op}: stack underflow")
        return self.stack.pop()

    def top(self, op: str) -> Value:
        if not self.stack:
            raise self.fatal("malformed", f"{op}: stack underflow")
        return self.stack[-1]

    def pop_mark(self, op: str) -> list[Value]:
        if not self.metastack:
            raise self.fatal("malformed", f"{op}: no MARK on the stack")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def memo_put(self, idx: int) -> None:
        v = self.top("PUT")
        if idx not in self.memo and len(self.memo) >= self.limits.max_memo:
            raise self.fatal("limit", f"pickle memo exceeds {self.limits.max_memo} entries")
        self.memo[idx] = v

    def memo_get(self, idx: int) -> None:
        v = self.memo.get(idx)
        if v is None:
            raise self.fatal("malformed", f"memo key {idx} not found")
        self.push(v)

    def check_global(self, module: str, name: str, op: str) -> Value:
        mmod, mname = map_global(module, name)
        full = f"{mmod}.{mname}"
        if (mmod, mname) not in ALLOWED_GLOBALS:
            raw = f" (written as {module}.{name})" if (mmod, mname) != (module, name) else ""
            self.finding("global", f"{full}{raw}", self.op_start)
        return Value("global", full)

    def call(self, op: str, func: Value, args: list[Value]) -> None:
        if func.kind != "global":
            self.finding("call", f"{op} calls a computed {func.kind} value, not an allowlisted global")
        self.push(Value("obj", func.text, [func, *args]))

    # -- main loop ------------------------------------------------------------------------------
    def run(self) -> WalkResult:
        try:
            root, end = self._loop()
        except _StopWalkError:
            return WalkResult(None, None, tuple(self.findings), self.opcodes, tuple(self.pids))
        expanded = _expanded_size(root, self.limits.max_expanded_nodes)
        if expanded is None:
            self.finding("limit", "self-referencing container in the unpickled object", end - 1)
        elif expanded > self.limits.max_expanded_nodes:
            self.finding(
                "limit",
                f"object graph expands to more than {self.limits.max_expanded_nodes} nodes "
                "through shared references (billion-laughs expansion)",
                end - 1,
            )
        return WalkResult(end, root, tuple(self.findings), self.opcodes, tuple(self.pids))

    def _loop(self) -> tuple[Value, int]:
        while True:
            if self.frame_end is not None and self.pos >= self.frame_end:
                if self.pos > self.frame_end:
                    self.finding("frame", "an opcode crosses the end of its FRAME", self.op_start)
                self.frame_end = None
            self.op_start = self.pos
            if self.pos >= self.n:
                raise self.fatal("malformed", "truncated pickle: no STOP opcode before end of data")
            self.opcodes += 1
            if self.opcodes > self.budget:
                raise self.fatal("limit", f"more than {self.limits.max_opcodes} pickle opcodes")
            code = self.data[self.pos]
            self.pos += 1
            handler = _DISPATCH.get(code)
            if handler is None:
                raise self.fatal("malformed", f"unknown opcode 0x{code:02x}")
            result = handler(self)
            if result is not None:
                return result, self.pos


def _expanded_size(root: Value, cap: int) -> int | None:
    """Nodes in the tree obtained by expanding shared references; None on a cycle.

    Stops early (returns a value > cap) once the cap is exceeded.
    """
    done: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Value, int]] = [(root, 0)]
    while stack:
        node, i = stack.pop()
        kids = node.children or []
        if i == 0:
            if id(node) in done:
                continue
            active.add(id(node))
        if i < len(kids):
            stack.append((node, i + 1))
            child = kids[i]
            if id(child) in active:
                return None
            if id(child) not in done:
                stack.append((child, 0))
            continue
        total = 1
        for child in kids:
            total += done[id(child)]
            if total > cap:
                return total
        done[id(node)] = total
        active.discard(id(node))
    return done[id(root)]


_Handler = Callable[[_Walker], "Value | None"]

# -- opcode handlers --------------------------------------------------------------------------------
# Each handler reads its argument, applies the stack effect, and returns the root value on STOP.


def _const(kind: str, text: str | None = None) -> Value:
    return Value(kind, text)


def _str_value(raw: bytes) -> Value:
    """A 8-bit STRING as pickle's default ``encoding='ASCII'`` sees it."""
    try:
        return Value("str", raw.decode("ascii"))
    except UnicodeDecodeError:
        return Value("bytes")


def _op_int(w: _Walker) -> None:
    text = w.line("INT").strip()
    try:
        w.push(_const("int", str(int(text, 0)) if text not in (b"00", b"01") else None))
    except ValueError:
        raise w.fatal("malformed", f"INT argument {text[:40]!r} is not an integer") from None


def _op_long(w: _Walker) -> None:
    text = w.line("LONG").strip()
    if text.endswith(b"L"):
        text = text[:-1]
    try:
        w.push(_const("int", str(int(text, 0))))
    except ValueError:
        raise w.fatal("malformed", f"LONG argument {text[:40]!r} is not an integer") from None


def _fixed_int(fmt: str, size: int, name: str) -> _Handler:
    def handler(w: _Walker) -> None:
        (val,) = struct.unpack(fmt, w.take(size, name))
        w.push(_const("int", str(val)))

    return handler


def _op_long1(w: _Walker) -> None:
    n = w.take(1, "LONG1")[0]
    w.push(_const("int", str(int.from_bytes(w.take(n, "LONG1"), "little", signed=True))))


def _op_long4(w: _Walker) -> None:
    (n,) = struct.unpack("<i", w.take(4, "LONG4"))
    if n < 0:
        raise w.fatal("malformed", "LONG4 with negative length")
    w.push(_const("int", str(int.from_bytes(w.take(n, "LONG4"), "little", signed=True))))


def _op_string(w: _Walker) -> None:
    raw = w.line("STRING")
    if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b"'", b'"'):
        raise w.fatal("malformed", "STRING argument is not quoted")
    try:
        val = codecs.escape_decode(raw[1:-1])[0]
    except ValueError:
        raise w.fatal("malformed", "STRING argument has an invalid escape") from None
    w.push(_str_value(val))


def _sized(size_fmt: str, size_len: int, name: str, kind: str) -> _Handler:
    def handler(w: _Walker) -> None:
        (n,) = struct.unpack(size_fmt, w.take(size_len, name))
        if n < 0:
            raise w.fatal("malformed", f"{name} with negative length")
        raw = w.take(n, name)
        if kind == "str8":
            w.push(_str_value(raw))
        elif kind == "unicode":
            try:
                w.push(_const("str", raw.decode("utf-8", "surrogatepass")))
            except UnicodeDecodeError:
                raise w.fatal("malformed", f"{name} is not valid UTF-8") from None
        else:
            w.push(_const(kind))

    return handler


def _op_unicode(w: _Walker) -> None:
    raw = w.line("UNICODE")
    try:
        w.push(_const("str", raw.decode("raw-unicode-escape")))
    except UnicodeDecodeError:
        raise w.fatal("malformed", "UNICODE argument has an invalid escape") from None


def _op_float(w: _Walker) -> None:
    raw = w.line("FLOAT")
    try:
        float(raw)
    except ValueError:
        raise w.fatal("malformed", f"FLOAT argument {raw[:40]!r} is not a float") from None
    w.push(_const("float"))


def _op_binfloat(w: _Walker) -> None:
    w.take(8, "BINFLOAT")
    w.push(_const("float"))


def _simple(kind: str) -> _Handler:
    def handler(w: _Walker) -> None:
        w.push(Value(kind, None, [] if kind in ("list", "dict", "set") else None))

    return handler


def _op_append(w: _Walker) -> None:
    item = w.pop("APPEND")
    target = w.top("APPEND")
    _extend(w, "APPEND", target, [item])


def _op_appends(w: _Walker) -> None:
    items = w.pop_mark("APPENDS")
    target = w.top("APPENDS")
    _extend(w, "APPENDS", target, items)


def _extend(w: _Walker, op: str, target: Value, items: list[Value]) -> None:
    # pickle calls target.append/extend on *any* object; torch allows lists only.
    if target.kind != "list":
        w.finding("call", f"{op} on a {target.kind} ({target.text or 'no global'}); only lists are allowed")
    _add_children(target, items)


def _add_children(target: Value, items: list[Value]) -> None:
    if target.children is None:
        target.children = []
    target.children.extend(items)


def _setitems(w: _Walker, op: str, target: Value, items: list[Value]) -> None:
    ok = target.kind == "dict" or (target.kind == "obj" and target.text in _SETITEM_CALLABLES)
    if not ok:
        w.finding("call", f"{op} on a {target.kind} ({target.text or 'no global'}); only dicts are allowed")
    if len(items) % 2:
        raise w.fatal("malformed", f"{op} with an odd number of items")
    _add_children(target, items)


def _op_setitem(w: _Walker) -> None:
    v = w.pop("SETITEM")
    k = w.pop("SETITEM")
    _setitems(w, "SETITEM", w.top("SETITEM"), [k, v])


def _op_setitems(w: _Walker) -> None:
    items = w.pop_mark("SETITEMS")
    _setitems(w, "SETITEMS", w.top("SETITEMS"), items)


def _op_additems(w: _Walker) -> None:
    items = w.pop_mark("ADDITEMS")
    target = w.top("ADDITEMS")
    if not (target.kind == "set" or (target.kind == "obj" and target.text in _ADDITEMS_CALLABLES)):
        w.finding("call", f"ADDITEMS on a {target.kind} ({target.text or 'no global'}); only sets are allowed")
    _add_children(target, items)


def _container_from_mark(kind: str) -> _Handler:
    def handler(w: _Walker) -> None:
        items = w.pop_mark(kind.upper())
        if kind == "dict" and len(items) % 2:
            raise w.fatal("malformed", "DICT with an odd number of items")
        w.push(Value(kind, None, items))

    return handler


def _tuple_n(k: int) -> _Handler:
    def handler(w: _Walker) -> None:
        items = [w.pop(f"TUPLE{k}") for _ in range(k)]
        items.reverse()
        w.push(Value("tuple", None, items))

    return handler


def _op_mark(w: _Walker) -> None:
    if len(w.metastack) >= w.limits.max_stack:
        raise w.fatal("limit", f"more than {w.limits.max_stack} nested MARKs")
    w.metastack.append(w.stack)
    w.stack = []


def _op_pop(w: _Walker) -> None:
    # pickle's POP on an empty stack pops the last MARK instead.
    if w.stack:
        w.stack.pop()
    else:
        w.pop_mark("POP")


def _op_pop_mark(w: _Walker) -> None:
    w.pop_mark("POP_MARK")


def _op_dup(w: _Walker) -> None:
    w.push(w.top("DUP"))


def _op_get(w: _Walker) -> None:
    raw = w.line("GET")
    try:
        w.memo_get(int(raw))
    except ValueError:
        raise w.fatal("malformed", f"GET argument {raw[:40]!r} is not an integer") from None


def _op_binget(w: _Walker) -> None:
    w.memo_get(w.take(1, "BINGET")[0])


def _op_long_binget(w: _Walker) -> None:
    w.memo_get(struct.unpack("<I", w.take(4, "LONG_BINGET"))[0])


def _op_put(w: _Walker) -> None:
    raw = w.line("PUT")
    try:
        idx = int(raw)
    except ValueError:
        raise w.fatal("malformed", f"PUT argument {raw[:40]!r} is not an integer") from None
    if idx < 0:
        raise w.fatal("malformed", "negative PUT argument")
    w.memo_put(idx)


def _op_binput(w: _Walker) -> None:
    w.memo_put(w.take(1, "BINPUT")[0])


def _op_long_binput(w: _Walker) -> None:
    w.memo_put(struct.unpack("<I", w.take(4, "LONG_BINPUT"))[0])


def _op_memoize(w: _Walker) -> None:
    # The memo is a dict: MEMOIZE stores at len(memo), which may overwrite an
    # index an explicit PUT chose earlier (the "memo confusion" bypass).
    w.memo_put(len(w.memo))


def _read_global_pair(w: _Walker, op: str) -> tuple[str, str]:
    mod_raw = w.line(op)
    name_raw = w.line(op)
    try:
        return mod_raw.decode("utf-8"), name_raw.decode("utf-8")
    except UnicodeDecodeError:
        raise w.fatal("malformed", f"{op} operands are not valid UTF-8") from None


def _op_global(w: _Walker) -> None:
    module, name = _read_global_pair(w, "GLOBAL")
    w.push(w.check_global(module, name, "GLOBAL"))


def _op_stack_global(w: _Walker) -> None:
    name = w.pop("STACK_GLOBAL")
    module = w.pop("STACK_GLOBAL")
    if module.kind != "str" or name.kind != "str" or module.text is None or name.text is None:
        w.finding(
            "unresolvable-global",
            f"unresolvable STACK_GLOBAL: operands are computed ({module.kind}, {name.kind}), not string constants",
        )
        w.push(Value("global", "?"))
        return
    w.push(w.check_global(module.text, name.text, "STACK_GLOBAL"))


def _op_inst(w: _Walker) -> None:
    module, name = _read_global_pair(w, "INST")
    func = w.check_global(module, name, "INST")
    w.call("INST", func, w.pop_mark("INST"))


def _op_obj(w: _Walker) -> None:
    items = w.pop_mark("OBJ")
    if not items:
        raise w.fatal("malformed", "OBJ without a class")
    w.call("OBJ", items[0], items[1:])


def _op_newobj(w: _Walker) -> None:
    args = w.pop("NEWOBJ")
    cls = w.pop("NEWOBJ")
    w.call("NEWOBJ", cls, [args])


def _op_newobj_ex(w: _Walker) -> None:
    kwargs = w.pop("NEWOBJ_EX")
    args = w.pop("NEWOBJ_EX")
    cls = w.pop("NEWOBJ_EX")
    w.call("NEWOBJ_EX", cls, [args, kwargs])


def _op_reduce(w: _Walker) -> None:
    args = w.pop("REDUCE")
    func = w.pop("REDUCE")
    w.call("REDUCE", func, [args])


def _is_dunder(text: str) -> bool:
    return len(text) > 4 and text.startswith("__") and text.endswith("__")


def _op_build(w: _Walker) -> None:
    state = w.pop("BUILD")
    inst = w.top("BUILD")
    # pickle's BUILD calls inst.__setstate__ or setattr()s every key of the
    # state (and slotstate): setting a dunder (``__setstate__``, ``__class__``,
    # ``__reduce_ex__``, ...) turns the next BUILD/REDUCE into a call the
    # allowlist never saw. torch checkpoints never set dunders.
    dicts = [state]
    if state.kind == "tuple" and state.children and len(state.children) == 2:
        dicts = list(state.children)
    for d in dicts:
        if d.kind != "dict" or not d.children:
            continue
        for key in d.children[0::2]:
            text = key.text or ""
            if key.kind == "str" and _is_dunder(text) and text not in _DUNDER_STATE_OK:
                w.finding("build", f"BUILD sets attribute {key.text!r} on a {inst.text or inst.kind}")
    _add_children(inst, [state])


def _op_persid(w: _Walker) -> None:
    w.line("PERSID")
    pid = Value("str")
    w.pids.append(pid)
    w.push(Value("pid", None, [pid]))


def _op_binpersid(w: _Walker) -> None:
    pid = w.pop("BINPERSID")
    w.pids.append(pid)
    w.push(Value("pid", None, [pid]))


def _op_ext(size: int) -> _Handler:
    def handler(w: _Walker) -> None:
        raw = w.take(size, f"EXT{size}")
        code = int.from_bytes(raw, "little")
        w.finding(
            "unresolvable-global",
            f"EXT{size} {code}: a global taken from the copyreg extension registry cannot be checked statically",
        )
        w.push(Value("global", "?"))

    return handler


def _op_proto(w: _Walker) -> None:
    proto = w.take(1, "PROTO")[0]
    if proto > HIGHEST_PROTOCOL:
        raise w.fatal("protocol", f"unsupported pickle protocol {proto} (highest is {HIGHEST_PROTOCOL})")


def _op_frame(w: _Walker) -> None:
    (length,) = struct.unpack("<Q", w.take(8, "FRAME"))
    if w.frame_end is not None and w.op_start < w.frame_end:
        w.finding("frame", "FRAME starts before the previous frame ended")
    if length > w.n - w.pos:
        raise w.fatal("frame", f"FRAME length {length} runs past the end of the data ({w.n - w.pos} remain)")
    w.frame_end = w.pos + length


def _op_next_buffer(w: _Walker) -> None:
    w.push(Value("buffer"))


def _op_readonly_buffer(w: _Walker) -> None:
    w.top("READONLY_BUFFER")


def _op_stop(w: _Walker) -> Value:
    return w.pop("STOP")


def _build_dispatch() -> dict[int, _Handler]:
    d: dict[str, _Handler] = {
        "INT": _op_int,
        "BININT": _fixed_int("<i", 4, "BININT"),
        "BININT1": _fixed_int("<B", 1, "BININT1"),
        "BININT2": _fixed_int("<H", 2, "BININT2"),
        "LONG": _op_long,
        "LONG1": _op_long1,
        "LONG4": _op_long4,
        "STRING": _op_string,
        "BINSTRING": _sized("<i", 4, "BINSTRING", "str8"),
        "SHORT_BINSTRING": _sized("<B", 1, "SHORT_BINSTRING", "str8"),
        "BINBYTES": _sized("<I", 4, "BINBYTES", "bytes"),
        "SHORT_BINBYTES": _sized("<B", 1, "SHORT_BINBYTES", "bytes"),
        "BINBYTES8": _sized("<Q", 8, "BINBYTES8", "bytes"),
        "BYTEARRAY8": _sized("<Q", 8, "BYTEARRAY8", "bytes"),
        "NEXT_BUFFER": _op_next_buffer,
        "READONLY_BUFFER": _op_readonly_buffer,
        "NONE": _simple("none"),
        "NEWTRUE": _simple("bool"),
        "NEWFALSE": _simple("bool"),
        "UNICODE": _op_unicode,
        "SHORT_BINUNICODE": _sized("<B", 1, "SHORT_BINUNICODE", "unicode"),
        "BINUNICODE": _sized("<I", 4, "BINUNICODE", "unicode"),
        "BINUNICODE8": _sized("<Q", 8, "BINUNICODE8", "unicode"),
        "FLOAT": _op_float,
        "BINFLOAT": _op_binfloat,
        "EMPTY_LIST": _simple("list"),
        "APPEND": _op_append,
        "APPENDS": _op_appends,
        "LIST": _container_from_mark("list"),
        "EMPTY_TUPLE": _simple("tuple"),
        "TUPLE": _container_from_mark("tuple"),
        "TUPLE1": _tuple_n(1),
        "TUPLE2": _tuple_n(2),
        "TUPLE3": _tuple_n(3),
        "EMPTY_DICT": _simple("dict"),
        "DICT": _container_from_mark("dict"),
        "SETITEM": _op_setitem,
        "SETITEMS": _op_setitems,
        "EMPTY_SET": _simple("set"),
        "ADDITEMS": _op_additems,
        "FROZENSET": _container_from_mark("frozenset"),
        "POP": _op_pop,
        "DUP": _op_dup,
        "MARK": _op_mark,
        "POP_MARK": _op_pop_mark,
        "GET": _op_get,
        "BINGET": _op_binget,
        "LONG_BINGET": _op_long_binget,
        "PUT": _op_put,
        "BINPUT": _op_binput,
        "LONG_BINPUT": _op_long_binput,
        "MEMOIZE": _op_memoize,
        "EXT1": _op_ext(1),
        "EXT2": _op_ext(2),
        "EXT4": _op_ext(4),
        "GLOBAL": _op_global,
        "STACK_GLOBAL": _op_stack_global,
        "REDUCE": _op_reduce,
        "BUILD": _op_build,
        "INST": _op_inst,
        "OBJ": _op_obj,
        "NEWOBJ": _op_newobj,
        "NEWOBJ_EX": _op_newobj_ex,
        "PROTO": _op_proto,
        "STOP": _op_stop,
        "FRAME": _op_frame,
        "PERSID": _op_persid,
        "BINPERSID": _op_binpersid,
    }
    out: dict[int, _Handler] = {}
    for op in pickletools.opcodes:
        out[op.code.encode("latin-1")[0]] = d[op.name]  # KeyError here = an opcode left unmodelled
    return out


_DISPATCH: Final = _build_dispatch()


def walk_pickle(
    data: Data, start: int = 0, limits: PickleLimits | None = None, opcode_budget: int | None = None
) -> WalkResult:
    """Walk one pickle from ``start`` to its STOP (or to the first structural problem).

    Guarantees: no code from ``data`` is imported or run; every GLOBAL, INST and
    resolvable STACK_GLOBAL before the walk ends is checked against
    :data:`ALLOWED_GLOBALS`; anything the walker cannot prove is reported as a
    finding, never ignored.
    """
    lim = limits or PickleLimits()
    budget = lim.max_opcodes if opcode_budget is None else opcode_budget
    return _Walker(data, start, lim, budget).run()
