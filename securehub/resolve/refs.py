"""Ref syntax rules (SPEC section 3), checked before any network access.

A ref names a branch or a tag of the repository and nothing else. :func:`check_ref_syntax`
refuses everything that could make git (or a reader) pick a different object: commit ids,
GitHub's fork refs (``pull/N/head``), full ref names, revision expressions (``~``, ``^``,
``@{...}``, ``..``, ``:``) and names that git itself would reject.

A hex-looking name (``cafe``, ``1234``, a full SHA) may still be a real tag or branch, which
only the remote's advertisement can tell; :func:`looks_like_commit_id` lets the resolver refuse
it *after* ``ls-remote`` when no such branch or tag exists.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from securehub.errors import RefNotAllowed

__all__ = ["MAX_REF_LENGTH", "Namespace", "check_ref_syntax", "looks_like_commit_id"]

Namespace = Literal["heads", "tags"]

#: Refs longer than this are refused (git has no hard limit; nothing legitimate comes close).
MAX_REF_LENGTH = 255

_HEX = re.compile(r"[0-9a-fA-F]{4,64}")
# GitHub's and GitLab's refs for merge requests, including forks: never loadable by name.
_FORK_REF = re.compile(r"(pull|merge-requests)/\d+/(head|merge)", re.IGNORECASE)
_PSEUDO_REFS = frozenset({"HEAD", "FETCH_HEAD", "ORIG_HEAD", "MERGE_HEAD", "CHERRY_PICK_HEAD", "@"})
_FORBIDDEN_SUBSTRINGS: tuple[tuple[str, str], ...] = (
    ("..", "'..' (a revision range)"),
    ("~", "'~' (an ancestor expression)"),
    ("^", "'^' (a parent or peel expression)"),
    (":", "':' (a path or refspec separator)"),
    ("\\", "a backslash"),
    ("@{", "'@{' (a reflog expression)"),
    ("//", "'//' (an empty path component)"),
    ("?", "'?' (a glob character)"),
    ("*", "'*' (a glob character)"),
    ("[", "'[' (a glob character)"),
)
# Unicode categories refused anywhere in a ref: controls, format characters (bidi overrides,
# zero-width joiners - "Trojan Source" style spoofing), separators (every kind of whitespace).
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})

_HELP = "Name a branch or a tag of the repository (e.g. 'owner/repo:v1.2'); hub.lock pins the commit."


def _refuse(ref: str, why: str) -> RefNotAllowed:
    return RefNotAllowed(f"ref {ref!r} is not allowed: expected a branch or tag name, found {why}. {_HELP}")


def looks_like_commit_id(name: str) -> bool:
    """True for a full or abbreviated (>= 4 hex digits) commit id: such a ref is refused unless
    the remote advertises a branch or tag with exactly this name."""
    return _HEX.fullmatch(name) is not None


def check_ref_syntax(ref: str) -> tuple[str, Namespace | None]:
    """Check a ref as the user wrote it; return ``(bare_name, forced_namespace)``.

    ``heads/<name>`` and ``tags/<name>`` force the namespace (the way to disambiguate a name
    that is both a branch and a tag); otherwise the namespace is ``None``. Raises
    :class:`RefNotAllowed` for anything SPEC section 3 refuses. Guarantees the bare name is a
    valid git ref component path, contains no revision syntax, and is not ``pull/N/head``-like.
    The caller must still refuse a hex-looking name the remote does not advertise
    (:func:`looks_like_commit_id`).
    """
    if not isinstance(ref, str):
        raise TypeError(f"ref must be a str, not {type(ref).__name__}")
    _check_name(ref, ref)
    if ref.startswith("refs/"):
        raise _refuse(ref, "a full ref name ('refs/...'); write the branch or tag name alone")
    namespace: Namespace | None = None
    name = ref
    if ref.startswith("heads/"):
        namespace, name = "heads", ref[len("heads/") :]
    elif ref.startswith("tags/"):
        namespace, name = "tags", ref[len("tags/") :]
    if namespace is not None:
        if not name:
            raise _refuse(ref, f"an empty name after '{namespace}/'")
        _check_name(ref, name)
        if name.startswith("refs/"):
            raise _refuse(ref, "a full ref name after the namespace prefix")
    return name, namespace


def _check_name(original: str, name: str) -> None:
    if name == "":
        raise _refuse(original, "an empty ref")
    if len(name) > MAX_REF_LENGTH:
        raise _refuse(original, f"a ref of {len(name)} characters (limit {MAX_REF_LENGTH})")
    for ch in name:
        if unicodedata.category(ch) in _FORBIDDEN_CATEGORIES:
            raise _refuse(original, f"whitespace or a control/format character (U+{ord(ch):04X})")
    for needle, what in _FORBIDDEN_SUBSTRINGS:
        if needle in name:
            raise _refuse(original, what)
    if name in _PSEUDO_REFS:
        raise _refuse(original, f"the symbolic ref {name!r}; omit the ref to use the default branch")
    if _FORK_REF.fullmatch(name) or name.lower().startswith(("pull/", "merge-requests/")):
        raise _refuse(original, "a pull/merge request ref, which can carry commits from forks")
    if name.startswith("-"):
        raise _refuse(original, "a leading '-' (would be read as a git option)")
    if name.startswith("/") or name.endswith("/"):
        raise _refuse(original, "a leading or trailing '/'")
    if name.endswith("."):
        raise _refuse(original, "a trailing '.'")
    for component in name.split("/"):
        if component.startswith("."):
            raise _refuse(original, f"a path component starting with '.' ({component!r})")
        if component.endswith(".lock"):
            raise _refuse(original, f"a path component ending in '.lock' ({component!r})")
