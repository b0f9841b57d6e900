"""The trust policy (SPEC section 8): what securehub may fetch, run and load.

A :class:`Policy` is an immutable, fully validated value. It is loaded from
YAML with a safe composer (see :mod:`securehub.config._policy_schema`): unknown keys,
wrong types, out-of-range values, anchors/aliases, duplicate keys and
non-data tags are refused with :class:`~securehub.errors.PolicyInvalid`
naming the key path and line. Nothing here touches the network.

Guarantees:

* every ``Policy`` instance, however it was built, has passed validation;
* ``policy.sha256`` is the hex SHA-256 of the canonical JSON of the
  *effective* (merged) policy, so two files with the same effect hash alike;
* keys a policy (and its ``extends`` chain) leaves out take the values of the
  built-in ``default`` policy -- the policy used when none is given.

Callers still decide *when* to ask: the helpers below (:meth:`Policy.repo_allowed`,
:meth:`Policy.host_allowed`, :meth:`Policy.ref_allowed`, ...) only answer.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from fnmatch import fnmatchcase
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Final, Literal, TypeAlias, cast

from securehub._util.canonical import canonical_json
from securehub._util.net import rewrite_by_prefix
from securehub._util.regular import NotRegularFileError, read_regular
from securehub.config import _policy_schema as _schema
from securehub.config._policy_schema import BUILTIN_NAMES, Loc, YNode
from securehub.errors import PolicyInvalid

__all__ = [
    "BUILTIN_POLICIES",
    "ArtifactsPolicy",
    "FrozenMap",
    "LockPolicy",
    "Policy",
    "ReconstructPolicy",
    "RefsPolicy",
    "ReposPolicy",
    "SandboxPolicy",
    "SignaturesPolicy",
]

#: The names :meth:`Policy.load` treats as built-in policies rather than paths.
BUILTIN_POLICIES: Final = BUILTIN_NAMES

#: Deepest ``extends`` chain accepted (a chain is refused if it loops).
_MAX_EXTENDS: Final = 8

_ENV_POLICY: Final = "SECUREHUB_POLICY"

RefsAllow: TypeAlias = Literal["tags", "branches", "any"]
LockMode: TypeAlias = Literal["required", "auto", "optional"]
OutputsMode: TypeAlias = Literal["required", "verify", "off"]
Network: TypeAlias = Literal["deny", "allow"]
Filesystem: TypeAlias = Literal["confined", "open"]
Isolation: TypeAlias = Literal["require", "best-effort"]
Strategy: TypeAlias = Literal["trusted", "export", "source"]
ExportSizes: TypeAlias = Literal["batch", "any"]
ArtifactFormat: TypeAlias = Literal["safetensors", "pickle"]


class FrozenMap(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (used for ``artifacts.mirrors``)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str] | None = None) -> None:
        self._data: dict[str, str] = dict(data or {})

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._data) == dict(other.items())

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


@dataclass(frozen=True, kw_only=True)
class _Section:
    """Base of the policy sections: lists are stored as tuples, mappings as :class:`FrozenMap`."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
            elif isinstance(value, Mapping) and not isinstance(value, FrozenMap):
                object.__setattr__(self, f.name, FrozenMap(value))

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready data: tuples become lists, mappings become dicts."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


@dataclass(frozen=True, kw_only=True)
class ReposPolicy(_Section):
    """Which repositories may be used, and limits on fetched trees (``archive-unsafe`` beyond them).

    ``git_timeout_s``: wall-clock seconds one git network operation (``ls-remote``, the fetch of
    one commit) may take, so a git server that stalls mid-pack, sends an endless pack or an
    endless ref advertisement fails with ``network`` instead of holding the load open; git and
    its helpers are killed as a process group and nothing is cached. ``git_memory_mb``: the
    address space of each git process (``RLIMIT_AS``), so an endless ref advertisement ends in
    an allocation failure (``network``) rather than exhausting memory. The largest file git may
    write (an endless pack) follows from ``max_tree_bytes`` and ``max_files``.
    """

    allow: tuple[str, ...] = ("*",)
    deny: tuple[str, ...] = ()
    local: bool = True
    max_files: int = 100_000
    max_tree_bytes: int = 2 * 1024**3
    git_timeout_s: int = 300
    git_memory_mb: int = 4096


