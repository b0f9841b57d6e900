"""Policy YAML: safe parsing with locations, and strict per-key validation.

Private to :mod:`securehub.config.policy`. Two stages, both pure (no I/O):

1. :func:`parse_yaml` turns policy text into a tree of :class:`YNode` values,
   each carrying the file and line it came from. It composes YAML with a
   ``SafeLoader`` subclass and never *constructs* arbitrary objects: only the
   plain YAML scalar types (null, bool, int, float, str) are converted, every
   other tag (``!!python/...``, ``!!binary``, ``!!set``, local ``!tags``) is
   refused. Anchors and aliases are refused as soon as the composer sees
   them, so an alias-expansion bomb ("billion laughs") costs nothing.
   Duplicate keys and non-string keys are refused.
2. :func:`validate_document` checks one document against :data:`SCHEMA`:
   unknown keys (with a "did you mean" suggestion), wrong types (a bool is
   never an int), out-of-range values, bad enum values, duplicates.

Every problem raises :class:`securehub.errors.PolicyInvalid` whose message
names the key path and the line, in the form::

    sandbox.timeout_s: expected an integer between 1 and 86400, found "ten" (p.yaml line 12); <what to do>
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, NoReturn, TypeAlias
from urllib.parse import urlsplit

import yaml
from yaml.events import AliasEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from securehub._util.net import is_loopback_host
from securehub.errors import PolicyInvalid

__all__ = [
    "BUILTIN_NAMES",
    "KIB",
    "MAX_POLICY_BYTES",
    "SCHEMA",
    "SECTIONS",
    "TIB",
    "Document",
    "Loc",
    "YNode",
    "fail",
    "from_plain",
    "is_loopback_host",
    "merge",
    "parse_yaml",
    "validate_document",
]

KIB: Final = 1024
GIB: Final = 1024**3
TIB: Final = 1024**4

#: Names that select a built-in policy instead of a path.
BUILTIN_NAMES: Final = ("strict", "default", "permissive")

#: A policy file larger than this is refused before it is parsed.
MAX_POLICY_BYTES: Final = 1024 * KIB

#: Deepest nesting a policy may use; the real schema needs 3 levels.
_MAX_DEPTH: Final = 16

_YAML_PREFIX: Final = "tag:yaml.org,2002:"
_TAG_NULL: Final = _YAML_PREFIX + "null"
_TAG_BOOL: Final = _YAML_PREFIX + "bool"
_TAG_INT: Final = _YAML_PREFIX + "int"
_TAG_FLOAT: Final = _YAML_PREFIX + "float"
_TAG_STR: Final = _YAML_PREFIX + "str"
_TAG_TIMESTAMP: Final = _YAML_PREFIX + "timestamp"
_TAG_SEQ: Final = _YAML_PREFIX + "seq"
_TAG_MAP: Final = _YAML_PREFIX + "map"
_TAG_MERGE: Final = _YAML_PREFIX + "merge"


# --------------------------------------------------------------------------
# Locations and the located tree
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Loc:
    """Where a value came from: the policy's source name and a 1-based line (0: no line)."""

    source: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} line {self.line}" if self.line > 0 else self.source


Raw: TypeAlias = "bool | int | float | str | list[YNode] | dict[str, Entry] | None"


@dataclass(frozen=True)
class YNode:
    """A parsed YAML value and its location. Mappings hold :class:`Entry` values."""

    value: Raw
    loc: Loc


@dataclass(frozen=True)
class Entry:
    """One ``key: value`` pair of a mapping: where the key was written, and the value."""

    key_loc: Loc
    node: YNode


