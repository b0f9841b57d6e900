"""The bounded symbolic-expression parser (securehub.reconstruct.symexpr): what torch writes parses to what sympify
would build; anything else is ``reconstruct-refused``; no input raises anything but ``SecureHubError``.

hypothesis is not installed in this environment, so the property tests are seeded random mutation
loops over a corpus of real expressions (deterministic: a failure reproduces with the same seed).
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import sympy  # type: ignore[import-untyped]

from securehub.errors import ReconstructRefused, SecureHubError
from securehub.reconstruct import symexpr as _symexpr

S77 = "Symbol('s77', positive=True, integer=True)"
CORPUS = [
    S77,
    f"Mul(Integer(24), {S77})",
    f"Min(Integer(8), Mul(Integer(8), {S77}))",
    f"Mul(Integer(2), Min(Integer(4), Mul(Integer(8), {S77})))",
    f"Add(Mul(Integer(3), {S77}), Integer(1))",
    f"Pow({S77}, Integer(-1))",
    f"Pow({S77}, Rational(1, 2))",
    f"GreaterThan({S77}, Integer(2))",
    f"StrictLessThan({S77}, Integer(4))",
    f"Equality({S77}, Integer(3))",
    f"Unequality({S77}, Integer(3))",
    f"And(GreaterThan({S77}, Integer(2)), LessThan({S77}, Integer(9)))",
    f"FloorDiv({S77}, Integer(2))",
    f"PythonMod({S77}, Integer(3))",
    f"ModularIndexing({S77}, Integer(1), Integer(4))",
    f"CeilDiv({S77}, Integer(2))",
    f"Max(Integer(1), {S77})",
    "Float('1.5', precision=53)",
    "Rational(1, 2)",
    "Integer(-7)",
    "2*s0 + 1",
    "s0**2 - s1/3",
    "-oo",
    "int_oo",
    "true",
]


def _build(text: str) -> Any:
    return _symexpr.build(_symexpr.parse(text), text, {})


@pytest.mark.parametrize("text", CORPUS)
def test_what_torch_writes_builds_what_sympify_would(text: str) -> None:
    if "int_oo" in text:
        from torch.utils._sympy.numbers import int_oo

        assert _build(text) is int_oo
        return
    from torch.utils._sympy import functions

    torch_locals = {name: getattr(functions, name) for name in ("FloorDiv", "PythonMod", "ModularIndexing", "CeilDiv")}
    assert _build(text) == sympy.sympify(text, locals=torch_locals)  # what torch's deserialiser would build


def test_known_symbols_are_reused() -> None:
    s0 = sympy.Symbol("s0", positive=True, integer=True)
    assert _symexpr.build(_symexpr.parse("2*s0"), "2*s0", {"s0": s0}) == 2 * s0


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9",
        "Pow(Integer(9), Pow(Integer(9), Integer(9)))",
        "PowByNatural(Integer(9), Integer(99999999999))",
        "FloatPow(Float('9.0', precision=53), Integer(65))",
        "LShift(Integer(1), Integer(99999999999))",
        "RShift(Integer(1), Integer(-1))",
        "RoundDecimal(s0, Integer(10000000000))",
        "Pow(Pow(Pow(Integer(99), Integer(64)), Integer(64)), Integer(64))",
        "s0**s1",
        "1" * 25,
        "(" * 40 + "1" + ")" * 40,
        "x" * 3000,
        "+".join(["s0"] * 300),
        "Float('1', precision=100000)",
        "Symbol('s0').__class__",
        "Symbol('s0', evaluate=True)",
        "__import__('os').system('id')",
        "lambda: 0",
        "Symbol('os.system')",
        "Mod(s0, 0)",
        "Rational(1, 0)",
        "Add(true, 1)",
        "Integer(s0)",
        "'s0'",
        "s0 +",
        "",
        "Max()",
        "Not(s0, s1)",
        "Symbol(s0)",
        "\x00",
    ],
)
def test_bombs_and_non_arithmetic_are_refused(text: str) -> None:
    with pytest.raises(ReconstructRefused) as exc:
        _build(text)
    assert exc.value.code == "reconstruct-refused"


def test_non_string_is_refused() -> None:
    with pytest.raises(ReconstructRefused):
        _symexpr.parse(12)


_ALPHABET = list("0123456789+-*/(),=' .eE_[]{}:;\\\"\n") + [
    "**", "Symbol(", "Integer(", "Pow(", "Mul(", "Add(", "s0", "s77", "u3", "oo", "true", "9**9", "LShift(",
    "PowByNatural(", "Rational(", "Float(", "precision=", "positive=True", "__", "lambda", "import", "99999999999",
]  # fmt: skip


def _mutate(rng: random.Random, text: str) -> str:
    choice = rng.randrange(5)
    pos = rng.randrange(len(text) + 1)
    if choice == 0:
        return text[:pos] + rng.choice(_ALPHABET) + text[pos:]
    if choice == 1 and text:
        end = min(len(text), pos + rng.randrange(1, 8))
        return text[:pos] + text[end:]
    if choice == 2 and text:
        start = rng.randrange(len(text))
        return text[:pos] + text[start : start + rng.randrange(1, 20)] + text[pos:]
    if choice == 3:
        other = rng.choice(CORPUS)
        cut = rng.randrange(len(other) + 1)
        return text[:pos] + other[cut:]
    return text[:pos] + text[pos:][::-1]


def _outcome(text: str) -> str:
    """Build ``text``: "ok" or "refused"; any other exception fails the property."""
    try:
        value = _build(text)
    except SecureHubError as exc:
        assert exc.code == "reconstruct-refused"
        return "refused"
    assert isinstance(value, sympy.Basic)
    return "ok"


@pytest.mark.parametrize("seed", range(4))
def test_mutated_expressions_parse_or_are_refused(seed: int) -> None:
    rng = random.Random(seed)
    seen = {"ok": 0, "refused": 0}
    for _ in range(600):
        text = rng.choice(CORPUS)
        for _ in range(rng.randrange(1, 6)):
            text = _mutate(rng, text)
        seen[_outcome(text)] += 1
    assert seen["ok"] and seen["refused"]  # the loop explores both sides


@pytest.mark.parametrize("seed", range(2))
def test_random_token_soup_parses_or_is_refused(seed: int) -> None:
    rng = random.Random(1000 + seed)
    for _ in range(800):
        _outcome("".join(rng.choice(_ALPHABET) for _ in range(rng.randrange(0, 40))))