@dataclass(frozen=True, kw_only=True)
class RefsPolicy(_Section):
    """Which kinds of refs may be resolved; ``tag_pattern`` applies to every tag."""

    allow: RefsAllow = "any"
    tag_pattern: str = "*"


@dataclass(frozen=True, kw_only=True)
class LockPolicy(_Section):
    """How ``hub.lock`` is enforced: required | auto | optional (SPEC section 8).

    ``outputs`` (output pinning, SPEC section 4): ``verify`` -- an output the
    lock pins for the entrypoint and argument set must match
    (``output-mismatch``), an unpinned one loads (and is recorded under
    ``mode: auto``); ``required`` -- as ``verify``, and an unpinned one is
    refused (``not-locked``) before the sandbox runs; ``off`` -- outputs are
    neither checked nor recorded.
    """

    mode: LockMode = "auto"
    outputs: OutputsMode = "verify"


@dataclass(frozen=True, kw_only=True)
class ArtifactsPolicy(_Section):
    """Where checkpoints may come from, in which formats, how large.

    ``pickle_in_parent``: whether ``load_state_dict_from_url`` may unpickle a
    (scanned) pickle checkpoint in the calling process with
    ``torch.load(weights_only=True)``; when false it is unpickled only inside
    the sandbox and crosses back as safetensors (:mod:`securehub.pipeline.convert`).

    ``download_timeout_s``: wall-clock seconds one download may take as a whole
    (connect, redirects, body), so a stalling or byte-dripping server fails
    with ``network`` instead of holding the load open.
    """

    hosts: tuple[str, ...] = ("*",)
    formats: tuple[ArtifactFormat, ...] = ("safetensors", "pickle")
    max_bytes: int = 10 * 1024**3
    mirrors: FrozenMap = field(default_factory=FrozenMap)
    pickle_in_parent: bool = True
    download_timeout_s: int = 3600


@dataclass(frozen=True, kw_only=True)
class SignaturesPolicy(_Section):
    """Ed25519 keys (base64 of the raw 32 bytes) one of which must sign the lock, when any are listed."""

    trusted_keys: tuple[str, ...] = ()

    def public_keys(self) -> tuple[bytes, ...]:
        """The raw 32-byte public keys, in the order listed (validated at load time)."""
        return tuple(base64.b64decode(k, validate=True) for k in self.trusted_keys)


@dataclass(frozen=True, kw_only=True)
class SandboxPolicy(_Section):
    """Confinement and limits for the child that runs ``hubconf.py``."""

    network: Network = "deny"
    filesystem: Filesystem = "confined"
    isolation: Isolation = "require"
    memory_mb: int = 8192
    cpu_s: int = 600
    timeout_s: int = 900
    max_output_mb: int = 16384
    max_procs: int = 64
    max_open_files: int = 1024
    max_file_mb: int = 16384


@dataclass(frozen=True, kw_only=True)
class ReconstructPolicy(_Section):
    """Reconstruction strategies in the order tried, and the packages ``trusted`` may import from."""

    strategies: tuple[Strategy, ...] = ("trusted", "export")
    trusted_modules: tuple[str, ...] = ("torch.nn",)
    #: ``batch``: an exported program takes other batch sizes only; ``any``: also other sizes of the other
    #: dims where torch can trace them (a slower export, and a slower rebuild on every load).
    export_sizes: ExportSizes = "batch"