def _show(value: object, limit: int = 60) -> str:
    """Render a found value for an error message, escaping anything a terminal could interpret."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit] + "..."
        return json.dumps(text)  # escapes control characters (ANSI escape injection)
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    return type(value).__name__


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _show_key(key: str) -> str:
    return key if _PLAIN_KEY.fullmatch(key) else json.dumps(key[:64])


def fail(path: str, loc: Loc, problem: str, hint: str) -> NoReturn:
    """Raise :class:`PolicyInvalid` in the one message format every policy error uses."""
    raise PolicyInvalid(f"{path}: {problem} ({loc}); {hint}")


def _fix(expected: str, node: YNode, path: str, hint: str = "correct the value in the policy file") -> NoReturn:
    fail(path, node.loc, f"expected {expected}, found {_show(node.value)}", hint)


# --------------------------------------------------------------------------
# Stage 1: YAML text -> located tree
# --------------------------------------------------------------------------


def _line(node_or_mark: Node | None) -> int:
    mark = getattr(node_or_mark, "start_mark", None)
    return int(mark.line) + 1 if mark is not None else 0


class _PolicyLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses anchors, aliases and deep nesting.

    The composer is the only stage used; objects are never constructed from
    tags by PyYAML (see :func:`_convert`). Refusing at compose time means an
    alias bomb is rejected at its first anchor, before any expansion exists.
    """

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text)
        self._source = source
        self._path: list[str] = []

    def _where(self) -> str:
        where = ""
        for part in self._path:
            where = where + part if not where or part.startswith("[") else f"{where}.{part}"
        return where or "(top level)"

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        component = self._component(parent, index)
        self._path.append(component)
        try:
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            loc = Loc(self._source, line)
            if isinstance(event, AliasEvent):
                fail(
                    self._where(),
                    loc,
                    f"YAML alias *{_show_key(event.anchor or '')} is refused: policies never need anchors "
                    "or aliases, and they enable alias-expansion (billion laughs) bombs",
                    "write the value out in full",
                )
            if isinstance(event, NodeEvent) and event.anchor is not None:
                fail(
                    self._where(),
                    loc,
                    f"YAML anchor &{_show_key(event.anchor)} is refused: policies never need anchors "
                    "or aliases, and they enable alias-expansion (billion laughs) bombs",
                    "remove the anchor and write values out in full",
                )
            if len(self._path) > _MAX_DEPTH:
                fail(
                    self._where(),
                    loc,
                    f"expected at most {_MAX_DEPTH} levels of nesting, found more",
                    "a policy is at most three levels deep; remove the extra nesting",
                )
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    @staticmethod
    def _component(parent: Node | None, index: object) -> str:
        if parent is None:
            return ""
        if isinstance(parent, SequenceNode):
            return f"[{index}]"
        if isinstance(index, ScalarNode):  # composing the value of a mapping entry
            return _show_key(str(index.value))
        return "(key)"


def parse_yaml(text: str, source: str) -> YNode | None:
    """Parse policy text into a located tree; ``None`` for an empty document.

    Guarantees: no object other than null/bool/int/float/str/list/dict is
    ever created; anchors, aliases, non-standard tags, merge keys, duplicate
    keys, non-string keys and multiple documents raise :class:`PolicyInvalid`.
    """
    # The loader is built inside the try: PyYAML's reader checks the whole text for
    # non-printable characters (NUL, C0 controls) when it is constructed, and a
    # ReaderError escaping from there would be a traceback instead of `policy-invalid`
    # (found by tests/fuzz/test_fuzz_policy.py).
    loader: _PolicyLoader | None = None
    try:
        loader = _PolicyLoader(text, source)
        root = loader.get_single_node()
        return None if root is None else _convert(root, loader, source, "")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "unparsable YAML"
        fail(
            "(yaml)",
            Loc(source, line),
            f"expected valid YAML, found a syntax error: {problem}",
            "fix the syntax",
        )
    except yaml.YAMLError as exc:
        fail("(yaml)", Loc(source, 0), f"expected valid YAML, found an error: {exc}", "fix the syntax")
    finally:
        if loader is not None:
            loader.dispose()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_YAML_PREFIX) :] if tag.startswith(_YAML_PREFIX) else tag


def _refuse_tag(node: Node, path: str, source: str) -> NoReturn:
    tag = _tag_name(node.tag)
    loc = Loc(source, _line(node))
    where = path or "(top level)"
    if tag.startswith("!!python/"):
        fail(
            where,
            loc,
            f"expected plain YAML data, found the tag {_show(tag)}: Python object tags are refused, "
            "a policy is data and never code",
            "remove the tag",
        )
    fail(
        where,
        loc,
        f"expected plain YAML data (strings, numbers, booleans, lists, mappings), found the tag {_show(tag)}",
        "remove the tag",
    )


