"""Frame types and schemas of the sandbox conversation (on top of :mod:`.protocol`).

Conversation (P = parent, C = child)::

    C -> P  ready    {isolation}                      (sent by the bootstrap)
    P -> C  call     CallRequest.to_meta()            body: example inputs (safetensors) or empty
    C -> P  fetch    FetchRequest.to_meta()           0..n times, each answered by
    P -> C  fetched  {"path": str, "sha256": str}     or  error {"code", "message"}
    C -> P  names    {"names": [str]}                 (op "list")       -- final
    C -> P  doc      {"doc": str | null}              (op "help")       -- final
    C -> P  export   ExportInfo meta                  body: exported program JSON (op "load", optional)
    C -> P  nested_load    NestedRequest.to_meta()    0..n times (op "load"), each answered by
    P -> C  nested_export  ExportInfo meta            body: program JSON (optional), then
    P -> C  nested_result  {"config", "trusted_modules", "strategies"}   body: state safetensors
                                                      or  error {"code", "message"}
    C -> P  result   {"config": CONFIG, "found_inputs"?: [{"shape", "dtype"}]}
                                                      body: state dict safetensors (op "load") -- final
    C -> P  converted  ConvertLayout meta             body: checkpoint tensors, safetensors (op "convert") -- final
    C -> P  error    {"code", "message", "fetch_error"?: int}   -- final

Op ``convert`` (:func:`securehub.pipeline.convert.convert_in_sandbox`) runs no
hubconf: the parent hands the child one verified pickle checkpoint (``file``,
a read-only path in the call's hand-off directory), the child
``torch.load``-s it with ``weights_only=True`` and answers ``converted`` (or
``error`` with a code in :data:`CONVERT_ERROR_CODES`). No ``fetch`` or
``nested_load`` is answered during a ``convert``.

``fetch`` and ``nested_load`` requests share one index space (0, 1, 2, ...
in the order the child sent them); ``fetch_error`` names the request whose
refusal the child hands back, whichever kind it was.

Everything parsed here on the parent side comes from hostile code: the
``parse_*`` functions check types, sizes and allowed values and raise
:class:`~securehub.errors.SandboxProtocol` on anything else. Text that can
reach a terminal or a report is passed through :func:`sanitize_text`.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from securehub._util.canonical import canonical_json
from securehub._util.strict_json import JsonLimits
from securehub._util.text import has_hidden, sanitize
from securehub.config.lockfile import MAX_EXAMPLE_INPUTS, InputSpec, example_inputs_total_problem
from securehub.errors import SandboxProtocol, SecureHubError, error_for_code
from securehub.sandbox.wire.protocol import MAX_JSON_DEPTH, FrameLimits

__all__ = [
    "FIND_INPUTS_MODES",
    "FOUND_INPUTS",
    "FindInputs",
    "CALL",
    "CHILD_ERROR_CODES",
    "CHILD_FRAME_LIMITS",
    "COMPILED_EXPORT_ERROR",
    "CONFIG_FORMAT",
    "CONFIG_JSON_LIMITS",
    "CONTAINER_KINDS",
    "CONVERTED",
    "CONVERT_ERROR_CODES",
    "CONVERT_FORMAT",
    "CONVERT_INT_MAX",
    "CONVERT_INT_MIN",
    "MAX_CONVERT_CONTAINERS",
    "MAX_CONVERT_EXTRAS_BYTES",
    "MAX_CONVERT_NAME_CHARS",
    "MAX_CONVERT_REFS",
    "DOC",
    "ERROR",
    "EXPORT",
    "EXPORT_FORMAT",
    "FETCH",
    "FETCHED",
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_ITEMS",
    "MAX_CONFIG_STR_BYTES",
    "MAX_DOC_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_NESTED_ARGS_BYTES",
    "MAX_NESTED_DEPTH",
    "NAMES",
    "NESTED_EXPORT",
    "NESTED_LOAD",
    "NESTED_RESULT",
    "NESTED_STRATEGIES",
    "RESERVED_NESTED_KWARGS",
    "NONPERSISTENT_PREFIX",
    "EXPORT_CONSTANT_PREFIX",
    "EXPORT_STATE_PREFIX",
    "RELAYABLE_CODES",
    "RESULT",
    "CallRequest",
    "ConvertContainer",
    "ConvertLayout",
    "ConvertRef",
    "ExportInfo",
    "FetchRequest",
    "NestedRequest",
    "Op",
    "frame_limits_for",
    "decode_extra",
    "encode_extra",
    "parse_convert",
    "parse_doc",
    "parse_error",
    "parse_export",
    "parse_names",
    "parse_found_inputs",
    "parse_result_config",
    "sanitize_text",
    "unreferenced_export_keys",
]

CALL = "call"
FETCH = "fetch"
FETCHED = "fetched"
NAMES = "names"
DOC = "doc"
EXPORT = "export"
RESULT = "result"
ERROR = "error"
NESTED_LOAD = "nested_load"
NESTED_EXPORT = "nested_export"
NESTED_RESULT = "nested_result"
CONVERTED = "converted"

CONFIG_FORMAT = "securehub-config/1"
EXPORT_FORMAT = "securehub-export/1"
CONVERT_FORMAT = "securehub-convert/1"

#: safetensors key prefix for non-persistent buffers (not in ``state_dict()``).
NONPERSISTENT_PREFIX = "__nonpersistent__."
#: safetensors key prefix for ExportedProgram state entries that differ from the module's state.
EXPORT_STATE_PREFIX = "__export_state__."
#: safetensors key prefix for ExportedProgram tensor constants.
EXPORT_CONSTANT_PREFIX = "__export_constant__."
#: How a result config's ``export_error`` starts when the entrypoint returned a ``torch.compile``'d module
#: (no forward pass is run on it in the sandbox: the first call starts inductor's C++ compiler)
COMPILED_EXPORT_ERROR = "the entrypoint returned a torch.compile'd module"

#: Codes a child may report on its own.
CHILD_ERROR_CODES: frozenset[str] = frozenset(
    {
        "entrypoint-error",
        "entrypoint-not-found",
        "dependency-missing",
        "sandbox-violation",
        "reconstruct-refused",
    }
)
#: Codes a broker error may carry, which the parent sends to the child and the
#: child may hand back (only together with ``fetch_error`` naming that fetch).
RELAYABLE_CODES: frozenset[str] = frozenset(
    {
        "not-locked",
        "hash-mismatch",
        "artifact-not-allowed",
        "unsafe-pickle",
        "format-not-allowed",
        "network",
        "offline",
        "signature-invalid",
        "lock-invalid",
    }
)

#: Codes a child may report during op ``convert``: the checkpoint is not one
#: ``torch.load(weights_only=True)`` accepts or not one that travels as
#: safetensors + JSON (``format-not-allowed``), or loading it attempted a
#: forbidden action (``sandbox-violation``).
CONVERT_ERROR_CODES: frozenset[str] = frozenset({"format-not-allowed", "sandbox-violation"})

#: Container kinds a converted checkpoint may hold (``odict``: ``collections.OrderedDict``).
CONTAINER_KINDS: tuple[str, ...] = ("dict", "odict", "list", "tuple")
#: Caps on a converted checkpoint's structure (both sides enforce them).
MAX_CONVERT_CONTAINERS = 200_000
MAX_CONVERT_REFS = 1_000_000
MAX_CONVERT_NAME_CHARS = 4096
#: Cap on the ``extras`` mapping (non-tensor leaves) as compact UTF-8 JSON.
MAX_CONVERT_EXTRAS_BYTES = 4 * 1024 * 1024
#: Integers (extras values and dict keys) must lie in [CONVERT_INT_MIN, CONVERT_INT_MAX].
CONVERT_INT_MIN = -(2**63)
CONVERT_INT_MAX = 2**64 - 1

MAX_MESSAGE_CHARS = 2000
MAX_DOC_CHARS = 200_000
MAX_NAMES = 10_000
MAX_NAME_CHARS = 256
MAX_URL_CHARS = 8192
MAX_CONFIG_NODES = 200_000

#: Nested ``torch.hub.load`` calls may go this many levels below the user's own load.
MAX_NESTED_DEPTH = 3
#: Cap on a nested request's ``args`` + ``kwargs`` as compact JSON.
MAX_NESTED_ARGS_BYTES = 64 * 1024
MAX_NESTED_ITEMS = 10_000
#: Keyword names a nested request may not pass to the entrypoint: they are the
#: parameters of ``torch.hub.load``/``securehub.load`` themselves. A child that
#: could send ``policy="permissive"`` or ``lock=...`` as an "entrypoint kwarg"
#: would otherwise choose the trust settings of the nested load.
RESERVED_NESTED_KWARGS: frozenset[str] = frozenset(
    {
        "repo_or_dir",
        "model",
        "source",
        "policy",
        "lock",
        "force_reload",
        "verbose",
        "example_inputs",
        "trust_repo",
        "skip_validation",
    }
)
#: Strategies the child may use to rebuild a nested model: never ``source``
#: (the child cannot read the nested tree, and it would run that repo's code).
NESTED_STRATEGIES: tuple[str, ...] = ("trusted", "export")

Op = Literal["load", "list", "help", "convert"]

#: ``CallRequest.find_inputs``: ``off`` -- no search; ``auto`` -- the user asked for
#: ``--example-input auto``: search, export with the inputs found, report them; ``hint`` -- the
#: parent has no example inputs and would refuse a repo-defined class: search with forward
#: passes only (no export) so the refusal can name a working ``--example-input``.
FindInputs = Literal["off", "auto", "hint"]
FIND_INPUTS_MODES: tuple[str, ...] = ("off", "auto", "hint")
#: What an export may leave symbolic (policy ``reconstruct.export_sizes``).
EXPORT_SIZES_MODES: tuple[str, ...] = ("batch", "any")

_KiB = 1024
_MiB = 1024 * 1024

#: Bounds on the child's module config (the ``result`` frame's ``config``,
#: and the same document read back from the result cache). Sized for real
#: models: a config costs a few dozen values per module, so this allows tens
#: of thousands of modules while a hostile config costs the parent at most a
#: few hundred MB of Python objects. Depth is that of the frame meta.
MAX_CONFIG_BYTES = 16 * _MiB
MAX_CONFIG_ITEMS = 500_000
MAX_CONFIG_STR_BYTES = 1 * _MiB
CONFIG_JSON_LIMITS = JsonLimits(MAX_CONFIG_BYTES, MAX_JSON_DEPTH, MAX_CONFIG_ITEMS, MAX_CONFIG_STR_BYTES)
_UNBOUNDED_BODY = 1 << 62  # result/converted bodies: bounded by the call's output budget instead

#: What each frame type the child may send can cost the parent, checked on the
#: length prefix before the header is read (protocol.FrameLimits). Requests are
#: small; only the final result carries a large header (the config). A request
#: cannot borrow the result's allowance (red-team finding 4c: one 60 MB
#: ``fetch`` header cost the parent 1.5 GiB when every type shared 64 MiB).
CHILD_FRAME_LIMITS: Mapping[str, FrameLimits] = {
    FETCH: FrameLimits(header_bytes=64 * _KiB, max_items=64, max_str_bytes=48 * _KiB, max_depth=2),
    NESTED_LOAD: FrameLimits(header_bytes=256 * _KiB, max_items=MAX_NESTED_ITEMS + 64, max_depth=40),
    ERROR: FrameLimits(header_bytes=512 * _KiB, max_items=16, max_str_bytes=448 * _KiB, max_depth=2),
    NAMES: FrameLimits(header_bytes=4 * _MiB, max_items=MAX_NAMES + 8, max_str_bytes=4 * _KiB, max_depth=2),
    DOC: FrameLimits(header_bytes=2 * _MiB, max_items=8, max_str_bytes=2 * _MiB, max_depth=2),
    EXPORT: FrameLimits(
        header_bytes=16 * _MiB,
        body_bytes=512 * _MiB,
        max_items=MAX_CONFIG_ITEMS,
        max_str_bytes=64 * _KiB,
        max_depth=4,
    ),
    RESULT: FrameLimits(
        header_bytes=MAX_CONFIG_BYTES + 64 * _KiB,
        body_bytes=_UNBOUNDED_BODY,
        max_items=MAX_CONFIG_ITEMS,
        max_str_bytes=MAX_CONFIG_STR_BYTES,
    ),
    CONVERTED: FrameLimits(
        header_bytes=64 * _MiB,
        body_bytes=_UNBOUNDED_BODY,
        max_items=4 * MAX_CONVERT_REFS + 8 * MAX_CONVERT_CONTAINERS,
        max_str_bytes=MAX_CONVERT_EXTRAS_BYTES,
        max_depth=6,
    ),
}

_OP_FRAMES: Mapping[str, tuple[str, ...]] = {
    "load": (FETCH, NESTED_LOAD, EXPORT, RESULT, ERROR),
    "list": (NAMES, ERROR),
    "help": (DOC, ERROR),
    "convert": (CONVERTED, ERROR),
}


def frame_limits_for(op: Op) -> Mapping[str, FrameLimits]:
    """The frame types a child may send during ``op``, each with its :data:`CHILD_FRAME_LIMITS`."""
    return {name: CHILD_FRAME_LIMITS[name] for name in _OP_FRAMES[op]}


def sanitize_text(text: str, *, limit: int = MAX_MESSAGE_CHARS, keep_newlines: bool = False) -> str:
    """Show ANSI escapes, control, bidi and zero-width characters as inert escapes; cap at ``limit`` chars.

    The one sanitiser, :func:`securehub._util.text.sanitize` (its docstring
    states the guarantees), with this protocol's message cap as the default.
    """
    return sanitize(text, limit=limit, keep_newlines=keep_newlines)


def _str_field(meta: Mapping[str, Any], key: str, *, limit: int, optional: bool = False) -> str | None:
    value = meta.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise SandboxProtocol(f"frame key {key!r} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise SandboxProtocol(f"frame key {key!r} is {len(value)} chars long; the cap is {limit}")
    return value


def _exact_keys(meta: Mapping[str, Any], required: set[str], optional: set[str], what: str) -> None:
    missing = required - set(meta)
    extra = set(meta) - required - optional
    if missing or extra:
        raise SandboxProtocol(
            f"{what} frame keys: missing {sorted(missing)}, unexpected {sorted(extra)}; "
            "the sandbox child is broken or hostile"
        )


# --------------------------------------------------------------------------- call (parent -> child)


@dataclass(frozen=True)
class CallRequest:
    """What the child is asked to do. ``args``/``kwargs`` are JSON values.

    ``tree`` is the repo tree for ``load``/``list``/``help`` and ``""`` for
    ``convert``; ``file`` is the checkpoint to convert (``convert`` only).
    """

    op: Op
    tree: str
    entrypoint: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    want_export: bool = False
    has_example_inputs: bool = False
    network_allowed: bool = False
    filesystem_open: bool = False
    file: str | None = None
    find_inputs: FindInputs = "off"
    export_sizes: str = "batch"

    def to_meta(self) -> dict[str, Any]:
        """The ``call`` frame's meta."""
        return {
            "op": self.op,
            "tree": self.tree,
            "file": self.file,
            "entrypoint": self.entrypoint,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "want_export": self.want_export,
            "has_example_inputs": self.has_example_inputs,
            "network_allowed": self.network_allowed,
            "filesystem_open": self.filesystem_open,
            "find_inputs": self.find_inputs,
            "export_sizes": self.export_sizes,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> CallRequest:
        """Parse (child side). Raises ``ValueError`` on a malformed request."""
        op = meta.get("op")
        if op not in ("load", "list", "help", "convert"):
            raise ValueError(f"call op must be load/list/help/convert, got {op!r}")
        tree = meta.get("tree")
        entrypoint = meta.get("entrypoint")
        args = meta.get("args")
        kwargs = meta.get("kwargs")
        file = meta.get("file")
        if op == "convert":
            if tree != "" or not isinstance(file, str) or not file:
                raise ValueError("a convert call needs an empty tree and a non-empty file")
        elif not isinstance(tree, str) or not tree or file is not None:
            raise ValueError("call tree must be a non-empty string (and file null) for load/list/help")
        if op in ("load", "help") and not isinstance(entrypoint, str):
            raise ValueError("call entrypoint must be a string for load/help")
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("call args must be a list and kwargs an object")  # noqa: TRY004
        find_inputs = meta.get("find_inputs", "off")
        if find_inputs not in FIND_INPUTS_MODES or (find_inputs != "off" and op != "load"):
            raise ValueError(f"call find_inputs must be one of {FIND_INPUTS_MODES} (not off only for load)")
        if find_inputs != "off" and meta.get("has_example_inputs") is True:
            raise ValueError("call find_inputs must be off when example inputs are given")
        export_sizes = meta.get("export_sizes", "batch")
        if export_sizes not in EXPORT_SIZES_MODES:
            raise ValueError(f"call export_sizes must be one of {EXPORT_SIZES_MODES}")
        return cls(
            op=op,
            tree=tree,
            entrypoint=entrypoint if isinstance(entrypoint, str) else None,
            args=tuple(args),
            kwargs=kwargs,
            want_export=meta.get("want_export") is True,
            has_example_inputs=meta.get("has_example_inputs") is True,
            network_allowed=meta.get("network_allowed") is True,
            filesystem_open=meta.get("filesystem_open") is True,
            file=file if op == "convert" else None,
            find_inputs=find_inputs,
            export_sizes=export_sizes,
        )


# --------------------------------------------------------------------------- fetch (child -> parent)


@dataclass(frozen=True)
class FetchRequest:
    """An artifact the child's entrypoint asked for; the broker decides and downloads.

    ``kind``: ``load_state_dict`` (``torch.hub.load_state_dict_from_url`` /
    ``model_zoo.load_url``) or ``download`` (``torch.hub.download_url_to_file``).
    ``hash_prefix``: the prefix torch.hub would check (given explicitly to
    ``download_url_to_file``, or from the file name with ``check_hash``).
    Every field but ``deadline`` is an untrusted request from repo code.
    ``deadline`` is the parent's, never sent: the requesting child's
    wall-clock deadline (``time.monotonic()``), which bounds the download.
    """

    url: str
    kind: Literal["load_state_dict", "download"]
    file_name: str | None = None
    hash_prefix: str | None = None
    check_hash: bool = False
    deadline: float | None = field(default=None, compare=False)  # bookkeeping, not part of the request

    def to_meta(self) -> dict[str, Any]:
        """The ``fetch`` frame's meta."""
        return {
            "url": self.url,
            "kind": self.kind,
            "file_name": self.file_name,
            "hash_prefix": self.hash_prefix,
            "check_hash": self.check_hash,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], *, deadline: float | None = None) -> FetchRequest:
        """Parse a hostile ``fetch`` meta; raises ``SandboxProtocol``. ``deadline``: see the class docstring."""
        _exact_keys(meta, {"url", "kind", "file_name", "hash_prefix", "check_hash"}, set(), "fetch")
        url = _str_field(meta, "url", limit=MAX_URL_CHARS)
        assert url is not None  # noqa: S101 - _str_field guarantees it (mypy narrowing)
        kind = meta["kind"]
        if kind not in ("load_state_dict", "download"):
            raise SandboxProtocol(f"fetch kind must be load_state_dict or download, got {kind!r}")
        check_hash = meta["check_hash"]
        if not isinstance(check_hash, bool):
            raise SandboxProtocol(f"fetch check_hash must be a bool, got {type(check_hash).__name__}")
        file_name = _str_field(meta, "file_name", limit=MAX_NAME_CHARS, optional=True)
        hash_prefix = _str_field(meta, "hash_prefix", limit=128, optional=True)
        if has_hidden(url) or (file_name is not None and has_hidden(file_name)):
            raise SandboxProtocol(
                "fetch url/file_name contains control, bidi, zero-width or other invisible characters "
                f"(expected a plain URL, percent-encoded): {sanitize(url, limit=200, keep_newlines=False)!r}"
            )
        return cls(
            url=url, kind=kind, file_name=file_name, hash_prefix=hash_prefix, check_hash=check_hash, deadline=deadline
        )