@dataclass(frozen=True, kw_only=True)
class Policy:
    """A validated trust policy. Build it with :meth:`load`, :meth:`from_yaml` or :meth:`from_dict`.

    Constructing it directly (``Policy(sandbox=SandboxPolicy(...))``) is
    allowed and validated the same way; missing sections take the built-in
    ``default`` values. ``name`` is the built-in name or the path/source it
    was loaded from and does not take part in equality or ``sha256``.
    """

    version: int = 1
    repos: ReposPolicy = field(default_factory=ReposPolicy)
    refs: RefsPolicy = field(default_factory=RefsPolicy)
    lock: LockPolicy = field(default_factory=LockPolicy)
    artifacts: ArtifactsPolicy = field(default_factory=ArtifactsPolicy)
    signatures: SignaturesPolicy = field(default_factory=SignaturesPolicy)
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)
    reconstruct: ReconstructPolicy = field(default_factory=ReconstructPolicy)
    name: str = field(default="<code>", compare=False)
    sha256: str = field(init=False, compare=False, repr=False)

    _SECTION_TYPES: ClassVar[Mapping[str, type[_Section]]] = {
        "repos": ReposPolicy,
        "refs": RefsPolicy,
        "lock": LockPolicy,
        "artifacts": ArtifactsPolicy,
        "signatures": SignaturesPolicy,
        "sandbox": SandboxPolicy,
        "reconstruct": ReconstructPolicy,
    }

    def __post_init__(self) -> None:
        for section, cls in self._SECTION_TYPES.items():
            if not isinstance(getattr(self, section), cls):
                raise TypeError(f"Policy.{section} must be a {cls.__name__}")
        data = self.to_dict()
        # Re-validate whatever way this instance was built: one rule set, no unchecked policies.
        _schema.validate_document(_schema.from_plain(data, Loc(self.name, 0)), self.name)
        object.__setattr__(self, "sha256", hashlib.sha256(canonical_json(data)).hexdigest())

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, spec: str | os.PathLike[str] | Policy | None = None) -> Policy:
        """Load a policy: ``None`` -> env ``SECUREHUB_POLICY`` -> ``"default"``.

        A ``Policy`` is returned as is; the bare names ``strict``, ``default``
        and ``permissive`` select the built-ins shipped inside the package
        (independent of the working directory); anything else is a path to a
        YAML file. Every problem, including a missing file, raises
        :class:`PolicyInvalid`.
        """
        if isinstance(spec, Policy):
            return spec
        if spec is None:
            spec = os.environ.get(_ENV_POLICY) or "default"
        if isinstance(spec, str) and spec in BUILTIN_NAMES:
            return _builtin(spec)
        if not isinstance(spec, str | os.PathLike):
            raise TypeError(f"policy must be a name, a path or a Policy, not {type(spec).__name__}")
        display = os.fspath(spec)
        path = Path(display)
        text = _read_policy_file(path, display, referrer=None)
        root = _schema.parse_yaml(text, display)
        merged = _resolve(root, display, path.parent, _identity(path), ())
        return _build(merged, display)

    @classmethod
    def from_yaml(cls, text: str, *, source: str) -> Policy:
        """Validate policy YAML ``text``; ``source`` names it in errors and becomes ``name``.

        A relative ``extends:`` path is resolved against the directory of ``source``.
        """
        if len(text.encode("utf-8", "surrogatepass")) > _schema.MAX_POLICY_BYTES:
            _schema.fail(
                "(top level)",
                Loc(source, 0),
                f"expected at most {_schema.MAX_POLICY_BYTES} bytes of policy, found more",
                "a policy is a short file; check you passed the right one",
            )
        root = _schema.parse_yaml(text, source)
        path = Path(source)
        return _build(_resolve(root, source, path.parent, _identity(path), ()), source)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], *, source: str = "<dict>") -> Policy:
        """Validate plain data shaped like the YAML (``version: 1`` required, ``extends`` allowed)."""
        root = _schema.from_plain(data, Loc(source, 0))
        return _build(_resolve(root, source, Path.cwd(), "<dict>:" + source, ()), source)

    def to_dict(self) -> dict[str, object]:
        """The effective policy as plain JSON-ready data (no ``name``, no ``extends``)."""
        out: dict[str, object] = {"version": self.version}
        for section in self._SECTION_TYPES:
            out[section] = cast(_Section, getattr(self, section)).to_dict()
        return out

    # ------------------------------------------------------------------ questions

    def repo_allowed(self, name: str, *aliases: str) -> bool:
        """Whether the repo called ``name`` (``owner/repo`` or a remote URL) may be used.

        Pass every name the repo goes by (e.g. ``"owner/repo"`` and its remote
        URL) as ``aliases``: it is denied if *any* name matches a ``deny``
        glob, and allowed only if some name matches an ``allow`` glob. Deny
        wins. ``allow`` globs match case-sensitively (``fnmatchcase``); ``deny``
        globs match case-insensitively, because GitHub serves ``Evil/Repo``
        and ``evil/repo`` alike and a case change must not slip past a deny.
        """
        names = [n for n in (name, *aliases) if n]
        if not names:
            return False
        for n in names:
            if any(fnmatchcase(n.lower(), pattern.lower()) for pattern in self.repos.deny):
                return False
        return any(fnmatchcase(n, pattern) for n in names for pattern in self.repos.allow)

    def host_allowed(self, host: str) -> bool:
        """Whether an artifact host matches ``artifacts.hosts`` (case-insensitive, port ignored).

        Accepts ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address;
        anything else (a URL, ``user@host``, an empty string) is not a host and
        is refused. The http-only-to-loopback rule is the fetcher's, not this.
        """
        normal = _normalize_host(host)
        if normal is None:
            return False
        return any(fnmatchcase(normal, pattern.lower().rstrip(".")) for pattern in self.artifacts.hosts)

    def ref_allowed(self, ref: str, ref_type: str) -> bool:
        """Whether a resolved ref may be used. ``ref_type`` is ``"tag"`` or ``"branch"``.

        ``ref`` is the bare name (no ``heads/``/``tags/`` prefix). Tags must
        also match ``refs.tag_pattern`` whatever ``refs.allow`` says.
        """
        if ref_type not in ("tag", "branch"):
            raise ValueError(f"ref_type must be 'tag' or 'branch', not {ref_type!r}")
        if not ref:
            return False
        if ref_type == "branch":
            return self.refs.allow in ("branches", "any")
        return self.refs.allow in ("tags", "any") and fnmatchcase(ref, self.refs.tag_pattern)

    def strategy_allowed(self, name: str) -> bool:
        """Whether the reconstruction strategy ``name`` is listed in ``reconstruct.strategies``."""
        return name in self.reconstruct.strategies

    def format_allowed(self, fmt: str) -> bool:
        """Whether the artifact format ``fmt`` (``safetensors`` or ``pickle``) is allowed."""
        return fmt in self.artifacts.formats

    def mirror_url(self, url: str) -> str | None:
        """``url`` rewritten through ``artifacts.mirrors`` (longest prefix matching at a boundary), or ``None``."""
        return rewrite_by_prefix(url, self.artifacts.mirrors)


