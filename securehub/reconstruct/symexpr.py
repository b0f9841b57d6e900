"""A bounded parser for the symbolic-shape expressions of an exported program (``expr_str``).

torch's deserialiser turns ``expr_str`` into sympy with ``sympy.sympify`` --
that is ``eval`` of a string the (hostile) sandbox child wrote. Even over an
allowlist of names, evaluation can be made to hang: ``9**9**9`` is a single
integer power that never finishes, and ``LShift(1, 10**18)`` or
``PowByNatural(9, 10**18)`` do the same through torch's own functions.

Here the string is tokenised and parsed into our own small AST under hard
limits (length, token/node count, nesting depth, digits per literal), and the
sympy object is then *built by us* from that AST, calling only the
constructors in :data:`_CALLS`. Nothing is ever passed to ``sympify``/``eval``.
While building, every node carries an upper bound on the size (in bits) of
the integer it can evaluate to (a symbol counts as 64 bits: torch sizes are
int64); powers and shifts need a small constant exponent, and any node whose
bound exceeds :data:`_MAX_BITS` is refused, so constant folding is cheap.

Accepted forms: sympy ``srepr`` (what torch 2.13 writes, e.g.
``Mul(Integer(2), Symbol('s77', positive=True, integer=True))``) and plain
infix arithmetic (``2*s0 + 1``) with ``+ - * / **`` and parentheses.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sympy  # type: ignore[import-untyped]  # no stubs; only its constructors are called

from securehub.errors import ReconstructRefused

__all__ = ["MAX_CHARS", "Expr", "build", "check_symbol_name", "parse"]

MAX_CHARS = 2048
_MAX_CHARS = MAX_CHARS
_MAX_NODES = 256
_MAX_DEPTH = 32
_MAX_DIGITS = 24
_MAX_EXPONENT = 64
_MAX_PRECISION_BITS = 113
_MAX_BITS = 1 << 16
_SYMBOL_BITS = 64

#: torch's symbol names: a short prefix (s, u, ps, zuf, ...) and a bounded index.
_SYMBOL = re.compile(r"[a-z]{1,4}[0-9]{1,7}\Z")
_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<str>'[^'\\]{0,64}')"
    r"|(?P<num>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,3})?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63})|(?P<op>\*\*|[-+*/(),=])"
)
_FLOAT_TEXT = re.compile(r"-?[0-9]{1,24}(?:\.[0-9]{0,24})?(?:[eE][+-]?[0-9]{1,3})?\Z")
#: keyword arguments ``Symbol(...)`` may carry (sympy assumptions), each True or False.
_ASSUMPTIONS = frozenset(
    {
        "positive", "negative", "nonnegative", "nonpositive", "integer", "real", "finite",
        "zero", "nonzero", "rational", "extended_real",
    }
)  # fmt: skip


def _refuse(text: str, why: str) -> ReconstructRefused:
    return ReconstructRefused(
        f"exported program: symbolic expression {text[:120]!r} is refused: {why}; expected plain "
        "arithmetic over shape symbols (what torch.export writes); the sandbox child's export is malformed or hostile"
    )


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Num:
    value: int | float


@dataclass(frozen=True)
class Str:
    text: str


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Neg:
    operand: Expr


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...]


Expr = Num | Str | Name | Neg | BinOp | Call


# --------------------------------------------------------------------------- parser


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise _refuse(text, f"unexpected character at {text[pos : pos + 20]!r}")
        pos = match.end()
        kind = match.lastgroup or "space"  # every alternative is a named group
        if kind == "space":
            continue
        if kind == "num" and len(match.group().split(".")[0].split("e")[0].split("E")[0]) > _MAX_DIGITS:
            raise _refuse(text, f"a number literal has more than {_MAX_DIGITS} digits")
        tokens.append((kind, match.group()))
        if len(tokens) > 4 * _MAX_NODES:
            raise _refuse(text, "too many tokens")
    return tokens


class _Parser:
    """Recursive descent over the token list; counts nodes and nesting as it goes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.nodes = 0
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (value is not None and token[1] != value):
            raise _refuse(self.text, f"expected {value or 'more input'!r}, found {token[1] if token else 'the end'!r}")
        self.pos += 1
        return token

    def node(self, made: Expr) -> Expr:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _refuse(self.text, f"more than {_MAX_NODES} nodes")
        return made

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _refuse(self.text, f"nested more than {_MAX_DEPTH} levels")

    def parse(self) -> Expr:
        tree = self.additive()
        if self.peek() is not None:
            raise _refuse(self.text, f"unexpected {self.take()[1]!r}")
        return tree

    def additive(self) -> Expr:
        self.enter()
        left = self.multiplicative()
        while (token := self.peek()) is not None and token[1] in ("+", "-"):
            self.pos += 1
            left = self.node(BinOp(token[1], left, self.multiplicative()))
        self.depth -= 1
        return left

    def multiplicative(self) -> Expr:
        left = self.unary()
        while (token := self.peek()) is not None and token[1] in ("*", "/"):
            self.pos += 1
            left = self.node(BinOp(token[1], left, self.unary()))
        return left

    def unary(self) -> Expr:
        token = self.peek()
        if token is not None and token[1] in ("-", "+"):
            self.pos += 1
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return self.node(Neg(operand)) if token[1] == "-" else operand
        base = self.atom()
        if (token := self.peek()) is not None and token[1] == "**":
            self.pos += 1
            self.enter()
            exponent = self.unary()
            self.depth -= 1
            return self.node(BinOp("**", base, exponent))
        return base

    def atom(self) -> Expr:
        kind, value = self.take()
        if kind == "num":
            return self.node(Num(float(value) if any(c in value for c in ".eE") else int(value)))
        if kind == "str":
            return self.node(Str(value[1:-1]))
        if kind == "name":
            if (token := self.peek()) is not None and token[1] == "(":
                return self.call(value)
            return self.node(Name(value))
        if value == "(":
            inner = self.additive()
            self.take(")")
            return inner
        raise _refuse(self.text, f"unexpected {value!r}")

    def call(self, func: str) -> Expr:
        self.take("(")
        self.enter()
        args: list[Expr] = []
        kwargs: list[tuple[str, Expr]] = []
        while (token := self.peek()) is not None and token[1] != ")":
            after = self.peek(1)
            if token[0] == "name" and after is not None and after[1] == "=":
                self.pos += 2
                kwargs.append((token[1], self.additive()))
            elif kwargs:
                raise _refuse(self.text, "a positional argument follows a keyword argument")
            else:
                args.append(self.additive())
            if (token := self.peek()) is not None and token[1] == ",":
                self.pos += 1
            elif token is None or token[1] != ")":
                raise _refuse(self.text, f"expected ',' or ')' in a call to {func}")
        self.take(")")
        self.depth -= 1
        return self.node(Call(func, tuple(args), tuple(kwargs)))


