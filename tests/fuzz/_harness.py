"""The one property every fuzz test checks, and the JSON-document strategies they share.

Property (issue 13, item 1): on any input a parser of untrusted data returns a
result or raises its documented error -- a ``SecureHubError`` or the parser's own
error type that every call site turns into one -- within a memory bound; the time
bound is the hypothesis ``deadline`` of the active profile. Any other exception
(``KeyError``, ``RecursionError``, ``OverflowError``, ``MemoryError`` ...) escapes
and fails the test: that is a parser bug, fixed in the parser, with a regression
case in ``tests/attacks/``.
"""

from __future__ import annotations

import json
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st

T = TypeVar("T")

#: examples run per parser name (read by the conftest and the security report).
COUNTS: Counter[str] = Counter()
#: per parser: outcome ("ok" or the error class name) -> count.
OUTCOMES: defaultdict[str, Counter[str]] = defaultdict(Counter)


#: the settings a pytest-xdist worker reported (the controller never loads the fuzz profiles).
_WORKER_SETTINGS: dict[str, Any] = {}


def stats(profile: str) -> dict[str, Any]:
    """The per-parser counts as the JSON document ``SECUREHUB_FUZZ_STATS`` names (read by the security report),
    with the bounds every example ran under (examples per test, deadline, heap bound)."""
    active = settings()
    deadline = active.deadline
    return {
        "profile": profile,
        "max_examples": _WORKER_SETTINGS.get("max_examples", active.max_examples),
        "deadline_ms": _WORKER_SETTINGS.get(
            "deadline_ms", None if deadline is None else int(deadline.total_seconds() * 1000)
        ),
        "memory_bound_bytes": DEFAULT_MEMORY_BOUND,
        "examples": dict(sorted(COUNTS.items())),
        "outcomes": {name: dict(sorted(o.items())) for name, o in sorted(OUTCOMES.items())},
    }


def merge(doc: dict[str, Any]) -> None:
    """Add the counts of another process's :func:`stats` document (a pytest-xdist worker's) to this one's."""
    COUNTS.update(doc["examples"])
    for key in ("max_examples", "deadline_ms"):
        if key in doc:
            _WORKER_SETTINGS[key] = doc[key]
    for name, outcomes in doc["outcomes"].items():
        OUTCOMES[name].update(outcomes)


#: Python-heap growth one parse may cause beyond the input it was given. The inputs are
#: capped at a few hundred KiB, so a parser that needs more is amplifying (a size
#: expression evaluated, a frame header allocated from its length prefix).
DEFAULT_MEMORY_BOUND = 64 << 20


def run_parser(
    name: str,
    call: Callable[[], T],
    allowed: tuple[type[BaseException], ...],
    *,
    memory_bound: int = DEFAULT_MEMORY_BOUND,
) -> T | None:
    """Run ``call``; return its result, or ``None`` when it raised one of ``allowed``.

    Anything else propagates (the test fails). The Python heap's peak growth during
    the call must stay under ``memory_bound`` bytes.
    """
    COUNTS[name] += 1
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base, _ = tracemalloc.get_traced_memory()
    outcome = "ok"
    try:
        return call()
    except allowed as exc:
        outcome = type(exc).__name__
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        if started:
            tracemalloc.stop()
        OUTCOMES[name][outcome] += 1
        grew = peak - base
        assert grew <= memory_bound, f"{name}: one parse grew the Python heap by {grew} bytes (bound {memory_bound})"


# --------------------------------------------------------------------------- JSON strategies

_HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -1, 0, 2**31, 9**99])
_WEIRD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "..",
        "../../etc/passwd",
        "/abs",
        "a" * 300,
        "\u202e",
        "\ud800x",
        "é",
        "🙂",
        "\\",
        "-x",
        "9**9**9",
    ]
)

#: JSON scalars, including the hostile ones a schema must bound.
json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    _HUGE_INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    _WEIRD_TEXT,
)

#: Arbitrary JSON values, bounded in size.
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=12), inner, max_size=4),
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _nest(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def mutated(draw: st.DrawFn, base: Any, *, max_mutations: int = 3) -> Any:
    """``base`` (a valid JSON document, deep-copied) with up to ``max_mutations`` structural mutations.

    Mutations: drop a key, duplicate-free rename of a key, replace a value by another
    JSON value (wrong type, huge number, hostile string), wrap a value in deep
    nesting, grow a list or string.
    """
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(min_value=0, max_value=max_mutations))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        target = _get(doc, path)
        kind = draw(st.sampled_from(["drop", "rename", "replace", "nest", "grow", "add"]))
        if not path:
            if kind == "replace":
                doc = draw(json_values)
            continue
        parent = _get(doc, path[:-1])
        key = path[-1]
        if kind == "drop":
            del parent[key]
        elif kind == "rename" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = parent.pop(key)
        elif kind == "replace":
            parent[key] = draw(json_values)
        elif kind == "nest":
            parent[key] = [_nest(draw(st.integers(min_value=1, max_value=400))), target]
        elif kind == "grow" and isinstance(target, list) and target:
            parent[key] = target * draw(st.integers(min_value=2, max_value=50))
        elif kind == "grow" and isinstance(target, str):
            parent[key] = target * draw(st.integers(min_value=2, max_value=200))
        elif kind == "add" and isinstance(target, dict):
            target[draw(st.text(max_size=12))] = draw(json_values)
    return doc


@st.composite
def json_bytes(draw: st.DrawFn, base: Any) -> bytes:
    """A mutated ``base`` serialised, then maybe truncated or byte-flipped (not valid JSON any more)."""
    data = json.dumps(draw(mutated(base)), sort_keys=draw(st.booleans())).encode("utf-8")
    how = draw(st.sampled_from(["keep", "keep", "keep", "truncate", "flip", "dupkey"]))
    if how == "truncate" and data:
        data = data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    elif how == "flip" and data:
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:i] + bytes([draw(st.integers(min_value=0, max_value=255))]) + data[i + 1 :]
    elif how == "dupkey" and data.startswith(b"{") and len(data) > 2:
        data = b'{"version": 1, ' + data[1:]
    return data