# ---------------------------------------------------------------------- internals


def _normalize_host(host: str) -> str | None:
    text = host.strip()
    if not text or "/" in text or "@" in text or any(c.isspace() for c in text):
        return None
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :] if end > 0 else "x"
        if end <= 1 or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, port = text.split(":")
        if port and not port.isdigit():
            return None
    text = text.lower().rstrip(".")
    return text or None


def _identity(path: Path) -> str:
    return "file:" + os.path.realpath(path)


def _near(display: str, hint: str) -> str:
    """``strcit`` -> "did you mean 'strict'?": a mistyped built-in name is the likeliest missing file."""
    close = difflib.get_close_matches(display, sorted(BUILTIN_NAMES), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? {hint}" if close else hint


def _read_policy_file(path: Path, display: str, *, referrer: tuple[str, Loc] | None) -> str:
    """Read a policy file as UTF-8; every failure is :class:`PolicyInvalid`."""
    key, loc = referrer if referrer is not None else ("(policy)", Loc(display, 0))
    hint = "give a built-in name (strict, default, permissive) or the path of a readable YAML policy file"
    try:
        data = read_regular(path, _schema.MAX_POLICY_BYTES)
    except NotRegularFileError as exc:
        _schema.fail(
            key,
            loc,
            f"expected a regular policy file at {json.dumps(display)}, found {exc.found} (not a regular file)",
            "securehub never reads a policy from a pipe or a device; " + hint,
        )
    except FileNotFoundError:
        _schema.fail(key, loc, f"expected a policy file, found no file at {json.dumps(display)}", _near(display, hint))
    except IsADirectoryError:
        _schema.fail(key, loc, f"expected a policy file, found a directory at {json.dumps(display)}", hint)
    except OSError as exc:
        _schema.fail(
            key,
            loc,
            f"expected a readable policy file at {json.dumps(display)}, found {type(exc).__name__}: {exc.strerror}",
            hint,
        )
    if len(data) > _schema.MAX_POLICY_BYTES:
        _schema.fail(
            key,
            loc,
            f"expected at most {_schema.MAX_POLICY_BYTES} bytes of policy, found more in {json.dumps(display)}",
            "a policy is a short file; check you passed the right one",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _schema.fail(
            key,
            loc,
            f"expected UTF-8 text in {json.dumps(display)}, found an invalid byte at offset {exc.start}",
            "save the policy as UTF-8",
        )


def _read_builtin(name: str) -> str:
    resource = resources.files("securehub") / "policies" / f"{name}.yaml"
    try:
        return resource.read_text(encoding="utf-8")
    except OSError as exc:  # a broken installation, not a user mistake: still fail closed
        raise PolicyInvalid(
            f"(policy): expected the built-in policy {name!r} to ship with securehub, found it unreadable "
            f"({type(exc).__name__}); reinstall securehub"
        ) from exc


@lru_cache(maxsize=len(BUILTIN_NAMES))
def _builtin(name: str) -> Policy:
    source = f"{name}.yaml"
    root = _schema.parse_yaml(_read_builtin(name), source)
    return _build(_resolve(root, source, Path.cwd(), "builtin:" + name, ()), name)


def _resolve(
    root: YNode | None,
    source: str,
    base_dir: Path,
    ident: str,
    chain: tuple[tuple[str, str], ...],
) -> dict[str, dict[str, object]]:
    """Validate one document and merge it over its ``extends`` chain (parents first)."""
    doc = _schema.validate_document(root, source)
    chain = (*chain, (ident, source))
    if doc.extends is None:
        return _schema.merge({}, doc.sections)
    target, loc = doc.extends
    if target in BUILTIN_NAMES:
        parent_ident, parent_source = "builtin:" + target, f"{target}.yaml"
    else:
        path = Path(target)
        if not path.is_absolute():
            path = base_dir / path
        parent_ident, parent_source = _identity(path), str(path)
    if any(parent_ident == seen for seen, _ in chain):
        names = " -> ".join([*(src for _, src in chain), parent_source])
        _schema.fail(
            "extends",
            loc,
            f"expected a chain of policies without loops, found a cycle: {names}",
            "remove the 'extends' that closes the loop",
        )
    if len(chain) >= _MAX_EXTENDS:
        _schema.fail(
            "extends",
            loc,
            f"expected at most {_MAX_EXTENDS} policies in an extends chain, found more",
            "flatten the chain",
        )
    if target in BUILTIN_NAMES:
        parent_root = _schema.parse_yaml(_read_builtin(target), parent_source)
        parent_dir = Path.cwd()
    else:
        text = _read_policy_file(path, parent_source, referrer=("extends", loc))
        parent_root = _schema.parse_yaml(text, parent_source)
        parent_dir = path.parent
    parent = _resolve(parent_root, parent_source, parent_dir, parent_ident, chain)
    return _schema.merge(parent, doc.sections)


def _build(merged: Mapping[str, Mapping[str, object]], name: str) -> Policy:
    sections: dict[str, Any] = {}
    for section, cls in Policy._SECTION_TYPES.items():
        sections[section] = cls(**dict(merged.get(section, {})))
    return Policy(version=1, name=name, **sections)
