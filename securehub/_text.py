"""Sanitising text that came from untrusted places before it reaches a terminal or a report."""

from __future__ import annotations

import re

_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
)


def clean(text: str, *, limit: int = 2000) -> str:
    """Strip ANSI/OSC escapes and control characters (keeps ``\\n`` and ``\\t``); cap the length.

    Names and messages from repos, servers and the sandbox child reach
    terminals and reports; an escape sequence there could rewrite what the
    user sees (threats.md: terminal escape injection).
    """
    out = _CONTROL.sub("", text)
    if len(out) > limit:
        out = out[:limit] + f"... [{len(out) - limit} more characters]"
    return out


def one_line(text: str, *, limit: int = 2000) -> str:
    """:func:`clean`, with newlines and tabs folded into spaces."""
    return " ".join(clean(text, limit=limit).split())