def parse(text: object) -> Expr:
    """Parse ``text`` into an :data:`Expr` within the module's limits, or raise ``ReconstructRefused``.

    Guarantees: at most ``_MAX_CHARS`` characters, ``_MAX_NODES`` nodes,
    ``_MAX_DEPTH`` levels and ``_MAX_DIGITS`` digits per literal; nothing is
    evaluated. Whether the names and calls are allowed is :func:`build`'s job.
    """
    if not isinstance(text, str):
        raise _refuse(repr(text), "it is not a string")
    if len(text) > _MAX_CHARS:
        raise _refuse(text, f"longer than {_MAX_CHARS} characters")
    return _Parser(text).parse()


# --------------------------------------------------------------------------- builder

#: A built value and an upper bound on the bit size of the integer it can evaluate to.
_Built = tuple[Any, int]


def check_symbol_name(name: object) -> str:
    """``name`` if it is a torch shape-symbol name (``s0``, ``u12``, ``zuf3``), else ``ReconstructRefused``."""
    if not isinstance(name, str) or not _SYMBOL.match(name):
        raise _refuse(str(name), "it is not a shape-symbol name")
    return name


class _Builder:
    def __init__(self, text: str, symbols: Mapping[str, Any]) -> None:
        self.text = text
        self.symbols = symbols
        self.depth = 0

    def fail(self, why: str) -> ReconstructRefused:
        return _refuse(self.text, why)

    def bounded(self, value: Any, bits: int) -> _Built:
        if bits > _MAX_BITS:
            raise self.fail(f"it can evaluate to an integer of more than {_MAX_BITS} bits")
        return value, bits

    def small_int(self, tree: Expr, limit: int = _MAX_EXPONENT) -> int:
        """A constant integer literal (``3``, ``-3``, ``Integer(3)``) with ``|n| <= limit``."""
        if isinstance(tree, Neg):
            return -self.small_int(tree.operand, limit)
        if isinstance(tree, Call) and tree.func == "Integer" and len(tree.args) == 1 and not tree.kwargs:
            return self.small_int(tree.args[0], limit)
        if isinstance(tree, Num) and isinstance(tree.value, int) and tree.value <= limit:
            return tree.value
        raise self.fail(f"an exponent or shift must be a constant integer of at most {limit}")

    def exponent(self, tree: Expr) -> tuple[Any, int]:
        """A small constant exponent (integer, or ``Rational(p, q)`` with small p, q) and its bit factor."""
        if isinstance(tree, Call) and tree.func == "Rational" and len(tree.args) == 2 and not tree.kwargs:
            p, q = self.small_int(tree.args[0]), self.small_int(tree.args[1])
            if q == 0:
                raise self.fail("a zero denominator")
            return sympy.Rational(p, q), max(1, math.ceil(abs(p) / abs(q)))
        n = self.small_int(tree)
        return sympy.Integer(n), max(1, abs(n))

    def build(self, tree: Expr) -> _Built:
        # A left-nested infix chain (a+b+c+...) is deeper than the parser's nesting count.
        self.depth += 1
        if self.depth > 2 * _MAX_DEPTH:
            raise self.fail(f"nested more than {2 * _MAX_DEPTH} levels")
        try:
            return self.build_node(tree)
        finally:
            self.depth -= 1

    def build_node(self, tree: Expr) -> _Built:
        if isinstance(tree, Num):
            if isinstance(tree.value, int):
                return self.bounded(sympy.Integer(tree.value), tree.value.bit_length())
            return sympy.Float(tree.value), _SYMBOL_BITS
        if isinstance(tree, Name):
            return self.name(tree.name)
        if isinstance(tree, Neg):
            value, bits = self.build(tree.operand)
            return -value, bits
        if isinstance(tree, BinOp):
            return self.binop(tree)
        if isinstance(tree, Call):
            return self.call(tree)
        raise self.fail("a quoted string outside Symbol(...) or Float(...)")

    def name(self, name: str) -> _Built:
        from torch.utils._sympy.numbers import int_oo  # noqa: PLC0415 - lazy: torch's sympy helpers

        constants: dict[str, Any] = {
            "oo": sympy.oo, "int_oo": int_oo, "true": sympy.true, "false": sympy.false,
            "True": sympy.true, "False": sympy.false,
        }  # fmt: skip
        if name in constants:
            return constants[name], _SYMBOL_BITS
        if _SYMBOL.match(name):
            return (self.symbols[name] if name in self.symbols else sympy.Symbol(name)), _SYMBOL_BITS
        raise self.fail(f"it uses the name {name!r}")

    def binop(self, tree: BinOp) -> _Built:
        left, lbits = self.build(tree.left)
        if tree.op == "**":
            exponent, factor = self.exponent(tree.right)
            return self.bounded(sympy.Pow(left, exponent), lbits * factor)
        right, rbits = self.build(tree.right)
        if tree.op == "+":
            return self.bounded(sympy.Add(left, right), max(lbits, rbits) + 1)
        if tree.op == "-":
            return self.bounded(sympy.Add(left, -right), max(lbits, rbits) + 1)
        if tree.op == "*":
            return self.bounded(sympy.Mul(left, right), lbits + rbits)
        return self.bounded(sympy.Mul(left, sympy.Pow(right, -1)), lbits + rbits)  # "/"

    def call(self, tree: Call) -> _Built:
        special = _SPECIAL.get(tree.func)
        if special is not None:
            return special(self, tree)
        if tree.kwargs:
            raise self.fail(f"{tree.func}(...) takes no keyword arguments")
        entry = _calls().get(tree.func)
        if entry is None:
            raise self.fail(f"it calls {tree.func!r}, which is not an allowlisted sympy/torch function")
        func, low, high, combine = entry
        if not low <= len(tree.args) <= high:
            raise self.fail(f"{tree.func}(...) takes {low}..{high} arguments, got {len(tree.args)}")
        built = [self.build(arg) for arg in tree.args]
        return self.bounded(func(*(v for v, _ in built)), combine([b for _, b in built]))

    # ---- constructors with literal arguments (srepr leaves)

    def symbol(self, tree: Call) -> _Built:
        if len(tree.args) != 1 or not isinstance(tree.args[0], Str):
            raise self.fail("Symbol(...) takes one quoted name")
        name = check_symbol_name(tree.args[0].text)
        assumptions: dict[str, bool] = {}
        for key, value in tree.kwargs:
            if key not in _ASSUMPTIONS or not isinstance(value, Name) or value.name not in ("True", "False"):
                raise self.fail(f"Symbol(...) assumption {key!r} is not allowed")
            assumptions[key] = value.name == "True"
        return sympy.Symbol(name, **assumptions), _SYMBOL_BITS

    def integer(self, tree: Call) -> _Built:
        if len(tree.args) != 1 or tree.kwargs:
            raise self.fail("Integer(...) takes one integer literal")
        arg = tree.args[0]
        negative = isinstance(arg, Neg)
        if isinstance(arg, Neg):
            arg = arg.operand
        if not isinstance(arg, Num) or not isinstance(arg.value, int):
            raise self.fail("Integer(...) takes one integer literal")
        value = -arg.value if negative else arg.value
        return sympy.Integer(value), value.bit_length()

    def rational(self, tree: Call) -> _Built:
        if len(tree.args) != 2 or tree.kwargs:
            raise self.fail("Rational(...) takes two integer literals")
        p, q = (self.integer(Call("Integer", (arg,), ()))[0] for arg in tree.args)
        if q == 0:
            raise self.fail("a zero denominator")
        return sympy.Rational(p, q), int(p).bit_length() + int(q).bit_length()

    def float_(self, tree: Call) -> _Built:
        if len(tree.args) != 1:
            raise self.fail("Float(...) takes one number")
        precision = 53
        for key, value in tree.kwargs:
            if key != "precision":
                raise self.fail(f"Float(...) keyword {key!r} is not allowed")
            precision = self.small_int(value, _MAX_PRECISION_BITS)
            if precision < 1:
                raise self.fail("Float(...) precision must be positive")
        arg = tree.args[0]
        if isinstance(arg, Str) and _FLOAT_TEXT.match(arg.text):
            number = float(arg.text)
        elif isinstance(arg, Num):
            number = float(arg.value)
        else:
            raise self.fail("Float(...) takes a decimal number")
        return sympy.Float(number, precision=precision), _SYMBOL_BITS

    def power(self, tree: Call) -> _Built:
        if len(tree.args) != 2 or tree.kwargs:
            raise self.fail(f"{tree.func}(...) takes a base and a small constant exponent")
        base, bits = self.build(tree.args[0])
        exponent, factor = self.exponent(tree.args[1])
        func = sympy.Pow if tree.func == "Pow" else getattr(_torch_functions(), tree.func)
        return self.bounded(func(base, exponent), bits * factor)

    def shift(self, tree: Call) -> _Built:
        if len(tree.args) != 2 or tree.kwargs:
            raise self.fail(f"{tree.func}(...) takes a value and a small constant shift")
        value, bits = self.build(tree.args[0])
        amount = self.small_int(tree.args[1])
        if amount < 0:
            raise self.fail("a negative shift")
        func = getattr(_torch_functions(), tree.func)
        return self.bounded(func(value, sympy.Integer(amount)), bits + amount)

    def round_decimal(self, tree: Call) -> _Built:
        if len(tree.args) != 2 or tree.kwargs:
            raise self.fail("RoundDecimal(...) takes a value and a small constant digit count")
        value, bits = self.build(tree.args[0])
        digits = self.small_int(tree.args[1])
        return self.bounded(_torch_functions().RoundDecimal(value, sympy.Integer(digits)), bits)


