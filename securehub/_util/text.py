"""The one sanitiser for text from untrusted places before it reaches a terminal, a report or an error.

Names and messages from repos, servers and the sandbox child reach terminals
and reports; an escape sequence there could rewrite what the user sees
(threats.md: terminal escape injection), and bidi/format characters can
reorder it ("Trojan Source", CVE-2021-42574). :func:`sanitize` guarantees its
result:

* holds no ANSI escape sequence: CSI (``ESC [``), OSC (``ESC ]``, terminated
  or not -- an unterminated one runs up to the next ``ESC`` or the end) and
  every other ``ESC`` sequence (intermediates, then one final byte: ``ESC 7``,
  ``ESC c``, ``ESC ( 0``);
* holds no C0 control but ``\\n`` (and that only with ``keep_newlines``; a tab
  becomes four spaces, ``\\r\\n`` one ``\\n``), no DEL, no C1 control, no
  bidi embedding/override/isolate, zero-width or BOM character (U+200B-U+200F,
  U+202A-U+202E, U+2066-U+2069, U+FEFF), no line/paragraph separator
  (U+2028, U+2029) and no lone surrogate;
* shows what it took out (``reveal``, the default): each such character is
  written as its Python escape (``\\x1b``, ``\\u202e``, ``\\x00``), so an escape
  sequence reads ``\\x1b]52;c;...\\x07`` and the user sees that a clipboard
  write was attempted instead of a message with pieces silently missing. The
  result holds only printable characters, so sanitising it again changes
  nothing. ``reveal=False`` drops them instead (whole escape sequences
  included): for git output, whose secret redaction relies on a token split
  by a control character being rejoined (:func:`securehub.resolve.git.sanitize_git_output`);
* without ``keep_newlines`` is one line: ``\\n``, ``\\r``, vertical tab, form feed
  and U+2028/U+2029 count as white space and every run of white space
  becomes one space;
* has no leading or trailing white space and is at most ``limit`` characters,
  ending in ``" ...[truncated]"`` when it was cut.

This merges two sanitisers that had drifted apart (``sandbox.messages`` and
this module); wherever they differed the stricter rule won: the escape
patterns (widened to every ESC sequence) and the hard length cap of the first,
the zero-width/BOM characters of the second, tabs expanded, U+2028/U+2029 added.
"""

from __future__ import annotations

import re

__all__ = ["clean", "has_hidden", "one_line", "sanitize"]

# CSI, OSC (terminated or not), and every other ESC sequence (ECMA-35/48: intermediates 0x20-0x2F,
# then one final 0x30-0x7E; e.g. ESC 7, ESC c, ESC ( 0), so no escape keeps a visible tail.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])")
# \n is deliberately absent: it is handled by the caller's choice of mode.
# Lone surrogates (U+D800-U+DFFF: a JSON "\\ud800" escape decodes to one) cannot be encoded as UTF-8:
# printing a message holding one raises UnicodeEncodeError (red team 8).
_INVISIBLE = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
# What one_line folds into white space when revealing: line breaks, not hidden characters.
_LINE_BREAKS = re.compile(r"[\n\r\x0b\x0c\u2028\u2029]")
_TRUNCATED = " ...[truncated]"
# What an identifier-like value (a URL, a file name, a repo spec) may never hold: every character
# sanitize() removes (newline and tab included), plus the invisible format characters U+2060-U+206F
# (word joiner, invisible operators) that would make two different values look the same.
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")


def sanitize(text: str, *, limit: int, keep_newlines: bool, reveal: bool = True) -> str:
    """``text`` made safe to show (see the module docstring for the guarantees)."""
    if not reveal:
        text = _ESCAPE.sub("", text)
        if keep_newlines:
            text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\t", "    "))
        else:
            text = " ".join(_INVISIBLE.sub(" ", text).split())
        return _cap(text.strip(), limit)
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    if not keep_newlines:
        text = " ".join(_LINE_BREAKS.sub(" ", text).split())
    return _cap(_INVISIBLE.sub(_shown, text).strip(), limit)


def _shown(match: re.Match[str]) -> str:
    """The Python escape of one removed character: ``\\x1b``, ``\\x9b``, ``\\u202e``, ``\\ud800``."""
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def has_hidden(text: str) -> bool:
    """True when ``text`` holds a control, bidi, zero-width, BOM, line-separator or invisible format character.

    For values that are identifiers rather than prose (URLs, file names, repo
    specs): they are refused, not cleaned, since a cleaned value would name
    something else. Nothing in a legitimate URL needs these (it percent-encodes).
    """
    return _HIDDEN.search(text) is not None


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= len(_TRUNCATED):
        return text[:limit]
    return text[: limit - len(_TRUNCATED)] + _TRUNCATED


def clean(text: str, *, limit: int = 2000, reveal: bool = True) -> str:
    """:func:`sanitize` keeping line breaks."""
    return sanitize(text, limit=limit, keep_newlines=True, reveal=reveal)


def one_line(text: str, *, limit: int = 2000, reveal: bool = True) -> str:
    """:func:`sanitize` folding everything onto one line."""
    return sanitize(text, limit=limit, keep_newlines=False, reveal=reveal)
