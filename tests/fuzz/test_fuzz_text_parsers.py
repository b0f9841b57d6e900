"""Fuzz the small text parsers: the bounded JSON reader, repo specs, refs, and symbolic size expressions.

- ``securehub/_util/strict_json.py``: a value or ``JsonRefusedError`` (every caller maps it to its
  own code); an accepted document is exactly what ``json.loads`` reads and within the limits.
- ``securehub/resolve/spec.py`` and ``refs.py``: a ``RepoSpec``/name or ``RepoNotAllowed``/
  ``RefNotAllowed``; an accepted ref always passes the ref rules again.
- ``securehub/reconstruct/symexpr.py``: an expression or ``ReconstructRefused``, built within the bit
  bound (``9**9**9`` is refused, not evaluated).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from securehub._util.strict_json import JsonLimits, JsonRefusedError, loads
from securehub.errors import ReconstructRefused, RefNotAllowed, RepoNotAllowed
from securehub.reconstruct.symexpr import build as sym_build
from securehub.reconstruct.symexpr import parse as sym_parse
from securehub.resolve.refs import check_ref_syntax
from securehub.resolve.spec import parse_spec
from tests.fuzz._harness import json_values, mutated, run_parser

_LIMITS = JsonLimits(max_bytes=64 * 1024, max_depth=16, max_items=2000, max_str_bytes=256)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _strict_json(data: bytes) -> None:
    value = run_parser("strict_json", lambda: loads(data, _LIMITS), (JsonRefusedError,))
    if value is not None:
        assert value == json.loads(data)
        assert _depth(value) <= _LIMITS.max_depth


_JSON_NOISE = st.lists(
    st.sampled_from(
        [b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b"1", b"-", b"e9", b"NaN", b" ", b'"a"', b"\xff"]
    ),
    max_size=200,
).map(b"".join)


@given(st.one_of(mutated({"a": [1, {"b": "c"}], "d": None}).map(lambda v: json.dumps(v).encode()), _JSON_NOISE))
@example(b"[" * 100_000)
@example(b'"' + b"\\" * 3 + b'"')
@example(b'{"a": 1, "a": 2}')
@example(b"[Infinity, -Infinity, NaN]")
@example(b"1" * 100_000)
def test_fuzz_strict_json_structured(data: bytes) -> None:
    _strict_json(data)


@given(st.binary(max_size=512))
def test_fuzz_strict_json_random_bytes(data: bytes) -> None:
    _strict_json(data)


@given(json_values)
def test_fuzz_strict_json_valid_documents_roundtrip(value: Any) -> None:
    _strict_json(json.dumps(value).encode())


# --------------------------------------------------------------------------- specs and refs

_NAME_CHARS = st.lists(
    st.sampled_from(list("abcAZ09-._/:@~^\\ \t\n\x00\x7f%{}+é\u202e\u00a0") + ["..", "@{", "refs/", "pull/1/head"]),
    max_size=30,
).map("".join)
_SPEC_PREFIXES = st.sampled_from(
    [
        "",
        "git+https://",
        "git+http://",
        "git+ssh://",
        "git+file://",
        "git+ext::",
        "https://",
        "git+http://127.0.0.1",
        "ext::",
    ]
)


def _spec(text: str) -> None:
    spec = run_parser("spec", lambda: parse_spec(text), (RepoNotAllowed, RefNotAllowed))
    if spec is not None and spec.ref is not None:
        check_ref_syntax(spec.ref)  # whatever was accepted passes the ref rules again
        assert not any(c.isspace() or ord(c) < 0x20 for c in spec.remote)


@given(_SPEC_PREFIXES, _NAME_CHARS, _NAME_CHARS)
@example("", "owner/repo", ":v1.2")
@example("git+https://", "host/path", "@main")
@example("", "owner/repo", ":" + "a" * 100_000)
def test_fuzz_spec_structured(prefix: str, body: str, tail: str) -> None:
    _spec(prefix + body + tail)


@given(st.text(max_size=80))
def test_fuzz_spec_random_text(text: str) -> None:
    _spec(text)


@given(st.one_of(_NAME_CHARS, st.text(max_size=60)))
@example("v1.2")
@example("heads/" + "a" * 300)
@example("a/" * 2000)
def test_fuzz_ref_syntax(ref: str) -> None:
    out = run_parser("ref", lambda: check_ref_syntax(ref), (RefNotAllowed,))
    if out is not None:
        name, _ = out
        assert name and not any(c.isspace() for c in name)
        assert ".." not in name and not name.startswith("-")


# --------------------------------------------------------------------------- symbolic expressions

_SYM_TOKENS = st.sampled_from(
    [
        "s0",
        "s1",
        "s77",
        "1",
        "2",
        "9",
        "0",
        "-",
        "+",
        "*",
        "**",
        "/",
        "//",
        "%",
        "(",
        ")",
        ",",
        " ",
        "1.5",
        "1e300",
        "Max(",
        "Min(",
        "FloorDiv(",
        "Mod(",
        "CeilToInt(",
        "PythonMod(",
        "sqrt(",
        "Pow(",
        "True",
        "x",
        "__import__(",
        "999999999999999999999999999",
        "Symbol(",
        "'a'",
        "Integer(",
        "Abs(",
    ]
)


def _symexpr(text: object) -> None:
    def parse_and_build() -> object:
        tree = sym_parse(text)
        return sym_build(tree, str(text), {})

    run_parser("symexpr", parse_and_build, (ReconstructRefused,))


@given(st.lists(_SYM_TOKENS, max_size=40).map("".join))
@example("9**9**9")
@example("2**(2**(2**64))")
@example("(" * 5000 + "1" + ")" * 5000)
@example("Max(" * 100 + "s0" + ")" * 100)
@example("9" * 3000)
@example("1e999999")
def test_fuzz_symexpr_token_soup(text: str) -> None:
    _symexpr(text)


@given(st.one_of(st.text(max_size=100), st.integers(), st.none()))
def test_fuzz_symexpr_random_text(text: object) -> None:
    _symexpr(text)


_FUNCS = ["Add", "Mul", "Max", "Min", "Abs", "Eq", "Lt", "And", "Not", "FloorDiv", "Mod", "PythonMod", "CeilToInt",
          "ModularIndexing", "Where", "CleanDiv", "IntTrueDiv", "ToFloat", "Pow", "PowByNatural", "LShift", "RShift",
          "Integer", "Rational", "Float", "Symbol", "RoundDecimal", "TruncToInt", "sqrt", "Foo"]  # fmt: skip


def _call(parts: tuple[str, list[str]]) -> str:
    return f"{parts[0]}({', '.join(parts[1])})"


#: Well-formed expressions over torch's vocabulary, with hostile literals: what a grammar-aware
#: attacker writes (deep calls, big exponents and shifts), not only token soup.
_SYM_GRAMMAR: st.SearchStrategy[str] = st.recursive(
    st.one_of(
        st.sampled_from(["s0", "s1", "s23", "u0", "True", "False", "'x'", "oo", "zoo", "nan"]),
        st.integers(min_value=-(2**90), max_value=2**90).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", "//", "%"]), inner).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(_FUNCS), st.lists(inner, min_size=0, max_size=3)).map(_call),
        inner.map(lambda e: f"-{e}"),
    ),
    max_leaves=12,
)


@given(_SYM_GRAMMAR)
@example("Pow(9, Pow(9, 9))")
@example("LShift(1, 99999999)")
@example("PowByNatural(s0, 999999999999)")
@example("Symbol('s0', integer=True, positive=True) * 2")
def test_fuzz_symexpr_grammar(text: str) -> None:
    _symexpr(text)


_OWNERS = st.sampled_from(["owner", "o-w", "-lead", "a" * 40, "", "..", "0"])
_REPOS = st.sampled_from(["repo", "r.git", "..", ".", "a" * 101, "re po", "x%00"])
_REFS = st.sampled_from(["", ":v1.2", ":main", ":heads/main", ":tags/v1", ":" + "a" * 40, ":HEAD", ":@{-1}",
                         ":v1..v2", ":-x", ":a b", ":refs/tags/v1", ":pull/1/head", ":v1.lock", ":é"])  # fmt: skip
_HOSTS = st.sampled_from(["github.com", "127.0.0.1", "localhost", "[::1]", "user@host", "h:22", "-oProxy", "a..b", ""])


@given(
    st.one_of(
        st.tuples(_OWNERS, _REPOS, _REFS).map(lambda t: f"{t[0]}/{t[1]}{t[2]}"),
        st.tuples(
            st.sampled_from(["git+https://", "git+http://", "git+ssh://", "git+file://", "git+ftp://"]),
            _HOSTS,
            st.sampled_from(["/p/r.git", "/", "", "/../x", "/p?q#f"]),
            _REFS.map(lambda r: r.replace(":", "@", 1)),
        ).map("".join),
    )
)
def test_fuzz_spec_grammar(text: str) -> None:
    _spec(text)