_SPECIAL: dict[str, Callable[[_Builder, Call], _Built]] = {
    "Symbol": _Builder.symbol,
    "Integer": _Builder.integer,
    "Rational": _Builder.rational,
    "Float": _Builder.float_,
    "Pow": _Builder.power,
    "PowByNatural": _Builder.power,
    "FloatPow": _Builder.power,
    "LShift": _Builder.shift,
    "RShift": _Builder.shift,
    "RoundDecimal": _Builder.round_decimal,
}


def _torch_functions() -> Any:
    from torch.utils._sympy import functions  # noqa: PLC0415 - lazy: torch's sympy helpers

    return functions


def _plus_one(bits: list[int]) -> int:
    return max(bits, default=0) + 1


def _total(bits: list[int]) -> int:
    return sum(bits)


_CALL_TABLE: dict[str, tuple[Callable[..., Any], int, int, Callable[[list[int]], int]]] = {}


def _calls() -> dict[str, tuple[Callable[..., Any], int, int, Callable[[list[int]], int]]]:
    """name -> (constructor, min args, max args, bit bound of the result from the arguments' bounds)."""
    if _CALL_TABLE:
        return _CALL_TABLE
    fn = _torch_functions()
    table: dict[str, tuple[Callable[..., Any], int, int, Callable[[list[int]], int]]] = {
        "Add": (sympy.Add, 1, _MAX_NODES, lambda b: max(b, default=0) + len(b).bit_length()),
        "Mul": (sympy.Mul, 1, _MAX_NODES, _total),
        "Max": (sympy.Max, 1, _MAX_NODES, _plus_one),
        "Min": (sympy.Min, 1, _MAX_NODES, _plus_one),
        "Abs": (sympy.Abs, 1, 1, _plus_one),
        "And": (sympy.And, 1, _MAX_NODES, _plus_one),
        "Or": (sympy.Or, 1, _MAX_NODES, _plus_one),
        "Not": (sympy.Not, 1, 1, _plus_one),
    }
    for relational in ("Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "LessThan",
                       "StrictLessThan", "GreaterThan", "StrictGreaterThan"):  # fmt: skip
        table[relational] = (getattr(sympy, relational), 2, 2, _plus_one)
    for name, arity in (
        ("FloorDiv", 2), ("ModularIndexing", 3), ("Where", 3), ("PythonMod", 2), ("Mod", 2), ("CleanDiv", 2),
        ("CeilToInt", 1), ("FloorToInt", 1), ("CeilDiv", 2), ("FloatTrueDiv", 2), ("IntTrueDiv", 2),
        ("TruncToFloat", 1), ("TruncToInt", 1), ("RoundToInt", 1), ("ToFloat", 1), ("Identity", 1),
    ):  # fmt: skip
        table[name] = (getattr(fn, name), arity, arity, _plus_one)
    _CALL_TABLE.update(table)
    return _CALL_TABLE


def build(tree: Expr, text: str, symbols: Mapping[str, Any]) -> Any:
    """Build the sympy object for ``tree`` (parsed from ``text``), or raise ``ReconstructRefused``.

    Bare symbol names resolve to ``symbols`` first (torch's already-created
    symbols, as ``sympify``'s ``locals`` would), then to a plain ``Symbol``.
    Only the constructors listed in this module are called, each with
    arguments whose evaluated size is bounded; any error a constructor raises
    (``Add(true, 1)``, a zero modulus) is a refusal.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # sympy deprecations (non-Expr args to Add) are malformed input
            value, _ = _Builder(text, symbols).build(tree)
    except ReconstructRefused:
        raise
    except Exception as exc:  # any sympy/torch construction failure: the expression is malformed
        raise _refuse(text, f"sympy refused it ({type(exc).__name__})") from None
    if not isinstance(value, sympy.Basic):
        raise _refuse(text, "it is not a sympy expression")
    return value