# --------------------------------------------------------------------------- nested_load (child -> parent)


def _json_items(value: Any, depth: int, counter: list[int]) -> None:
    """Count the items of a parsed JSON value; refuse deep or huge ones."""
    counter[0] += 1
    if counter[0] > MAX_NESTED_ITEMS or depth > 32:
        raise SandboxProtocol(
            f"nested_load args/kwargs exceed {MAX_NESTED_ITEMS} items or 32 levels; the child is hostile or broken"
        )
    if isinstance(value, list):
        for item in value:
            _json_items(item, depth + 1, counter)
    elif isinstance(value, dict):
        for item in value.values():
            _json_items(item, depth + 1, counter)


@dataclass(frozen=True)
class NestedRequest:
    """A ``torch.hub.load`` call made by the hubconf running in the child.

    Every field except ``depth`` is an untrusted request from repo code;
    :meth:`from_meta` guarantees: ``repo_or_dir`` is a non-empty string of at
    most :data:`MAX_URL_CHARS` characters without control characters;
    ``model`` is a Python identifier; ``args``/``kwargs`` are JSON values
    (compact JSON at most :data:`MAX_NESTED_ARGS_BYTES`), kwarg names are
    identifiers and none is in :data:`RESERVED_NESTED_KWARGS`; ``source`` is
    ``github`` or ``local``; ``force_reload`` is a bool. Whether the repo,
    ref and entrypoint are allowed is for the resolver, lock and policy.

    ``depth`` is the parent's count, never the child's claim: 1 for a call
    made by the entrypoint of the user's own load, 2 for one made inside that
    nested load, and so on. ``deadline`` is the parent's too: the requesting
    child's wall-clock deadline (``time.monotonic()``); the nested load must
    end by then (red team 5).
    """

    repo_or_dir: str
    model: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    source: Literal["github", "local"] = "github"
    force_reload: bool = False
    depth: int = 1
    deadline: float | None = field(default=None, compare=False)  # bookkeeping, not part of the request

    def to_meta(self) -> dict[str, Any]:
        """The ``nested_load`` frame's meta (``depth`` is not sent: the parent keeps count)."""
        return {
            "repo_or_dir": self.repo_or_dir,
            "model": self.model,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "source": self.source,
            "force_reload": self.force_reload,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], *, depth: int, deadline: float | None = None) -> NestedRequest:
        """Parse a hostile ``nested_load`` meta (see the class docstring); raises ``SandboxProtocol``."""
        _exact_keys(meta, {"repo_or_dir", "model", "args", "kwargs", "source", "force_reload"}, set(), "nested_load")
        repo = _str_field(meta, "repo_or_dir", limit=MAX_URL_CHARS)
        model = _str_field(meta, "model", limit=MAX_NAME_CHARS)
        assert repo is not None and model is not None  # noqa: S101 - narrowed by _str_field
        if not repo or has_hidden(repo) or repo != repo.strip():
            raise SandboxProtocol(
                "nested_load repo_or_dir must be a non-empty spec without control characters or surrounding "
                f"whitespace, got {sanitize_text(repo, limit=120)!r}"
            )
        if not model.isidentifier() or not model.isascii():
            raise SandboxProtocol(
                f"nested_load model must be an entrypoint name (an identifier), got {sanitize_text(model, limit=80)!r}"
            )
        source = meta["source"]
        if source not in ("github", "local"):
            raise SandboxProtocol(f"nested_load source must be 'github' or 'local', got {type(source).__name__}")
        force_reload = meta["force_reload"]
        if not isinstance(force_reload, bool):
            raise SandboxProtocol(f"nested_load force_reload must be a bool, got {type(force_reload).__name__}")
        args, kwargs = meta["args"], meta["kwargs"]
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise SandboxProtocol("nested_load args must be a list and kwargs an object")
        for name in kwargs:
            if not name.isidentifier() or not name.isascii() or len(name) > MAX_NAME_CHARS:
                raise SandboxProtocol(f"nested_load kwarg name {sanitize_text(name, limit=80)!r} is not an identifier")
            if name in RESERVED_NESTED_KWARGS:
                raise SandboxProtocol(
                    f"nested_load kwarg {name!r} names a parameter of the load itself, not of the entrypoint; "
                    "the child is hostile or broken"
                )
        _json_items([args, kwargs], 0, [0])
        size = len(json.dumps([args, kwargs], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        if size > MAX_NESTED_ARGS_BYTES:
            raise SandboxProtocol(
                f"nested_load args/kwargs are {size} bytes of JSON; the cap is {MAX_NESTED_ARGS_BYTES}"
            )
        return cls(
            repo_or_dir=repo,
            model=model,
            args=tuple(args),
            kwargs=dict(kwargs),
            source=source,
            force_reload=force_reload,
            depth=depth,
            deadline=deadline,
        )


# --------------------------------------------------------------------------- final frames (child -> parent)


def parse_error(
    meta: Mapping[str, Any],
    relayed: Mapping[int, SecureHubError],
    allowed: frozenset[str] = CHILD_ERROR_CODES,
) -> SecureHubError:
    """Turn a hostile ``error`` frame into the matching error.

    A child may report only ``allowed`` (:data:`CHILD_ERROR_CODES`, or
    :data:`CONVERT_ERROR_CODES` during a ``convert``), or hand back a broker
    error it was sent (``fetch_error`` = index of that fetch, same code): then
    the parent's original exception (trusted message) is returned. Anything
    else is a ``SandboxProtocol``.
    """
    _exact_keys(meta, {"code", "message"}, {"fetch_error"}, "error")
    code = _str_field(meta, "code", limit=64)
    message = _str_field(meta, "message", limit=64 * 1024)
    assert code is not None and message is not None  # noqa: S101 - narrowed by _str_field
    index = meta.get("fetch_error")
    if index is not None:
        if not isinstance(index, int) or isinstance(index, bool) or index not in relayed:
            raise SandboxProtocol(f"error frame names fetch {index!r}, which the parent never refused")
        original = relayed[index]
        if original.code != code:
            raise SandboxProtocol(
                f"error frame relays fetch {index} with code {code!r}, but the parent sent {original.code!r}"
            )
        return original
    if code not in allowed:
        return SandboxProtocol(
            f"the sandbox child reported error code {sanitize_text(code, limit=64)!r}, which a child may not "
            f"report here (allowed: {sorted(allowed)}); treating the child as hostile"
        )
    return error_for_code(code, sanitize_text(message))


def parse_names(meta: Mapping[str, Any]) -> list[str]:
    """``names`` frame: a sorted list of unique identifiers."""
    _exact_keys(meta, {"names"}, set(), "names")
    names = meta["names"]
    if not isinstance(names, list) or len(names) > MAX_NAMES:
        raise SandboxProtocol(f"names must be a list of at most {MAX_NAMES} strings")
    for name in names:
        if not isinstance(name, str) or not name.isidentifier() or len(name) > MAX_NAME_CHARS:
            shown = sanitize_text(str(name), limit=80)
            raise SandboxProtocol(f"entrypoint name {shown!r} is not an identifier")
    if names != sorted(set(names)):
        raise SandboxProtocol("names must be sorted and unique")
    return list(names)


def parse_doc(meta: Mapping[str, Any]) -> str | None:
    """``doc`` frame: the entrypoint docstring (sanitised, newlines kept) or None."""
    _exact_keys(meta, {"doc"}, set(), "doc")
    doc = _str_field(meta, "doc", limit=MAX_DOC_CHARS, optional=True)
    return None if doc is None else sanitize_text(doc, limit=MAX_DOC_CHARS, keep_newlines=True)


_NODE_REQUIRED = {"class", "origin", "training", "reconstructible", "children", "attrs"}
_NODE_OPTIONAL = {"args", "kwargs", "reason", "mutated", "dtype", "replay", "norms"}
#: Norms one module may carry (one per parameter name; Conv/Linear/LSTM layers have a handful).
MAX_NODE_NORMS = 64


def _check_node(node: Any, path: str, counter: list[int]) -> None:
    counter[0] += 1
    if counter[0] > MAX_CONFIG_NODES:
        raise SandboxProtocol(f"config has more than {MAX_CONFIG_NODES} module nodes")
    if not isinstance(node, dict):
        raise SandboxProtocol(f"config node {path or '<root>'} must be an object")
    keys = set(node)
    if not keys >= _NODE_REQUIRED or keys - _NODE_REQUIRED - _NODE_OPTIONAL:
        raise SandboxProtocol(
            f"config node {path or '<root>'} keys {sorted(keys)}: expected {sorted(_NODE_REQUIRED)} "
            f"plus optional {sorted(_NODE_OPTIONAL)}"
        )
    cls = node["class"]
    if not isinstance(cls, str) or cls.count(":") != 1 or len(cls) > 512:
        raise SandboxProtocol(f"config node {path or '<root>'} class must be 'module:Qualname'")
    origin = node["origin"]
    if not (
        isinstance(origin, dict)
        and set(origin) == {"kind", "path", "resolves"}
        and origin["kind"] in ("site", "stdlib", "tree", "other", "unknown")
        and isinstance(origin["path"], str)
        and isinstance(origin["resolves"], bool)
    ):
        raise SandboxProtocol(f"config node {path or '<root>'} origin is malformed")
    if not isinstance(node["training"], bool) or not isinstance(node["reconstructible"], bool):
        raise SandboxProtocol(f"config node {path or '<root>'} training/reconstructible must be bool")
    has_ctor = isinstance(node.get("args"), list) and isinstance(node.get("kwargs"), dict)
    if node["reconstructible"] and not has_ctor:
        raise SandboxProtocol(f"config node {path or '<root>'} is reconstructible but lacks args/kwargs")
    if not isinstance(node["attrs"], dict):
        raise SandboxProtocol(f"config node {path or '<root>'} attrs must be an object")
    if "mutated" in node and not (
        isinstance(node["mutated"], list) and all(isinstance(m, str) for m in node["mutated"])
    ):
        raise SandboxProtocol(f"config node {path or '<root>'} mutated must be a list of strings")
    if "replay" in node:
        _check_replay(node["replay"], node["children"], path)
    if "norms" in node:
        _check_norms(node["norms"], path)
    for key in ("reason", "dtype"):
        if key in node and not isinstance(node[key], str):
            raise SandboxProtocol(f"config node {path or '<root>'} {key} must be a string")
    children = node["children"]
    if not isinstance(children, dict):
        raise SandboxProtocol(f"config node {path or '<root>'} children must be an object")
    for name, child in children.items():
        # Printable characters only (an allowlist of character classes): the name becomes part of the
        # path every message about this subtree quotes raw, so an ESC/OSC sequence or a bidi override in
        # it reached str(err) of a sandbox-protocol error (red team 6). No honest module name has one.
        if not name or "." in name or not name.isprintable():
            raise SandboxProtocol(
                f"config node {path or '<root>'} has a child named {sanitize_text(name, limit=80)!r}; expected a "
                "non-empty name of printable characters without '.'; the sandbox child is broken or hostile"
            )
        _check_node(child, f"{path}.{name}" if path else name, counter)


def _check_replay(replay: Any, children: Any, path: str) -> None:
    """``replay``: children (names of recorded children, no repeats) and attrs (an object)."""
    where = f"config node {path or '<root>'} replay"
    if not (isinstance(replay, dict) and set(replay) - {"tensors", "removed"} == {"children", "attrs"}):
        raise SandboxProtocol(
            f"{where} must be an object with 'children' and 'attrs' (and optionally 'tensors', 'removed')"
        )
    if "removed" in replay and not (
        isinstance(replay["removed"], dict)
        and all(v in ("deleted", "none") for v in replay["removed"].values())
        and not (isinstance(children, dict) and set(replay["removed"]) & set(children))
    ):
        raise SandboxProtocol(f"{where} removed must map names the node does not hold to 'deleted' or 'none'")
    if "tensors" in replay and not (
        isinstance(replay["tensors"], dict) and all(isinstance(v, str) for v in replay["tensors"].values())
    ):
        raise SandboxProtocol(f"{where} tensors must map names to kinds")
    names = replay["children"]
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
        raise SandboxProtocol(f"{where} children must be a list of distinct names")
    if isinstance(children, dict) and not set(names) <= set(children):
        raise SandboxProtocol(f"{where} names children the node does not record")
    if not isinstance(replay["attrs"], dict):
        raise SandboxProtocol(f"{where} attrs must be an object")


def _check_norms(norms: Any, path: str) -> None:
    """``norms``: a short list of objects with string keys (values are the reconstructor's to vet)."""
    if not (
        isinstance(norms, list)
        and 0 < len(norms) <= MAX_NODE_NORMS
        and all(isinstance(n, dict) and isinstance(n.get("kind"), str) for n in norms)
    ):
        raise SandboxProtocol(
            f"config node {path or '<root>'} norms must be a list of 1 to {MAX_NODE_NORMS} objects with a 'kind'"
        )


_MAX_FROZEN_NAME = 4096


def parse_result_config(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` frame: check the config's outer shape and every module node.

    Only structure is checked; argument values are the reconstructor's to
    vet (class allowlist etc.). Size, depth, item count and string sizes are
    already bounded by the frame parser (``CHILD_FRAME_LIMITS[RESULT]``, or
    :data:`CONFIG_JSON_LIMITS` for a cached config).
    """
    _exact_keys(meta, {"config"}, {FOUND_INPUTS}, "result")
    config = meta["config"]
    if not isinstance(config, dict):
        raise SandboxProtocol("result config must be an object")
    _exact_keys(config, {"format", "root", "aliases"}, {"export_error", "frozen"}, "result config")
    if config["format"] != CONFIG_FORMAT:
        raise SandboxProtocol(f"result config format must be {CONFIG_FORMAT!r}, got {config['format']!r}")
    if "export_error" in config and not isinstance(config["export_error"], str):
        raise SandboxProtocol("result config export_error must be a string")
    aliases = config["aliases"]
    if not isinstance(aliases, dict) or not all(isinstance(v, str) for v in aliases.values()):
        raise SandboxProtocol("result config aliases must map tensor names to tensor names")
    frozen = config.get("frozen", [])
    if (
        not isinstance(frozen, list)
        or not all(isinstance(n, str) and 0 < len(n) <= _MAX_FROZEN_NAME for n in frozen)
        or len(set(frozen)) != len(frozen)
    ):
        raise SandboxProtocol("result config frozen must be a list of distinct parameter names")
    _check_node(config["root"], "", [0])
    try:  # the result cache and output pins digest it as canonical UTF-8 JSON (red team 8)
        canonical_json(config)
    except (UnicodeEncodeError, ValueError):
        raise SandboxProtocol(
            "result config has no canonical JSON form: it holds a lone surrogate (a \\udXXX escape) or a number "
            "beyond float range (1e999); the sandbox child is broken or hostile"
        ) from None
    return config


#: Optional key of the ``result`` meta: the example inputs the child's search found (see
#: :data:`FindInputs`), a list of ``{"shape": [int, ...], "dtype": str}``.
FOUND_INPUTS = "found_inputs"


def parse_found_inputs(meta: Mapping[str, Any], requested: FindInputs) -> tuple[InputSpec, ...] | None:
    """``result`` frame: the example input specs the child reports it found, or ``None`` when it sent none.

    Hostile data that the parent will allocate and may write into hub.lock, so
    it gets the same checks as a user's ``--example-input`` (shape, dtype and
    every size bound of :class:`~securehub.config.lockfile.InputSpec`, and the
    per-entrypoint totals) before anything is built from it. A child that
    reports inputs it was not asked to search for is refused (deny by
    default). Raises ``SandboxProtocol``.
    """
    raw = meta.get(FOUND_INPUTS)
    if raw is None:
        return None
    if requested == "off":
        raise SandboxProtocol("the child reported found example inputs, but no search was requested")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_EXAMPLE_INPUTS:
        raise SandboxProtocol(
            f"result found_inputs must be a list of 1..{MAX_EXAMPLE_INPUTS} {{shape, dtype}} objects; "
            "the sandbox child is broken or hostile"
        )
    specs: list[InputSpec] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise SandboxProtocol(f"result found_inputs[{i}] must be an object")
        _exact_keys(item, {"shape", "dtype"}, set(), f"result found_inputs[{i}]")
        shape, dtype = item["shape"], item["dtype"]
        if not isinstance(shape, list) or not all(type(d) is int for d in shape) or not isinstance(dtype, str):
            raise SandboxProtocol(f"result found_inputs[{i}] must have a list of ints as shape and a dtype string")
        try:  # the lock's own bounds, computed from the shape before anything is allocated
            specs.append(InputSpec(shape=tuple(shape), dtype=dtype))
        except ValueError as exc:
            raise SandboxProtocol(f"result found_inputs[{i}]: {sanitize_text(str(exc), limit=300)}") from None
    total = example_inputs_total_problem([s.nbytes for s in specs])
    if total:
        raise SandboxProtocol(f"result found_inputs: {total}")
    return tuple(specs)


@dataclass(frozen=True)
class ExportInfo:
    """Where the exported program's tensors are in the state file.

    ``state``: ExportedProgram state-dict name -> safetensors key (either the
    module's own key or one under :data:`EXPORT_STATE_PREFIX`).
    ``constants``: constant name -> safetensors key under
    :data:`EXPORT_CONSTANT_PREFIX`. ``parameters``: the ``state`` names that
    are parameters (wrap them in ``nn.Parameter`` before deserialising). The program itself is the ``export``
    frame body: the JSON of ``torch._export.serde.serialize`` (no pickle).
    ``dynamic_batch``: the child's claim that dim 0 of every input was exported
    as a symbolic size (optional in the meta; informational only).
    ``dynamic_dims``: the child's claim of which dims of each input (in order)
    the program keeps symbolic, e.g. ``((0, 2, 3),)`` (optional in the meta:
    results cached before 2026-12-08 lack it); the rebuild refuses a program
    whose inputs disagree with it, and uses the program's own shapes for everything else.
    """

    state: dict[str, str]
    constants: dict[str, str]
    parameters: tuple[str, ...]
    program_json: bytes
    dynamic_batch: bool = False
    dynamic_dims: tuple[tuple[int, ...], ...] | None = None

    def to_meta(self) -> dict[str, Any]:
        """The ``export`` frame's meta (what :func:`parse_export` reads back)."""
        return {
            "format": EXPORT_FORMAT,
            "state": dict(self.state),
            "constants": dict(self.constants),
            "parameters": list(self.parameters),
            "dynamic_batch": self.dynamic_batch,
        } | ({} if self.dynamic_dims is None else {"dynamic_dims": [list(d) for d in self.dynamic_dims]})


#: Bounds of an export meta's ``dynamic_dims`` (inputs, and dims per input: torch tensors have at most 64).
_MAX_EXPORT_INPUTS: Final = 1024
_MAX_EXPORT_INPUT_DIMS: Final = 64


def _dynamic_dims(value: Any) -> tuple[tuple[int, ...], ...]:
    """``dynamic_dims``: a list (one per input) of strictly increasing lists of dim indices in [0, 64)."""
    what = (
        f"export dynamic_dims must be a list (at most {_MAX_EXPORT_INPUTS}) of strictly increasing lists of "
        f"dim indices in [0, {_MAX_EXPORT_INPUT_DIMS})"
    )
    if not isinstance(value, list) or len(value) > _MAX_EXPORT_INPUTS:
        raise SandboxProtocol(what)
    out: list[tuple[int, ...]] = []
    for dims in value:
        if not isinstance(dims, list) or not all(type(d) is int and 0 <= d < _MAX_EXPORT_INPUT_DIMS for d in dims):
            raise SandboxProtocol(what)
        if any(a >= b for a, b in itertools.pairwise(dims)):
            raise SandboxProtocol(what)
        out.append(tuple(dims))
    return tuple(out)


def unreferenced_export_keys(names: Iterable[str], export: ExportInfo | None) -> list[str]:
    """State names under the export prefixes that ``export`` does not map (all of them when there is none).

    Such tensors are read by nothing (a rebuild skips the prefixes) and pinned by nothing: the output
    pin's state digest leaves the prefixes to the program digest, and there is no program digest
    without a program. Deny by default: the session refuses them (red team 10).
    """
    used = set() if export is None else set(export.state.values()) | set(export.constants.values())
    prefixes = (EXPORT_STATE_PREFIX, EXPORT_CONSTANT_PREFIX)
    return sorted(n for n in names if n.startswith(prefixes) and n not in used)


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SandboxProtocol(f"export {what} must map names to safetensors keys")
    return dict(value)


def parse_export(meta: Mapping[str, Any], body: bytes) -> ExportInfo:
    """``export`` frame: the ExportInfo meta plus the program JSON body (not parsed here)."""
    _exact_keys(meta, {"format", "state", "constants", "parameters"}, {"dynamic_batch", "dynamic_dims"}, "export")
    if meta["format"] != EXPORT_FORMAT:
        raise SandboxProtocol(f"export format must be {EXPORT_FORMAT!r}, got {meta['format']!r}")
    state = _str_map(meta["state"], "state")
    params = meta["parameters"]
    if not isinstance(params, list) or not all(isinstance(p, str) and p in state for p in params):
        raise SandboxProtocol("export parameters must list names of the program's state entries")
    dynamic = meta.get("dynamic_batch", False)
    if not isinstance(dynamic, bool):
        raise SandboxProtocol("export dynamic_batch must be a boolean")
    dims = _dynamic_dims(meta["dynamic_dims"]) if "dynamic_dims" in meta else None
    return ExportInfo(
        state=state,
        constants=_str_map(meta["constants"], "constants"),
        parameters=tuple(params),
        program_json=body,
        dynamic_batch=dynamic,
        dynamic_dims=dims,
    )


# --------------------------------------------------------------------------- converted (child -> parent)
#
# A converted checkpoint is described without nesting, so any checkpoint depth
# costs the same few JSON levels and a hostile meta cannot form a cycle:
#
#   {"format": CONVERT_FORMAT,
#    "containers": [{"kind": "dict"|"odict", "keys": [KEY, ...], "items": [REF, ...]}
#                   | {"kind": "list"|"tuple", "items": [REF, ...]}, ...],
#    "root": REF,                   # a dict/odict container: the checkpoint itself
#    "extras": {name: VALUE}}       # non-tensor leaves
#   KEY   = string | integer        # a dict key, type kept ("0" and 0 differ)
#   REF   = ["c", i]                # container i; inside container j only i < j (post-order)
#         | ["t", name]             # a tensor of the body's safetensors file
#         | ["x", name]             # an entry of "extras"
#   VALUE = null | bool | int | float | string | {"float": "nan" | "inf" | "-inf"}
#
# Names are the leaves' '.'-joined key paths (like ``state_dict()`` keys), made
# unique with a ``~N`` suffix where two paths would collide ({"a.b": x} and
# {"a": {"b": y}}). A container or tensor referenced twice was one shared object.

_NONFINITE: Mapping[str, float] = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


@dataclass(frozen=True)
class ConvertRef:
    """A reference to a container (``kind="c"``, ``target``: index), tensor (``"t"``) or extra (``"x"``)."""

    kind: Literal["c", "t", "x"]
    target: int | str


@dataclass(frozen=True)
class ConvertContainer:
    """One container of a converted checkpoint; ``keys`` is empty for lists and tuples."""

    kind: Literal["dict", "odict", "list", "tuple"]
    keys: tuple[str | int, ...]
    items: tuple[ConvertRef, ...]


@dataclass(frozen=True)
class ConvertLayout:
    """The checked structure of a converted checkpoint (see the comment above).

    :func:`parse_convert` guarantees: container references point only to
    earlier containers (no cycles; rebuilding in index order always works),
    ``root`` is a dict/odict container, every extras reference names an
    entry of ``extras``, extras values are already decoded (NaN/inf floats
    restored), every dict has unique keys, and the caps hold. It does NOT
    know the safetensors file: the caller checks :attr:`tensor_names`
    against it.
    """

    containers: tuple[ConvertContainer, ...]
    root: ConvertRef
    extras: Mapping[str, Any]

    @property
    def tensor_names(self) -> frozenset[str]:
        """Every tensor name the layout refers to."""
        return frozenset(str(ref.target) for c in self.containers for ref in c.items if ref.kind == "t") | (
            {str(self.root.target)} if self.root.kind == "t" else frozenset()
        )


def encode_extra(value: bool | int | float | str | None) -> Any:
    """The JSON form of a non-tensor leaf (non-finite floats become ``{"float": ...}``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    return value


def decode_extra(value: Any, name: str) -> Any:
    """Check and decode one hostile extras value; raises ``SandboxProtocol``."""
    if value is None or isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, int):
        if not CONVERT_INT_MIN <= value <= CONVERT_INT_MAX:
            raise SandboxProtocol(f"converted extra {sanitize_text(name, limit=120)!r} is an integer out of range")
        return value
    # The marker is checked to be a string before the dict lookup: a hostile child's list or
    # object there is unhashable, and the TypeError escaped as a crash, not `sandbox-protocol`
    # (found by tests/fuzz/test_fuzz_channel.py).
    marker = value.get("float") if isinstance(value, dict) and set(value) == {"float"} else None
    if isinstance(marker, str) and marker in _NONFINITE:
        return _NONFINITE[marker]
    raise SandboxProtocol(
        f"converted extra {sanitize_text(name, limit=120)!r} must be null, a bool, a number, a string or "
        f"{{'float': 'nan'|'inf'|'-inf'}}, got {type(value).__name__}"
    )


def _convert_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_CONVERT_NAME_CHARS:
        raise SandboxProtocol(f"converted {what} must be a string of at most {MAX_CONVERT_NAME_CHARS} chars")
    return value


def _convert_ref(value: Any, limit: int, extras: Mapping[str, Any]) -> ConvertRef:
    """Parse ``["c", i]`` (``0 <= i < limit``), ``["t", name]`` or ``["x", name in extras]``."""
    if not (isinstance(value, list) and len(value) == 2 and value[0] in ("c", "t", "x")):
        raise SandboxProtocol("a converted reference must be ['c', index], ['t', name] or ['x', name]")
    kind, target = value
    if kind == "c":
        if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < limit:
            raise SandboxProtocol(
                f"converted container reference {target!r} must name an earlier container (index < {limit})"
            )
        return ConvertRef("c", target)
    name = _convert_name(target, "tensor/extra name")
    if kind == "x" and name not in extras:
        raise SandboxProtocol(f"converted extra {sanitize_text(name, limit=120)!r} is not in extras")
    return ConvertRef(kind, name)


def _convert_key(key: Any) -> str | int:
    if isinstance(key, str):
        return _convert_name(key, "dict key")
    if isinstance(key, int) and not isinstance(key, bool) and CONVERT_INT_MIN <= key <= CONVERT_INT_MAX:
        return key
    raise SandboxProtocol(f"converted dict keys must be strings or in-range integers, got {type(key).__name__}")


def _convert_container(value: Any, index: int, extras: Mapping[str, Any]) -> ConvertContainer:
    if not isinstance(value, dict) or value.get("kind") not in CONTAINER_KINDS:
        raise SandboxProtocol(f"converted container {index} must be an object with kind in {CONTAINER_KINDS}")
    kind = value["kind"]
    mapping = kind in ("dict", "odict")
    _exact_keys(value, {"kind", "items", "keys"} if mapping else {"kind", "items"}, set(), "converted container")
    items = value["items"]
    if not isinstance(items, list):
        raise SandboxProtocol(f"converted container {index} items must be a list")
    refs = tuple(_convert_ref(item, index, extras) for item in items)
    keys: tuple[str | int, ...] = ()
    if mapping:
        raw_keys = value["keys"]
        if not isinstance(raw_keys, list) or len(raw_keys) != len(items):
            raise SandboxProtocol(f"converted container {index} keys must be a list as long as its items")
        keys = tuple(_convert_key(k) for k in raw_keys)
        if len({(type(k), k) for k in keys}) != len(keys):
            raise SandboxProtocol(f"converted container {index} repeats a key")
    return ConvertContainer(kind, keys, refs)


def parse_convert(meta: Mapping[str, Any]) -> ConvertLayout:
    """``converted`` frame: check a hostile layout (see :class:`ConvertLayout`); raises ``SandboxProtocol``."""
    _exact_keys(meta, {"format", "containers", "root", "extras"}, set(), "converted")
    if meta["format"] != CONVERT_FORMAT:
        shown = sanitize_text(str(meta["format"]), limit=80)
        raise SandboxProtocol(f"converted format must be {CONVERT_FORMAT!r}, got {shown!r}")
    raw_extras, raw_containers = meta["extras"], meta["containers"]
    if not isinstance(raw_extras, dict):
        raise SandboxProtocol("converted extras must be an object")
    size = len(json.dumps(raw_extras, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    if size > MAX_CONVERT_EXTRAS_BYTES:
        raise SandboxProtocol(
            f"converted extras are {size} bytes of JSON; the cap is {MAX_CONVERT_EXTRAS_BYTES}; "
            "the sandbox child is broken or hostile"
        )
    extras = {_convert_name(k, "extra name"): decode_extra(v, k) for k, v in raw_extras.items()}
    if not isinstance(raw_containers, list) or len(raw_containers) > MAX_CONVERT_CONTAINERS:
        raise SandboxProtocol(f"converted containers must be a list of at most {MAX_CONVERT_CONTAINERS}")
    refs = sum(len(c["items"]) for c in raw_containers if isinstance(c, dict) and isinstance(c.get("items"), list))
    if refs > MAX_CONVERT_REFS:
        raise SandboxProtocol(f"converted checkpoint has {refs} entries; the cap is {MAX_CONVERT_REFS}")
    containers = tuple(_convert_container(c, i, extras) for i, c in enumerate(raw_containers))
    root = _convert_ref(meta["root"], len(containers), extras)
    if root.kind != "c" or containers[int(root.target)].kind not in ("dict", "odict"):
        raise SandboxProtocol("converted root must be a dict container (a checkpoint is a mapping)")
    return ConvertLayout(containers, root, extras)