def _convert(node: Node, loader: _PolicyLoader, source: str, path: str) -> YNode:
    loc = Loc(source, _line(node))
    if isinstance(node, ScalarNode):
        return YNode(_scalar(node, loader, source, path), loc)
    if isinstance(node, SequenceNode):
        if node.tag != _TAG_SEQ:
            _refuse_tag(node, path, source)
        items = [_convert(item, loader, source, f"{path}[{i}]") for i, item in enumerate(node.value)]
        return YNode(items, loc)
    if isinstance(node, MappingNode):
        if node.tag != _TAG_MAP:
            _refuse_tag(node, path, source)
        out: dict[str, Entry] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, source, path)
            key_loc = Loc(source, _line(key_node))
            child = _join(path, _show_key(key))
            if key in out:
                fail(
                    child,
                    key_loc,
                    f"expected each key once per mapping, found it again (first on line {out[key].key_loc.line})",
                    "remove one of the two; a YAML parser would otherwise silently keep the last one",
                )
            out[key] = Entry(key_loc, _convert(value_node, loader, source, child))
        return YNode(out, loc)
    fail(path or "(top level)", loc, f"expected plain YAML data, found a {type(node).__name__}", "remove it")


_KIND: Final = {_TAG_INT: "an integer", _TAG_FLOAT: "a float", _TAG_BOOL: "a boolean", _TAG_NULL: "null"}


def _key(node: Node, source: str, path: str) -> str:
    loc = Loc(source, _line(node))
    where = path or "(top level)"
    if isinstance(node, ScalarNode) and node.tag == _TAG_MERGE:
        fail(where, loc, "expected a plain key, found a YAML merge key '<<'", "write the keys out in full")
    if not isinstance(node, ScalarNode):
        fail(
            where,
            loc,
            "expected a string key, found a complex (list or mapping) key",
            "use a plain string key",
        )
    if node.tag != _TAG_STR:
        if node.tag.startswith(_YAML_PREFIX + "python/") or not node.tag.startswith(_YAML_PREFIX):
            _refuse_tag(node, path, source)
        fail(
            where,
            loc,
            f"expected a string key, found {_show_key(str(node.value))} "
            f"(read as {_KIND.get(node.tag, 'a non-string')})",
            "quote the key or correct it",
        )
    return str(node.value)


def _scalar(node: ScalarNode, loader: _PolicyLoader, source: str, path: str) -> bool | int | float | str | None:
    tag = node.tag
    try:
        if tag == _TAG_STR:
            return str(node.value)
        if tag == _TAG_TIMESTAMP:
            # An unquoted date such as 2024-01-01 is kept as the text written.
            return str(node.value)
        if tag == _TAG_NULL:
            return None
        if tag == _TAG_BOOL:
            return loader.construct_yaml_bool(node)
        if tag == _TAG_INT:
            return loader.construct_yaml_int(node)
        if tag == _TAG_FLOAT:
            return loader.construct_yaml_float(node)
    except (ValueError, KeyError, TypeError):
        fail(
            path or "(top level)",
            Loc(source, _line(node)),
            f"expected a valid {_tag_name(tag)} value, found {_show(str(node.value))}",
            "correct the value or drop the explicit tag",
        )
    _refuse_tag(node, path, source)


