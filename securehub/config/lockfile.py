"""The ``hub.lock`` model: strict parsing, canonical bytes, atomic saving.

The lock pins every repo to a commit and tree digest and every artifact to a
sha256 and size (SPEC section 4). This module does no network I/O and never
decides policy; it guarantees only that:

* a :class:`Lockfile` instance is immutable (mappings are read-only views
  over private copies, JSON values inside ``args``/``extra`` are deep-frozen);
* :meth:`Lockfile.parse` admits only well-formed locks and raises
  :class:`~securehub.errors.LockInvalid` naming the JSON path and, where it
  can be found, the line and column of the problem;
* :meth:`Lockfile.to_bytes` is canonical: the same content gives the same
  bytes whatever order it was built in, and parsing then re-serialising a
  canonical lock is byte-identical;
* :meth:`Lockfile.canonical_unsigned_bytes` is exactly what an Ed25519
  signature covers (see :mod:`securehub.verify.signature`).

Callers must still check signatures, policy and the digests of what they load.
The byte format is documented in ``docs/lock-format.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast

from securehub._util.atomic import write_bytes
from securehub._util.canonical import canonical_json
from securehub._util.regular import NotRegularFileError, read_regular
from securehub._util.strict_json import JsonLimits, JsonRefusedError, check_bounds, parse_strict
from securehub._util.text import has_hidden
from securehub.errors import LockInvalid

__all__ = [
    "DTYPES",
    "DTYPE_BYTES",
    "LOCK_VERSION",
    "MAX_EXAMPLE_INPUTS",
    "MAX_EXAMPLE_INPUTS_TOTAL_BYTES",
    "MAX_EXAMPLE_INPUT_BYTES",
    "MAX_EXAMPLE_INPUT_ELEMENTS",
    "ArtifactEntry",
    "EntrypointEntry",
    "InputSpec",
    "JSONValue",
    "Lockfile",
    "OutputPin",
    "RepoEntry",
    "Signature",
    "example_input_size_problem",
    "example_inputs_total_problem",
]

#: The only lock format version this code understands.
LOCK_VERSION = 1

#: dtype names accepted in ``example_inputs`` (the canonical ``torch`` names).
DTYPES: frozenset[str] = frozenset(
    {
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    }
)

#: Bytes per element of each dtype in :data:`DTYPES`.
DTYPE_BYTES: Mapping[str, int] = {
    "bool": 1, "uint8": 1, "int8": 1,
    "uint16": 2, "int16": 2, "float16": 2, "bfloat16": 2,
    "uint32": 4, "int32": 4, "float32": 4,
    "uint64": 8, "int64": 8, "float64": 8, "complex64": 8,
    "complex128": 16,
}  # fmt: skip

#: Bounds on example inputs, wherever they come from (hub.lock, ``--example-input``, the
#: ``example_inputs=`` argument): they are allocated in the parent and sent to the child, so a
#: tampered lock with ``[2**20]*3`` must be refused, not allocated (red-team finding 7b). Real
#: models fit easily: an image batch 1x3x1024x1024 float32 is 3,145,728 elements (12 MiB), token
#: ids 8x512 int64 are 4,096 elements (32 KiB). Per input: at most
#: ``MAX_EXAMPLE_INPUT_ELEMENTS`` elements and ``MAX_EXAMPLE_INPUT_BYTES`` bytes; per entrypoint:
#: at most ``MAX_EXAMPLE_INPUTS`` inputs and ``MAX_EXAMPLE_INPUTS_TOTAL_BYTES`` bytes together.
MAX_EXAMPLE_INPUT_ELEMENTS = 1 << 24
MAX_EXAMPLE_INPUT_BYTES = 64 << 20
MAX_EXAMPLE_INPUTS = 16
MAX_EXAMPLE_INPUTS_TOTAL_BYTES = 128 << 20

#: A deep-frozen JSON value: objects are read-only mappings, arrays are tuples.
JSONValue: TypeAlias = "bool | int | float | str | tuple[JSONValue, ...] | Mapping[str, JSONValue] | None"

_MAX_LOCK_BYTES = 64 * 1024 * 1024
MAX_LOCK_BYTES = _MAX_LOCK_BYTES  # for readers that show the lock's text (the audit report)
_MAX_SHAPE_DIMS = 32
_MAX_DEPTH = 64
#: Only the depth is bounded by the scan (the file size is capped when it is read).
_DEPTH_ONLY = JsonLimits(
    max_bytes=_MAX_LOCK_BYTES + 1,
    max_depth=_MAX_DEPTH,
    max_items=_MAX_LOCK_BYTES + 1,
    max_str_bytes=_MAX_LOCK_BYTES + 1,
)
_HEX40_64 = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
_REF_PREFIXES = ("heads/", "tags/", "refs/")
_FIX = "fix hub.lock by hand or regenerate the entry with `securehub lock --upgrade`"

_TOP_KEYS = frozenset({"version", "repos", "artifacts", "signature"})
_REPO_KEYS = frozenset({"remote", "ref", "ref_type", "commit", "tree_sha256", "entrypoints"})
_ENTRYPOINT_KEYS = frozenset({"artifacts", "example_inputs", "args", "outputs"})
_OUTPUT_KEYS = frozenset({"state_sha256", "config_sha256", "program_sha256"})
_INPUT_KEYS = frozenset({"shape", "dtype"})
_ARTIFACT_KEYS = frozenset({"sha256", "size"})
_SIGNATURE_KEYS = frozenset({"keyid", "alg", "sig"})


# --------------------------------------------------------------------------- freezing


def _freeze_json(value: Any) -> JSONValue:
    """Deep-freeze a JSON-shaped value; raise ``ValueError`` for anything else."""
    if value is None or isinstance(value, (bool, int, str)):
        return cast("JSONValue", value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, found {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze_json(v) for v in value)
    if isinstance(value, Mapping):
        out: dict[str, JSONValue] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"expected string object keys, found {k!r}")
            out[k] = _freeze_json(v)
        return MappingProxyType(out)
    raise ValueError(f"expected a JSON value, found {type(value).__name__}")


def _thaw_json(value: JSONValue) -> Any:
    """Turn a frozen JSON value back into plain lists and dicts for ``json.dumps``."""
    if isinstance(value, tuple):
        return [_thaw_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw_json(v) for k, v in value.items()}
    return value


def _frozen_map(value: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


def _frozen_json_map(value: Mapping[str, Any] | None) -> Mapping[str, JSONValue]:
    if not isinstance(value, Mapping | None):
        raise TypeError(f"expected a mapping, found {type(value).__name__}")
    return cast("Mapping[str, JSONValue]", _freeze_json(dict(value or {})))


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one example input tensor (JSON: ``{"shape": [...], "dtype": "float32"}``)."""

    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self) -> None:
        _set(self, "shape", tuple(self.shape))
        problem = _input_spec_problem(list(self.shape), self.dtype)
        if problem:
            raise ValueError(problem)

    @property
    def nbytes(self) -> int:
        """Bytes a tensor of this shape and dtype takes (what the per-entrypoint total counts)."""
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    def to_json(self) -> dict[str, Any]:
        """The JSON object form."""
        return {"shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ArtifactEntry:
    """A pinned artifact: its sha256 (64 lowercase hex) and size in bytes."""

    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            raise ValueError(f"sha256: expected 64 lowercase hex digits, found {self.sha256!r}")
        if not _is_int(self.size) or self.size < 0:
            raise ValueError(f"size: expected a non-negative integer, found {self.size!r}")

    def to_json(self) -> dict[str, Any]:
        """The JSON object form."""
        return {"sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class OutputPin:
    """The pinned digests of one entrypoint output (SPEC section 4, output pinning).

    ``state_sha256``/``config_sha256``/``program_sha256`` are the digests of
    :mod:`securehub.pipeline.state_digest` (64 lowercase hex; ``program_sha256`` is
    ``None`` when the lock run exported no program).
    """

    state_sha256: str
    config_sha256: str
    program_sha256: str | None = None

    def __post_init__(self) -> None:
        for name in ("state_sha256", "config_sha256"):
            problem = _hex64_problem(getattr(self, name))
            if problem:
                raise ValueError(f"{name}: {problem}")
        if self.program_sha256 is not None and _hex64_problem(self.program_sha256):
            raise ValueError(f"program_sha256: {_hex64_problem(self.program_sha256)} or null")

    def to_json(self) -> dict[str, Any]:
        """The JSON object form (``program_sha256`` is always present, ``null`` when no program)."""
        return {
            "state_sha256": self.state_sha256,
            "config_sha256": self.config_sha256,
            "program_sha256": self.program_sha256,
        }


@dataclass(frozen=True)
class EntrypointEntry:
    """What one entrypoint of a locked repo may fetch, and how to call it.

    ``artifacts`` is kept sorted (it is a set of URLs; order carries no
    meaning), so the serialised form does not depend on fetch order.
    ``None`` for ``example_inputs``/``args`` means "not recorded" and is
    omitted from the JSON. ``outputs`` maps the ``args_sha256`` of an argument
    set (:func:`securehub._util.digest.args_sha256`, the audit log's digest) to the
    digests its output had when it was locked; empty (omitted from the JSON)
    means no output is pinned, as in locks written before output pinning.
    """

    artifacts: tuple[str, ...] = ()
    example_inputs: tuple[InputSpec, ...] | None = None
    args: Mapping[str, JSONValue] | None = None
    outputs: Mapping[str, OutputPin] = field(default_factory=dict)

    def __post_init__(self) -> None:
        urls = tuple(self.artifacts)
        if len(set(urls)) != len(urls):
            raise ValueError(f"artifacts: duplicate URL in {urls!r}")
        for url in urls:
            if not _is_url(url):
                raise ValueError(f"artifacts: expected an absolute URL, found {url!r}")
        _set(self, "artifacts", tuple(sorted(urls)))
        if self.example_inputs is not None:
            specs = tuple(self.example_inputs)
            if not all(isinstance(s, InputSpec) for s in specs):
                raise TypeError("example_inputs: expected a sequence of InputSpec")
            _set(self, "example_inputs", specs)
        if self.args is not None:
            _set(self, "args", _frozen_json_map(self.args))
        outputs = _frozen_map(self.outputs)
        for digest, pin in outputs.items():
            if _hex64_problem(digest):
                raise ValueError(f"outputs: expected args_sha256 keys (64 lowercase hex), found {digest!r}")
            if not isinstance(pin, OutputPin):
                raise TypeError(f"outputs[{digest!r}]: expected OutputPin, found {type(pin).__name__}")
        _set(self, "outputs", outputs)

    def output(self, args_digest: str) -> OutputPin | None:
        """The pinned output for the argument set with this ``args_sha256``, if any."""
        return self.outputs.get(args_digest)

    def with_output(self, args_digest: str, pin: OutputPin) -> EntrypointEntry:
        """A copy with the output of ``args_digest`` added or replaced."""
        return replace(self, outputs={**self.outputs, args_digest: pin})

    def to_json(self) -> dict[str, Any]:
        """The JSON object form (``None`` fields and empty ``outputs`` omitted)."""
        out: dict[str, Any] = {"artifacts": list(self.artifacts)}
        if self.example_inputs is not None:
            out["example_inputs"] = [s.to_json() for s in self.example_inputs]
        if self.args is not None:
            out["args"] = _thaw_json(self.args)
        if self.outputs:
            out["outputs"] = {k: v.to_json() for k, v in sorted(self.outputs.items())}
        return out


@dataclass(frozen=True)
class RepoEntry:
    """A repo pinned to a commit and tree digest.

    ``extra`` holds fields this version does not know; they are preserved so
    they round-trip (and are covered by the signature).
    """

    remote: str
    ref: str
    ref_type: Literal["branch", "tag"]
    commit: str
    tree_sha256: str
    entrypoints: Mapping[str, EntrypointEntry] = field(default_factory=dict)
    extra: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, problem in (
            ("remote", _remote_problem(self.remote)),
            ("ref", _ref_problem(self.ref)),
            ("ref_type", _ref_type_problem(self.ref_type)),
            ("commit", _commit_problem(self.commit)),
            ("tree_sha256", _hex64_problem(self.tree_sha256)),
        ):
            if problem:
                raise ValueError(f"{name}: {problem}")
        eps = _frozen_map(self.entrypoints)
        for name, ep in eps.items():
            if not _is_entrypoint_name(name):
                raise ValueError(f"entrypoints: expected a Python identifier, found {name!r}")
            if not isinstance(ep, EntrypointEntry):
                raise TypeError(f"entrypoints[{name!r}]: expected EntrypointEntry, found {type(ep).__name__}")
        _set(self, "entrypoints", eps)
        extra = _frozen_json_map(self.extra)
        clash = _REPO_KEYS & set(extra)
        if clash:
            raise ValueError(f"extra: must not contain known field(s) {sorted(clash)}")
        _set(self, "extra", extra)

    def with_entrypoint(self, name: str, entry: EntrypointEntry) -> RepoEntry:
        """A copy with entrypoint ``name`` added or replaced."""
        return replace(self, entrypoints={**self.entrypoints, name: entry})

    def to_json(self) -> dict[str, Any]:
        """The JSON object form, unknown fields included."""
        out: dict[str, Any] = {k: _thaw_json(v) for k, v in self.extra.items()}
        out.update(
            remote=self.remote,
            ref=self.ref,
            ref_type=self.ref_type,
            commit=self.commit,
            tree_sha256=self.tree_sha256,
            entrypoints={k: v.to_json() for k, v in self.entrypoints.items()},
        )
        return out


@dataclass(frozen=True)
class Signature:
    """A detached signature over :meth:`Lockfile.canonical_unsigned_bytes`.

    ``alg`` is ``"ed25519"`` for every signature securehub writes; other
    values parse (so that verification can say what is wrong) but never verify.
    """

    keyid: str
    alg: str
    sig: str

    def __post_init__(self) -> None:
        for name in ("keyid", "alg", "sig"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name}: expected a non-empty string, found {value!r}")

    def to_json(self) -> dict[str, Any]:
        """The JSON object form."""
        return {"keyid": self.keyid, "alg": self.alg, "sig": self.sig}


@dataclass(frozen=True)
class Lockfile:
    """An immutable ``hub.lock``.

    Build new versions with the ``with_*`` methods. Every content update
    (``with_repo``, ``with_artifact``, ``with_entrypoint``) returns an
    *unsigned* lock, because the old signature no longer covers the content.
    """

    version: int = LOCK_VERSION
    repos: Mapping[str, RepoEntry] = field(default_factory=dict)
    artifacts: Mapping[str, ArtifactEntry] = field(default_factory=dict)
    signature: Signature | None = None
    extra: Mapping[str, JSONValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _is_int(self.version) or self.version != LOCK_VERSION:
            raise ValueError(f"version: expected {LOCK_VERSION}, found {self.version!r}")
        repos = _frozen_map(self.repos)
        for key, entry in repos.items():
            if not _is_repo_key(key):
                raise ValueError(f"repos: expected a non-empty spec without whitespace, found {key!r}")
            if not isinstance(entry, RepoEntry):
                raise TypeError(f"repos[{key!r}]: expected RepoEntry, found {type(entry).__name__}")
        _set(self, "repos", repos)
        artifacts = _frozen_map(self.artifacts)
        for url, art in artifacts.items():
            if not _is_url(url):
                raise ValueError(f"artifacts: expected an absolute URL, found {url!r}")
            if not isinstance(art, ArtifactEntry):
                raise TypeError(f"artifacts[{url!r}]: expected ArtifactEntry, found {type(art).__name__}")
        _set(self, "artifacts", artifacts)
        if self.signature is not None and not isinstance(self.signature, Signature):
            raise TypeError(f"signature: expected Signature or None, found {type(self.signature).__name__}")
        extra = _frozen_json_map(self.extra)
        clash = _TOP_KEYS & set(extra)
        if clash:
            raise ValueError(f"extra: must not contain known field(s) {sorted(clash)}")
        _set(self, "extra", extra)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def empty(cls) -> Lockfile:
        """A lock with no repos, no artifacts and no signature."""
        return cls()

    @classmethod
    def parse(cls, data: bytes, *, source: str = "hub.lock") -> Lockfile:
        """Parse and strictly validate lock bytes.

        Raises :class:`LockInvalid` for malformed JSON, duplicate keys,
        wrong types, bad digests, unknown keys inside entrypoint, artifact and
        signature objects, and entrypoints naming artifacts the lock does not
        pin. Unknown top-level and per-repo fields are preserved in ``extra``.
        The signature is *not* checked here; see
        :func:`securehub.verify.signature.verify_lock`.
        """
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"Lockfile.parse expects bytes, found {type(data).__name__}; encode text first")
        return _Parser(bytes(data), source).parse()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Lockfile:
        """Read and :meth:`parse` the lock at ``path``.

        A missing or unreadable file raises :class:`LockInvalid` saying so;
        callers that accept "no lock" must check for the file first.
        """
        p = Path(path)
        try:
            data = read_regular(p, _MAX_LOCK_BYTES)
        except NotRegularFileError as exc:
            raise LockInvalid(
                f"{p}: expected a regular, readable lock file, found {exc.found} (not a regular file); securehub "
                "never reads a lock from a pipe or a device. Point --lock / SECUREHUB_LOCK at the real "
                "hub.lock, or replace the symlink with the file",
                expected="a regular lock file",
                found=exc.found,
                remedy="point --lock / SECUREHUB_LOCK at the real hub.lock, or replace the symlink with the file",
            ) from None
        except FileNotFoundError:
            raise LockInvalid(
                f"{p}: expected a lock file, found none; run `securehub lock SPEC` to create it "
                "or point --lock / SECUREHUB_LOCK at the right file",
                expected="a lock file",
                found="none",
                remedy="run `securehub lock SPEC` to create it or point --lock / SECUREHUB_LOCK at the right file",
            ) from None
        except OSError as exc:
            raise LockInvalid(
                f"{p}: expected a readable lock file, could not read it ({exc.strerror or exc}); "
                "check the path and its permissions"
            ) from None
        if len(data) > _MAX_LOCK_BYTES:
            raise LockInvalid(
                f"{p}: expected at most {_MAX_LOCK_BYTES} bytes, found a larger file; "
                "this is not a hub.lock securehub wrote"
            )
        return cls.parse(data, source=str(p))

    # ------------------------------------------------------------------ lookups

    def repo(self, key: str) -> RepoEntry | None:
        """The entry for repo spec ``key``, or ``None``."""
        return self.repos.get(key)

    def artifact(self, url: str) -> ArtifactEntry | None:
        """The entry for artifact ``url`` (the original, unmirrored URL), or ``None``."""
        return self.artifacts.get(url)

    # ------------------------------------------------------------------ functional updates

    def with_repo(self, key: str, entry: RepoEntry) -> Lockfile:
        """A copy with repo ``key`` added or replaced; unsigned."""
        return replace(self, repos={**self.repos, key: entry}, signature=None)

    def with_artifact(self, url: str, entry: ArtifactEntry) -> Lockfile:
        """A copy with artifact ``url`` added or replaced; unsigned."""
        return replace(self, artifacts={**self.artifacts, url: entry}, signature=None)

    def with_entrypoint(self, key: str, name: str, entry: EntrypointEntry) -> Lockfile:
        """A copy with entrypoint ``name`` of repo ``key`` added or replaced; unsigned.

        Raises ``KeyError`` if repo ``key`` is not in the lock.
        """
        repo = self.repos.get(key)
        if repo is None:
            raise KeyError(f"repo {key!r} is not in the lock; add it with with_repo() first")
        return self.with_repo(key, repo.with_entrypoint(name, entry))

    def without_signature(self) -> Lockfile:
        """A copy with no signature."""
        return replace(self, signature=None)

    def with_signature(self, sig: Signature) -> Lockfile:
        """A copy carrying ``sig`` (not verified here)."""
        return replace(self, signature=sig)

    # ------------------------------------------------------------------ serialisation

    def to_json(self, *, include_signature: bool = True) -> dict[str, Any]:
        """The plain JSON object form (fresh, mutable dicts and lists).

        Raises ``ValueError`` if an entrypoint names an artifact URL the lock
        does not pin (such a lock would not parse again).
        """
        self._check_references()
        out: dict[str, Any] = {k: _thaw_json(v) for k, v in self.extra.items()}
        out.update(
            version=self.version,
            repos={k: v.to_json() for k, v in self.repos.items()},
            artifacts={k: v.to_json() for k, v in self.artifacts.items()},
        )
        if include_signature and self.signature is not None:
            out["signature"] = self.signature.to_json()
        return out

    def to_bytes(self) -> bytes:
        """Canonical bytes: sorted keys, 2-space indent, UTF-8, trailing newline."""
        return _canonical(self.to_json())

    def canonical_unsigned_bytes(self) -> bytes:
        """The canonical bytes without the ``signature`` field: what a signature covers."""
        return _canonical(self.to_json(include_signature=False))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_bytes` to ``path`` atomically.

        The bytes go to a temp file in the same directory, are fsynced, and
        replace ``path`` in one rename; a crash leaves either the old or the
        new file, never a mix. The existing file's permission bits are kept;
        a new file gets 0644.
        """
        data = self.to_bytes()
        target = Path(path)
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            mode = 0o644
        write_bytes(target, data, mode=mode)

    def _check_references(self) -> None:
        for key, repo in self.repos.items():
            for name, ep in repo.entrypoints.items():
                for url in ep.artifacts:
                    if url not in self.artifacts:
                        raise ValueError(
                            f"repos[{key!r}].entrypoints[{name!r}] names artifact {url!r} "
                            "which the lock does not pin; add it with with_artifact() first"
                        )


def _canonical(obj: Mapping[str, Any]) -> bytes:
    return canonical_json(obj, indent=2) + b"\n"


# --------------------------------------------------------------------------- field predicates
# Each returns None when the value is fine, otherwise "expected ..., found ...".


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _found(value: object) -> str:
    text = json.dumps(value, ensure_ascii=True) if _jsonable(value) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _jsonable(value: object) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def _bad_chars(value: str) -> bool:
    """White space, or a control, bidi, zero-width or invisible character (a URL or key that reads as another)."""
    return any(ch.isspace() for ch in value) or has_hidden(value)


def _is_url(value: object) -> bool:
    return isinstance(value, str) and bool(_URL.fullmatch(value)) and not _bad_chars(value)


def _is_repo_key(value: object) -> bool:
    return isinstance(value, str) and bool(value) and not _bad_chars(value)


def _is_entrypoint_name(value: object) -> bool:
    return isinstance(value, str) and value.isidentifier()


def _string_problem(value: object, what: str) -> str | None:
    if not isinstance(value, str):
        return f"expected {what}, found {_found(value)}"
    if not value or _bad_chars(value):
        return (
            f"expected {what} (non-empty, no whitespace, control, bidi or invisible characters), found {_found(value)}"
        )
    return None


def _remote_problem(value: object) -> str | None:
    problem = _string_problem(value, "the git remote URL")
    if problem is None and cast(str, value).startswith("git+"):
        return f"expected the URL git talks to, without the `git+` prefix, found {_found(value)}"
    return problem


def _ref_problem(value: object) -> str | None:
    problem = _string_problem(value, "a branch or tag name")
    if problem is None:
        ref = cast(str, value)
        if ref.startswith(_REF_PREFIXES):
            return f"expected the bare branch or tag name without a heads/, tags/ or refs/ prefix, found {_found(ref)}"
        if ref.startswith("-") or ".." in ref:
            return f"expected a plain branch or tag name, found {_found(ref)}"
    return problem


def _ref_type_problem(value: object) -> str | None:
    if value not in ("branch", "tag") or not isinstance(value, str):
        return f'expected "branch" or "tag", found {_found(value)}'
    return None


def _commit_problem(value: object) -> str | None:
    if not isinstance(value, str) or not _HEX40_64.fullmatch(value):
        return f"expected a full commit id (40 or 64 lowercase hex digits), found {_found(value)}"
    return None


def _hex64_problem(value: object) -> str | None:
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        return f"expected a sha256 digest (64 lowercase hex digits), found {_found(value)}"
    return None


def _input_spec_problem(shape: object, dtype: object) -> str | None:
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_SHAPE_DIMS:
        return f"shape: expected a list of at most {_MAX_SHAPE_DIMS} non-negative integers, found {_found(shape)}"
    if not all(_is_int(d) and d >= 0 for d in shape):
        return f"shape: expected non-negative integers, found {_found(list(shape))}"
    if dtype not in DTYPES or not isinstance(dtype, str):
        return f"dtype: expected one of {', '.join(sorted(DTYPES))}, found {_found(dtype)}"
    return example_input_size_problem(shape, DTYPE_BYTES[dtype])


def example_input_size_problem(shape: Sequence[int], itemsize: int) -> str | None:
    """Why one example input of ``shape`` (elements of ``itemsize`` bytes) is too large, or ``None``.

    Computed from the shape alone, before anything is allocated; see :data:`MAX_EXAMPLE_INPUT_ELEMENTS`.
    """
    elements = math.prod(shape)
    if elements > MAX_EXAMPLE_INPUT_ELEMENTS or elements * itemsize > MAX_EXAMPLE_INPUT_BYTES:
        return (
            f"shape: expected at most {MAX_EXAMPLE_INPUT_ELEMENTS} elements and {MAX_EXAMPLE_INPUT_BYTES} bytes "
            f"per example input, found {list(shape)} ({elements} elements, {elements * itemsize} bytes)"
        )
    return None


def example_inputs_total_problem(sizes_bytes: Sequence[int]) -> str | None:
    """Why a set of example inputs of these sizes is too large together, or ``None``."""
    if len(sizes_bytes) > MAX_EXAMPLE_INPUTS:
        return f"expected at most {MAX_EXAMPLE_INPUTS} example inputs, found {len(sizes_bytes)}"
    if sum(sizes_bytes) > MAX_EXAMPLE_INPUTS_TOTAL_BYTES:
        return (
            f"expected example inputs of at most {MAX_EXAMPLE_INPUTS_TOTAL_BYTES} bytes together, "
            f"found {sum(sizes_bytes)}"
        )
    return None


# --------------------------------------------------------------------------- parser

_PathPart: TypeAlias = "str | int"


def _format_path(path: tuple[_PathPart, ...]) -> str:
    """Render a JSON path the way users read it: ``repos["o/r:v1"].entrypoints["m"].artifacts[0]``."""
    out = ""
    prev: _PathPart | None = None
    for depth, part in enumerate(path):
        if isinstance(part, int):
            out += f"[{part}]"
        elif depth == 0:
            out = part
        elif (prev in _MAP_FIELDS and not (prev == "artifacts" and depth > 1)) or not part.isidentifier():
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
        else:
            out += f".{part}"
        prev = part
    return out or "(top level)"


# Fields whose values are maps keyed by user data (specs, URLs, names).
_MAP_FIELDS = frozenset({"repos", "artifacts", "entrypoints", "args", "outputs"})


@dataclass(frozen=True)
class _Positions:
    """Where each object key and array element starts in the raw text."""

    keys: Mapping[tuple[_PathPart, ...], int]
    duplicate: tuple[tuple[_PathPart, ...], int] | None


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]|[^\s{}\[\],:"]+')


def _index_positions(text: str) -> _Positions:
    """Tokenise ``text`` (already known to be mostly valid JSON) and map JSON paths to offsets.

    Used only to point error messages at a line; it never decides validity.
    """
    keys: dict[tuple[_PathPart, ...], int] = {}
    duplicate: tuple[tuple[_PathPart, ...], int] | None = None
    # Each frame: [is_object, current key or index, expecting a key / element pending].
    stack: list[list[Any]] = []
    path: list[_PathPart] = []
    for match in _TOKEN.finditer(text):
        tok, pos = match.group(), match.start()
        top = stack[-1] if stack else None
        if top is not None and not top[0] and top[2] and tok not in ("]", ","):
            keys.setdefault((*path, top[1]), pos)
            top[2] = False
        if top is not None and top[0] and top[2] and tok.startswith('"'):
            try:
                key = json.loads(tok)
            except ValueError:
                break
            top[1], top[2] = key, False
            full = (*path, key)
            if full in keys and duplicate is None:
                duplicate = (full, pos)
            keys.setdefault(full, pos)
        elif tok in ("{", "["):
            if top is not None:
                path.append(top[1])
            stack.append([tok == "{", None if tok == "{" else 0, True])
        elif tok in ("}", "]"):
            if not stack:
                break
            stack.pop()
            if stack:
                path.pop()
        elif tok == "," and top is not None:
            if not top[0]:
                top[1] += 1
            top[2] = True
    return _Positions(keys=keys, duplicate=duplicate)


def _line_col_of(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


class _Parser:
    """One parse of one document; knows the raw text so errors can point into it."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.source = source
        self.text = ""
        self._index: _Positions | None = None

    # -- errors

    def _positions(self) -> _Positions:
        if self._index is None:
            self._index = _index_positions(self.text)
        return self._index

    def _line_col(self, path: tuple[_PathPart, ...]) -> tuple[int, int] | None:
        """Position of ``path`` (or its longest located prefix) in the raw text."""
        keys = self._positions().keys
        for end in range(len(path), 0, -1):
            pos = keys.get(path[:end])
            if pos is not None:
                return _line_col_of(self.text, pos)
        return None

    def _where(self, line_col: tuple[int, int] | None) -> str:
        if line_col is None:
            return self.source
        return f"{self.source} line {line_col[0]} column {line_col[1]}"

    def error(self, path: tuple[_PathPart, ...], problem: str, fix: str = _FIX) -> LockInvalid:
        where = self._where(self._line_col(path))
        return LockInvalid(f"{where}: {_format_path(path)}: {problem}; {fix}")

    # -- top level

    def parse(self) -> Lockfile:
        try:
            self.text = self.data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LockInvalid(
                f"{self.source} byte {exc.start}: expected UTF-8 JSON, found an invalid byte sequence; {_FIX}"
            ) from None
        if self.text.startswith("\ufeff"):
            raise LockInvalid(f"{self.source} line 1 column 1: expected JSON, found a byte-order mark; {_FIX}")
        try:
            # Bounded before parsing (later steps recurse): the one scanner every untrusted JSON
            # document goes through; only depth is limited here, size was capped on reading.
            check_bounds(self.data, _DEPTH_ONLY)
        except JsonRefusedError:
            raise LockInvalid(
                f"{self.source}: expected JSON nested at most {_MAX_DEPTH} levels, found deeper nesting; {_FIX}"
            ) from None
        try:
            raw = parse_strict(self.text)
        except json.JSONDecodeError as exc:
            raise LockInvalid(
                f"{self.source} line {exc.lineno} column {exc.colno}: {exc.msg}; "
                "expected valid JSON; fix the syntax or regenerate the lock with `securehub lock`",
                expected="valid JSON",
                found=f"{exc.msg} at line {exc.lineno} column {exc.colno}",
                remedy="fix the syntax or regenerate the lock with `securehub lock`",
            ) from None
        except JsonRefusedError as exc:
            if exc.key is not None:
                # A duplicate key is a classic tampering trick: reviewers see one
                # value, the parser keeps the other. Refuse instead of choosing.
                raise self._duplicate(exc.key) from None
            raise LockInvalid(f"{self.source}: expected plain JSON, found {exc}; {_FIX}") from None
        except ValueError as exc:
            raise LockInvalid(f"{self.source}: {exc}; {_FIX}") from None
        self._check_strings(raw, ())
        return self._lock(raw)

    def _duplicate(self, key: str) -> LockInvalid:
        dup = self._positions().duplicate
        if dup is None:  # the scanner and json disagree; still refuse
            where, shown = self.source, json.dumps(key, ensure_ascii=False)
        else:
            path, pos = dup
            where, shown = self._where(_line_col_of(self.text, pos)), _format_path(path)
        return LockInvalid(
            f"{where}: {shown}: expected each key once in an object, found it twice (a duplicate key "
            f"can show reviewers one value while a parser uses the other); {_FIX}"
        )

    def _check_strings(self, value: Any, path: tuple[_PathPart, ...]) -> None:
        # json.loads admits lone surrogates ("\ud800"), which cannot be
        # written back as UTF-8; refuse them so every lock re-serialises.
        if isinstance(value, str):
            self._check_str(value, path)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self._check_strings(v, (*path, i))
        elif isinstance(value, dict):
            for k, v in value.items():
                self._check_str(k, path)
                self._check_strings(v, (*path, k))

    def _check_str(self, value: str, path: tuple[_PathPart, ...]) -> None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise self.error(path, f"expected valid Unicode text, found a lone surrogate in {value!r}") from None

    def _object(
        self,
        value: Any,
        path: tuple[_PathPart, ...],
        *,
        required: frozenset[str],
        known: frozenset[str] | None,
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"expected a JSON object, found {_found(value)}")
        missing = sorted(required - set(value))
        if missing:
            raise self.error(path, f"expected field(s) {', '.join(missing)}, found them missing")
        if known is not None:
            unknown = sorted(set(value) - known)
            if unknown:
                raise self.error(
                    (*path, unknown[0]),
                    f"expected only the fields {', '.join(sorted(known))}, "
                    f"found unknown field {json.dumps(unknown[0], ensure_ascii=False)}",
                )
        return value

    def _check(self, path: tuple[_PathPart, ...], problem: str | None) -> None:
        if problem is not None:
            raise self.error(path, problem)

    def _extra(self, obj: Mapping[str, Any], known: frozenset[str], path: tuple[_PathPart, ...]) -> dict[str, Any]:
        extra = {k: v for k, v in obj.items() if k not in known}
        for k, v in extra.items():
            try:
                _freeze_json(v)
            except ValueError as exc:
                raise self.error((*path, k), str(exc)) from None
        return extra

    def _lock(self, raw: Any) -> Lockfile:
        top = self._object(raw, (), required=frozenset({"version"}), known=None)
        version = top["version"]
        if not _is_int(version) or version != LOCK_VERSION:
            raise self.error(
                ("version",),
                f"expected {LOCK_VERSION}, found {_found(version)}",
                "this securehub reads only lock format version 1; upgrade securehub or regenerate the lock",
            )
        repos_raw = self._object(top.get("repos", {}), ("repos",), required=frozenset(), known=None)
        artifacts_raw = self._object(top.get("artifacts", {}), ("artifacts",), required=frozenset(), known=None)

        artifacts: dict[str, ArtifactEntry] = {}
        for url, art in artifacts_raw.items():
            artifacts[url] = self._artifact(url, art)

        repos: dict[str, RepoEntry] = {}
        for key, entry in repos_raw.items():
            repos[key] = self._repo(key, entry, artifacts)

        signature = None
        if top.get("signature") is not None:
            signature = self._signature(top["signature"])

        extra = self._extra(top, _TOP_KEYS, ())
        return Lockfile(version=LOCK_VERSION, repos=repos, artifacts=artifacts, signature=signature, extra=extra)

    def _artifact(self, url: str, raw: Any) -> ArtifactEntry:
        path: tuple[_PathPart, ...] = ("artifacts", url)
        if not _is_url(url):
            raise self.error(path, f"expected an absolute URL as the key, found {_found(url)}")
        obj = self._object(raw, path, required=_ARTIFACT_KEYS, known=_ARTIFACT_KEYS)
        self._check((*path, "sha256"), _hex64_problem(obj["sha256"]))
        size = obj["size"]
        if not _is_int(size) or size < 0:
            raise self.error((*path, "size"), f"expected a non-negative integer byte count, found {_found(size)}")
        return ArtifactEntry(sha256=obj["sha256"], size=size)

    def _repo(self, key: str, raw: Any, artifacts: Mapping[str, ArtifactEntry]) -> RepoEntry:
        path: tuple[_PathPart, ...] = ("repos", key)
        if not _is_repo_key(key):
            raise self.error(path, f"expected a repo spec (no whitespace or control characters), found {_found(key)}")
        required = _REPO_KEYS - {"entrypoints"}
        obj = self._object(raw, path, required=required, known=None)
        self._check((*path, "remote"), _remote_problem(obj["remote"]))
        self._check((*path, "ref"), _ref_problem(obj["ref"]))
        self._check((*path, "ref_type"), _ref_type_problem(obj["ref_type"]))
        self._check((*path, "commit"), _commit_problem(obj["commit"]))
        self._check((*path, "tree_sha256"), _hex64_problem(obj["tree_sha256"]))
        eps_raw = self._object(obj.get("entrypoints", {}), (*path, "entrypoints"), required=frozenset(), known=None)
        entrypoints = {
            name: self._entrypoint((*path, "entrypoints", name), name, ep, artifacts) for name, ep in eps_raw.items()
        }
        return RepoEntry(
            remote=obj["remote"],
            ref=obj["ref"],
            ref_type=obj["ref_type"],
            commit=obj["commit"],
            tree_sha256=obj["tree_sha256"],
            entrypoints=entrypoints,
            extra=self._extra(obj, _REPO_KEYS, path),
        )

    def _entrypoint(
        self, path: tuple[_PathPart, ...], name: str, raw: Any, artifacts: Mapping[str, ArtifactEntry]
    ) -> EntrypointEntry:
        if not _is_entrypoint_name(name):
            raise self.error(path, f"expected an entrypoint name (a Python identifier), found {_found(name)}")
        obj = self._object(raw, path, required=frozenset(), known=_ENTRYPOINT_KEYS)
        urls_raw = obj.get("artifacts", [])
        if not isinstance(urls_raw, list):
            raise self.error((*path, "artifacts"), f"expected a list of artifact URLs, found {_found(urls_raw)}")
        seen: set[str] = set()
        for i, url in enumerate(urls_raw):
            upath = (*path, "artifacts", i)
            if not _is_url(url):
                raise self.error(upath, f"expected an absolute artifact URL, found {_found(url)}")
            if url in seen:
                raise self.error(upath, f"expected each URL once, found {_found(url)} twice")
            seen.add(url)
            if url not in artifacts:
                # An entrypoint allowed to fetch an unpinned URL would be an
                # entry with no digest: refuse it (all-or-nothing, like pip
                # --require-hashes).
                raise self.error(
                    upath,
                    f"expected a URL pinned under top-level artifacts, found {_found(url)} with no "
                    "sha256 or size recorded",
                )
        example_inputs: tuple[InputSpec, ...] | None = None
        if obj.get("example_inputs") is not None:
            inputs_raw = obj["example_inputs"]
            if not isinstance(inputs_raw, list):
                raise self.error(
                    (*path, "example_inputs"),
                    f"expected a list of {{shape, dtype}} objects, found {_found(inputs_raw)}",
                )
            specs = []
            for i, spec in enumerate(inputs_raw):
                ipath = (*path, "example_inputs", i)
                sobj = self._object(spec, ipath, required=_INPUT_KEYS, known=_INPUT_KEYS)
                problem = _input_spec_problem(sobj["shape"], sobj["dtype"])
                if problem:
                    field_name = problem.split(":", 1)[0]
                    raise self.error((*ipath, field_name), problem.split(": ", 1)[1])
                specs.append(InputSpec(shape=tuple(sobj["shape"]), dtype=sobj["dtype"]))
            total = example_inputs_total_problem([x.nbytes for x in specs])
            if total:
                raise self.error((*path, "example_inputs"), total)
            example_inputs = tuple(specs)
        args: dict[str, Any] | None = None
        if obj.get("args") is not None:
            args = self._object(obj["args"], (*path, "args"), required=frozenset(), known=None)
            try:
                _freeze_json(args)
            except ValueError as exc:
                raise self.error((*path, "args"), str(exc)) from None
        outputs = self._outputs((*path, "outputs"), obj.get("outputs", {}))
        return EntrypointEntry(artifacts=tuple(urls_raw), example_inputs=example_inputs, args=args, outputs=outputs)

    def _outputs(self, path: tuple[_PathPart, ...], raw: Any) -> dict[str, OutputPin]:
        """``outputs``: args_sha256 -> exactly ``{state_sha256, config_sha256, program_sha256}``."""
        obj = self._object(raw, path, required=frozenset(), known=None)
        pins: dict[str, OutputPin] = {}
        for digest, value in obj.items():
            opath = (*path, digest)
            if _hex64_problem(digest):
                raise self.error(
                    opath, f"expected an args_sha256 key (64 lowercase hex digits), found {_found(digest)}"
                )
            pin = self._object(value, opath, required=_OUTPUT_KEYS, known=_OUTPUT_KEYS)
            self._check((*opath, "state_sha256"), _hex64_problem(pin["state_sha256"]))
            self._check((*opath, "config_sha256"), _hex64_problem(pin["config_sha256"]))
            if pin["program_sha256"] is not None:
                problem = _hex64_problem(pin["program_sha256"])
                self._check((*opath, "program_sha256"), problem and f"{problem} or null")
            pins[digest] = OutputPin(pin["state_sha256"], pin["config_sha256"], pin["program_sha256"])
        return pins

    def _signature(self, raw: Any) -> Signature:
        path: tuple[_PathPart, ...] = ("signature",)
        obj = self._object(raw, path, required=_SIGNATURE_KEYS, known=_SIGNATURE_KEYS)
        for name in ("keyid", "alg", "sig"):
            value = obj[name]
            if not isinstance(value, str) or not value:
                raise self.error((*path, name), f"expected a non-empty string, found {_found(value)}")
        return Signature(keyid=obj["keyid"], alg=obj["alg"], sig=obj["sig"])
