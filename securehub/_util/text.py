"""Sanitising text that came from untrusted places before it reaches a terminal or a report."""

from __future__ import annotations

import re

# ANSI CSI and OSC sequences, C0/C1 controls (but \t and \n), and Unicode bidi/format characters
# (U+200B-U+200F, U+202A-U+202E, U+2066-U+2069, U+FEFF) that can reorder what a reader sees
# ("Trojan Source", CVE-2021-42574).
_CONTROL = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|[\x00-\x08\x0b-\x1f\x7f-\x9f]"
    r"|[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def clean(text: str, *, limit: int = 2000) -> str:
    """Strip ANSI/OSC escapes, control and bidi characters (keeps ``\\n`` and ``\\t``); cap the length.

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