def from_plain(value: object, loc: Loc, path: str = "") -> YNode:
    """Build a located tree from plain Python data (for policies built in code).

    Tuples and lists become lists, mappings with string keys become mappings;
    anything else that is not a YAML scalar raises :class:`PolicyInvalid`.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return YNode(value, loc)
    if isinstance(value, list | tuple):
        return YNode([from_plain(v, loc, f"{path}[{i}]") for i, v in enumerate(value)], loc)
    if isinstance(value, Mapping):
        out: dict[str, Entry] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                fail(
                    path or "(top level)",
                    loc,
                    f"expected a string key, found {_show(key)}",
                    "use string keys",
                )
            out[key] = Entry(loc, from_plain(item, loc, _join(path, _show_key(key))))
        return YNode(out, loc)
    fail(path or "(top level)", loc, f"expected plain data, found a {type(value).__name__}", "use plain data")


# --------------------------------------------------------------------------
# Stage 2: validators
# --------------------------------------------------------------------------

Validator: TypeAlias = Callable[[YNode, str], object]


def _v_bool(node: YNode, path: str) -> bool:
    if not isinstance(node.value, bool):
        _fix("true or false", node, path)
    return node.value


def _v_int(lo: int, hi: int) -> Validator:
    def check(node: YNode, path: str) -> int:
        value = node.value
        # bool is a subclass of int in Python; `memory_mb: true` is a mistake, not 1.
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            _fix(f"an integer between {lo} and {hi}", node, path)
        return value

    return check


def _suggest(word: str, choices: Iterator[str] | tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def _v_enum(*choices: str) -> Validator:
    listed = ", ".join(repr(c) for c in choices)

    def check(node: YNode, path: str) -> str:
        value = node.value
        if not isinstance(value, str) or value not in choices:
            hint = _suggest(value, choices) if isinstance(value, str) else ""
            if isinstance(value, bool):
                hint = "YAML reads unquoted yes/no/on/off/true/false as a boolean; write one of the words above"
            _fix(f"one of {listed}", node, path, hint or "use one of the listed values")
        return value

    return check


def _v_outputs(node: YNode, path: str) -> str:
    """``lock.outputs``: required | verify | off; an unquoted ``off`` is accepted too.

    YAML 1.1 reads an unquoted ``off`` as the boolean false, and SPEC section 8
    spells the value ``off``: refusing what the contract documents would only
    teach users to weaken other keys. Only ``false`` maps to ``off`` (the
    fail-open direction is never guessed: ``true``/``on``/``yes`` are errors).
    """
    if node.value is False:
        return "off"
    value = _v_enum("required", "verify", "off")(node, path)
    assert isinstance(value, str)  # noqa: S101 - narrowed by the validator above
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _v_text(what: str) -> Validator:
    def check(node: YNode, path: str) -> str:
        value = node.value
        if not isinstance(value, str) or not value.strip() or _CONTROL.search(value):
            _fix(f"{what} (a non-empty string without control characters)", node, path)
        return value

    return check


_v_glob = _v_text("a glob pattern")

_PORT_SUFFIX = re.compile(r"[^:\[\]]+:\d*")


def _v_host_glob(node: YNode, path: str) -> str:
    value = _v_text("a host name glob such as '*.example.com'")(node, path)
    assert isinstance(value, str)  # noqa: S101 - narrowed by the validator above
    if "/" in value or "@" in value or any(c.isspace() for c in value):
        _fix(
            "a host name glob such as '*.example.com' (no scheme, path or user)",
            node,
            path,
            "write only the host part of the URL",
        )
    if value.startswith("[") or _PORT_SUFFIX.fullmatch(value):
        _fix(
            "a host name glob without port or brackets",
            node,
            path,
            "ports are ignored when hosts are matched; write the host only",
        )
    return value


def _v_list(item: Validator, *, unique: bool = False, non_empty: bool = False) -> Validator:
    def check(node: YNode, path: str) -> tuple[object, ...]:
        if not isinstance(node.value, list):
            _fix("a list", node, path, "write a YAML list, e.g. [a, b]")
        if non_empty and not node.value:
            _fix("a non-empty list", node, path, "list at least one value")
        out: list[object] = []
        for i, child in enumerate(node.value):
            value = item(child, f"{path}[{i}]")
            if unique and value in out:
                fail(
                    f"{path}[{i}]",
                    child.loc,
                    f"expected each value once, found {_show(value)} twice",
                    "remove the duplicate",
                )
            out.append(value)
        return tuple(out)

    return check


def _url_host(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if not host or parts.username is not None or parts.password is not None:
        return None
    return parts.scheme.lower(), host


def _v_mirrors(node: YNode, path: str) -> dict[str, str]:
    if not isinstance(node.value, dict):
        _fix(
            "a mapping of URL prefix to replacement prefix",
            node,
            path,
            'e.g. {"https://download.pytorch.org/": "https://mirror.example.com/pytorch/"}',
        )
    out: dict[str, str] = {}
    for prefix, entry in node.value.items():
        child = f"{path}[{json.dumps(prefix[:80])}]"
        origin = _url_host(prefix)
        if origin is None or origin[0] not in ("http", "https") or _CONTROL.search(prefix):
            fail(
                child,
                entry.key_loc,
                f"expected an http(s) URL prefix with a host as key, found {_show(prefix)}",
                'write the original URL prefix, e.g. "https://download.pytorch.org/"',
            )
        target = _v_text("a replacement URL prefix")(entry.node, child)
        assert isinstance(target, str)  # noqa: S101 - narrowed by the validator above
        dest = _url_host(target)
        if dest is None or not (dest[0] == "https" or (dest[0] == "http" and is_loopback_host(dest[1]))):
            _fix(
                "an https:// URL prefix (plain http:// only for loopback hosts)",
                entry.node,
                child,
                "plain http is allowed only to 127.0.0.0/8, ::1 or localhost",
            )
        out[prefix] = target
    return out


def _v_public_key(node: YNode, path: str) -> str:
    value = node.value
    raw: bytes | None = None
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raw = None
    if raw is None or len(raw) != 32:
        found = "" if raw is None else f" (decodes to {len(raw)} bytes)"
        fail(
            path,
            node.loc,
            f"expected the base64 of a raw 32-byte Ed25519 public key, found {_show(value)}{found}",
            "paste the content of the PREFIX.pub file written by `securehub keygen PREFIX`",
        )
    return value.strip() if isinstance(value, str) else ""


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _v_module(node: YNode, path: str) -> str:
    value = node.value
    if not isinstance(value, str) or not _MODULE_NAME.fullmatch(value):
        _fix("a dotted Python module name such as 'torchvision.models'", node, path)
    return value


def _v_version(node: YNode, path: str) -> int:
    value = node.value
    if not isinstance(value, int) or isinstance(value, bool) or value != 1:
        _fix("1 (the only policy format version this securehub understands)", node, path, "write 'version: 1'")
    return value


def _v_extends(node: YNode, path: str) -> str:
    value = _v_text("a built-in policy name (strict, default, permissive) or a path to a YAML file")(node, path)
    assert isinstance(value, str)  # noqa: S101 - narrowed by the validator above
    return value


_MIB_CAP: Final = 1024 * 1024  # 1 TiB expressed in MiB

#: section -> key -> validator. The dataclasses in securehub.config.policy mirror this table.
SCHEMA: Final[Mapping[str, Mapping[str, Validator]]] = {
    "repos": {
        "allow": _v_list(_v_glob),
        "deny": _v_list(_v_glob),
        "local": _v_bool,
        "max_files": _v_int(1, 10_000_000),
        "max_tree_bytes": _v_int(1, TIB),
        "git_timeout_s": _v_int(1, 86400),
        "git_memory_mb": _v_int(64, _MIB_CAP),
    },
    "refs": {
        "allow": _v_enum("tags", "branches", "any"),
        "tag_pattern": _v_glob,
    },
    "lock": {
        "mode": _v_enum("required", "auto", "optional"),
        "outputs": _v_outputs,
    },
    "artifacts": {
        "hosts": _v_list(_v_host_glob),
        "formats": _v_list(_v_enum("safetensors", "pickle"), unique=True, non_empty=True),
        "max_bytes": _v_int(1, TIB),
        "mirrors": _v_mirrors,
        "pickle_in_parent": _v_bool,
        "download_timeout_s": _v_int(1, 86400),
    },
    "signatures": {
        "trusted_keys": _v_list(_v_public_key, unique=True),
    },
    "sandbox": {
        "network": _v_enum("deny", "allow"),
        "filesystem": _v_enum("confined", "open"),
        "isolation": _v_enum("require", "best-effort"),
        "memory_mb": _v_int(1, _MIB_CAP),
        "cpu_s": _v_int(1, 86400),
        "timeout_s": _v_int(1, 86400),
        "max_output_mb": _v_int(1, _MIB_CAP),
        "max_procs": _v_int(1, 65536),
        "max_open_files": _v_int(16, 1_048_576),
        "max_file_mb": _v_int(1, _MIB_CAP),
    },
    "reconstruct": {
        "strategies": _v_list(_v_enum("trusted", "export", "source"), unique=True, non_empty=True),
        "trusted_modules": _v_list(_v_module, unique=True),
        "export_sizes": _v_enum("batch", "any"),
    },
}

SECTIONS: Final = tuple(SCHEMA)
_TOP_KEYS: Final = ("version", "extends", *SECTIONS)


def _unknown_key(key: str, known: tuple[str, ...], path: str, loc: Loc) -> NoReturn:
    hint = _suggest(key, known)
    if not hint and not path:
        # A nested key written at the top level, e.g. `network: allow`.
        homes = [s for s, keys in SCHEMA.items() if key in keys]
        if homes:
            hint = f"{key!r} belongs in section {homes[0]!r}"
    known_list = ", ".join(known)
    fail(
        _join(path, _show_key(key)),
        loc,
        f"expected one of the known keys ({known_list}), found an unknown key",
        hint or "remove it or fix its spelling; unknown keys are refused so a typo never weakens a rule",
    )


@dataclass(frozen=True)
class Document:
    """One validated policy file: the keys it sets (validated values) and its ``extends``."""

    source: str
    sections: Mapping[str, Mapping[str, object]]
    extends: tuple[str, Loc] | None


def validate_document(root: YNode | None, source: str) -> Document:
    """Validate one parsed document; raise :class:`PolicyInvalid` on the first problem.

    Only keys present in the document appear in ``sections``; defaults and
    ``extends`` are applied by the caller.
    """
    if root is None:
        fail(
            "(top level)",
            Loc(source, 1),
            "expected a mapping starting with 'version: 1', found an empty document",
            "write a policy, or use a built-in one (strict, default, permissive)",
        )
    if not isinstance(root.value, dict):
        fail(
            "(top level)",
            root.loc,
            f"expected a mapping of policy sections, found {_show(root.value)}",
            "the policy must be a YAML mapping starting with 'version: 1'",
        )
    top = root.value
    for key, entry in top.items():
        if key not in _TOP_KEYS:
            _unknown_key(key, _TOP_KEYS, "", entry.key_loc)
    if "version" not in top:
        fail(
            "version",
            root.loc,
            "expected the key 'version: 1', found it missing",
            "add 'version: 1' at the top",
        )
    _v_version(top["version"].node, "version")
    extends: tuple[str, Loc] | None = None
    if "extends" in top:
        ext = top["extends"].node
        extends = (_v_extends(ext, "extends"), ext.loc)
    sections: dict[str, dict[str, object]] = {}
    for section, keys in SCHEMA.items():
        if section not in top:
            continue
        node = top[section].node
        if not isinstance(node.value, dict):
            _fix(
                f"a mapping of {section} settings",
                node,
                section,
                "write the section as a mapping, e.g. '{}' for no settings",
            )
        values: dict[str, object] = {}
        for key, entry in node.value.items():
            if key not in keys:
                _unknown_key(key, tuple(keys), section, entry.key_loc)
            values[key] = keys[key](entry.node, f"{section}.{key}")
        sections[section] = values
    return Document(source, sections, extends)


def merge(
    parent: Mapping[str, Mapping[str, object]], child: Mapping[str, Mapping[str, object]]
) -> dict[str, dict[str, object]]:
    """Overlay ``child`` on ``parent`` section by section, key by key (child values win)."""
    out: dict[str, dict[str, object]] = {section: dict(values) for section, values in parent.items()}
    for section, values in child.items():
        out.setdefault(section, {}).update(values)
    return out
