"""The result store: the on-disk format of verified sandbox results, and nothing about when to use them.

Layout: ``<cache>/results/<key>/`` (read-only) holding ``manifest.json``,
``state.safetensors``, ``config.json`` and, when an exported program was
returned, ``export.json`` + ``program.json``. ``key`` is the sha256 of the
canonical JSON of the inputs (:func:`canonical`); the manifest repeats the
inputs and records the sha256 (and size) of every small file and the
``securehub-state/1`` digest (:mod:`securehub.verify.tensor_digest`) of the
state's tensors. *Which* loads are
stored, and under which key, is the pipeline's decision
(:mod:`securehub.pipeline.result_cache`); this module only writes and
re-verifies entries. It never fetches and never imports the pipeline.

Guarantees (every read is re-verified, SPEC section 4): the manifest must
parse, name this key, and its inputs must hash to the key; every small
file's sha256, the state's size and its tensors' digest must match the
manifest; the directory must hold exactly the expected files; the state file
must be well-formed safetensors.
Anything else raises :class:`~securehub.errors.HashMismatch` (tampered or
corrupt; never silently repaired). The state is read once, each tensor
hashed on a thread pool as soon as it is in memory. The state digest covers
every name, dtype, shape and byte of the tensors a hit returns; the header
bytes themselves are not hashed (they are re-checked by the strict checker
instead, and the rest of a header, ``__metadata__`` and layout, is read by
nothing). Entries appear atomically (built in ``tmp/``, renamed into place)
and are read under the entry's lock. Cache files are re-read under the same
bounds the child's frames had when they arrived: a tampered cache gets no
further than a hostile child.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from securehub._util.canonical import canonical_json
from securehub._util.identity import FileIdentity
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.errors import FormatNotAllowed, HashMismatch, SecureHubError
from securehub.sandbox.wire.messages import (
    CHILD_FRAME_LIMITS,
    CONFIG_JSON_LIMITS,
    EXPORT,
    ExportInfo,
    parse_export,
    unreferenced_export_keys,
)
from securehub.verify.safetensors_check import check_safetensors_result
from securehub.verify.tensor_digest import TensorHasher, file_lines, lines_digest

if TYPE_CHECKING:  # torch only where tensors are loaded: cache/audit/lock commands never import it
    import torch

    from securehub.verify.fast_safetensors import HashedState

__all__ = [
    "CONFIG",
    "EXPORT_META",
    "EXPORT_PROGRAM",
    "MANIFEST",
    "RESULT_FORMAT",
    "STATE",
    "CachedResult",
    "ResultDirs",
    "canonical",
    "load_result",
    "store_result",
    "verified_result_dir",
    "verify_result_dir",
]


class ResultDirs(Protocol):
    """What the result store needs from the cache (:class:`securehub.store.cache.Cache` provides it).

    A protocol rather than an import: ``cache.py`` verifies result entries with
    :func:`verify_result_dir`, so importing it back here would be a cycle.
    """

    def temp_dir(self) -> AbstractContextManager[Path]: ...

    def result_path(self, key: str) -> Path: ...

    def result_lock(self, key: str) -> AbstractContextManager[None]: ...

    def install_result(self, built: Path, key: str, *, replace: bool, check: Callable[[Path], str | None]) -> Path: ...


RESULT_FORMAT: Final = "securehub-result/2"
MANIFEST: Final = "manifest.json"
STATE: Final = "state.safetensors"
CONFIG: Final = "config.json"
EXPORT_META: Final = "export.json"
EXPORT_PROGRAM: Final = "program.json"
_MAX_MANIFEST_BYTES: Final = 16 << 20
# Cache files are re-read under the same bounds the child's frames had when they arrived (a
# tampered cache must not get further than a hostile child): size, depth, items, string size.
_MANIFEST_LIMITS: Final = JsonLimits(_MAX_MANIFEST_BYTES, 64, 1_000_000, 1 << 20)
_EXPORT_META_LIMITS: Final = CHILD_FRAME_LIMITS[EXPORT].json_limits()
# config.json is stored with ensure_ascii (see store_result): a \uXXXX escape is up to 6 bytes per
# character the child sent as UTF-8, so size and string caps grow by that factor; depth and item
# counts, which are what cost memory, stay the child's.
_CONFIG_LIMITS: Final = dataclasses.replace(
    CONFIG_JSON_LIMITS,
    max_bytes=6 * CONFIG_JSON_LIMITS.max_bytes,
    max_str_bytes=6 * CONFIG_JSON_LIMITS.max_str_bytes,
)
_MAX_CONFIG_BYTES: Final = _CONFIG_LIMITS.max_bytes
_MAX_PROGRAM_BYTES: Final = 1 << 30
_MANIFEST_KEYS: Final = frozenset(
    {"format", "key", "inputs", "state_digest", "state_size", "config_sha256", "export", "fetched"}
)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _remedy(key: str) -> str:
    return (
        f"The result cache entry results/{key} was tampered with or is corrupt; nothing from it was used. "
        "Run `securehub cache prune` to remove broken results, or load with force_reload=True to rebuild it "
        "in the sandbox"
    )


def canonical(obj: object) -> bytes:
    """Canonical JSON (sorted keys, no spaces, UTF-8, no NaN): the bytes a result key is the sha256 of."""
    return canonical_json(obj)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- store


def _place_state(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` (a rename on the same file system: no copy), else copy it."""
    try:
        src.rename(dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(src, dst, follow_symlinks=False)


def _file_digest(path: Path) -> str:
    """The ``securehub-state/1`` digest of every tensor of the safetensors file ``path`` (checked first)."""
    check_safetensors_result(path)
    return lines_digest(file_lines(path))


def _placed_digest(src: Path, dst: Path, read: HashedState | None) -> str:
    """Place ``src`` at ``dst``; the state digest of ``dst``, computed again only when ``read``'s cannot be reused.

    ``read``'s digest is reused only when ``dst`` is provably the file that was
    read: unchanged (inode, size, times) right up to the rename, and the very
    inode that arrived at ``dst``. Otherwise (copied across file systems, or
    touched since) ``dst`` is hashed, and must still hold the tensors that were
    read: the module was rebuilt from them (``HashMismatch`` otherwise).
    """
    before = FileIdentity.of(os.lstat(src))
    _place_state(src, dst)
    if read is None or read.state_digest is None:
        return _file_digest(dst)
    after = FileIdentity.of(os.lstat(dst))
    same = before == read.identity and (after.dev, after.ino, after.size, after.mtime_ns) == (
        before.dev, before.ino, before.size, before.mtime_ns
    )  # fmt: skip
    if same:
        check_safetensors_result(dst)
        return read.state_digest
    found = _file_digest(dst)
    if found != read.state_digest:
        raise HashMismatch(
            f"{src}: expected the sandbox's output the module was rebuilt from (state digest {read.state_digest}), "
            f"found {found}: the file changed after it was read, so nothing was stored. Something else writes the "
            "hub dir's tmp/; keep it writable only by its owner, and load again"
        )
    return found


def store_result(
    cache: ResultDirs,
    key: str,
    state_path: Path,
    config: Mapping[str, Any],
    export: ExportInfo | None,
    *,
    inputs: Mapping[str, Any],
    fetched: Sequence[tuple[str, str]] = (),
    replace: bool = False,
    read: HashedState | None = None,
) -> Path:
    """Store one sandbox result under ``results/<key>/`` atomically and read-only; return its path.

    ``inputs`` must hash to ``key`` (``ValueError`` otherwise). ``state_path``
    is *moved* into the entry (renamed when it is on the cache's file system,
    as the sandbox's output directory under ``tmp/`` is; copied otherwise),
    so the entry never shares an inode with a file someone else may write
    afterwards. The state's header is re-checked here (``sandbox-protocol``
    if malformed) and its state digest taken from ``read`` (what the session
    received, or :func:`~securehub.verify.fast_safetensors.read_hashed` of
    ``state_path``) when the stored file is provably the one that was read,
    else computed from the file. An
    existing entry is kept if it verifies (another process stored the same
    result) and raises ``HashMismatch`` if it does not, unless ``replace``
    (``force_reload``) is set, which replaces it.
    """
    if _sha256(canonical(inputs)) != key:
        raise ValueError(f"inputs do not hash to the result key {key}")
    config_bytes = canonical_json(config, ascii_only=True)
    with cache.temp_dir() as work:
        build = work / "result"
        build.mkdir(mode=0o700)
        state_digest = _placed_digest(state_path, build / STATE, read)
        manifest: dict[str, Any] = {
            "format": RESULT_FORMAT,
            "key": key,
            "inputs": dict(inputs),
            "state_digest": state_digest,
            "state_size": (build / STATE).stat().st_size,
            "config_sha256": _sha256(config_bytes),
            "export": None,
            "fetched": [[url, sha] for url, sha in fetched],
        }
        (build / CONFIG).write_bytes(config_bytes)
        if export is not None:
            meta_bytes = canonical(export.to_meta())
            (build / EXPORT_META).write_bytes(meta_bytes)
            (build / EXPORT_PROGRAM).write_bytes(export.program_json)
            manifest["export"] = {"meta_sha256": _sha256(meta_bytes), "program_sha256": _sha256(export.program_json)}
        (build / MANIFEST).write_bytes(canonical(manifest))
        for f in build.iterdir():
            f.chmod(0o444)
        return cache.install_result(build, key, replace=replace, check=verify_result_dir)


# --------------------------------------------------------------------------- load


@dataclass(frozen=True)
class CachedResult:
    """A verified cache entry: every byte below matched the manifest, and the manifest matched the key."""

    key: str
    path: Path
    state: dict[str, torch.Tensor]
    config: dict[str, Any]
    export: ExportInfo | None
    fetched: tuple[tuple[str, str], ...]
    inputs: Mapping[str, Any]
    #: name -> sha256 of each tensor's raw bytes, computed while ``state`` was read (the output pin's
    #: canonical digest is computed from these, not by hashing the tensors again)
    tensor_sha256: Mapping[str, str]


def _read_small(name: str, dir_fd: int, cap: int, remedy: str) -> bytes:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise HashMismatch(
            f"{name}: expected a regular file in the entry, could not open it ({exc.strerror}). {remedy}"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise HashMismatch(f"{name}: expected a regular file, found another kind of entry. {remedy}")
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise HashMismatch(f"{name}: expected at most {cap} bytes, found more. {remedy}")
    return data


def _checked(name: str, dir_fd: int, cap: int, expected: object, remedy: str) -> bytes:
    data = _read_small(name, dir_fd, cap, remedy)
    found = _sha256(data)
    if found != expected:
        raise HashMismatch(f"{name}: expected sha256 {expected} (from the manifest), found {found}. {remedy}")
    return data


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _manifest(key: str, dir_fd: int, remedy: str) -> dict[str, Any]:
    raw = _read_small(MANIFEST, dir_fd, _MAX_MANIFEST_BYTES, remedy)
    try:
        doc = strict_loads(raw, _MANIFEST_LIMITS)
    except JsonRefusedError:
        doc = None
    problem: str | None = None
    if not _encodable(doc):
        problem = "JSON with a canonical form (no lone surrogate escape, no number out of range)"
    elif not isinstance(doc, dict) or set(doc) != _MANIFEST_KEYS:
        problem = f"an object with exactly the keys {sorted(_MANIFEST_KEYS)}"
    elif doc["format"] != RESULT_FORMAT or doc["key"] != key:
        problem = f"format {RESULT_FORMAT!r} and key {key}"
    elif not isinstance(doc["inputs"], dict) or _sha256(canonical(doc["inputs"])) != key:
        problem = f"inputs whose canonical JSON hashes to {key}"
    elif not (_is_hex64(doc["state_digest"]) and _is_hex64(doc["config_sha256"])):
        problem = "64-hex state_digest and config_sha256"
    elif not isinstance(doc["state_size"], int) or isinstance(doc["state_size"], bool) or doc["state_size"] < 0:
        problem = "a non-negative integer state_size"
    elif doc["export"] is not None and not (
        isinstance(doc["export"], dict)
        and set(doc["export"]) == {"meta_sha256", "program_sha256"}
        and all(_is_hex64(v) for v in doc["export"].values())
    ):
        problem = "export: null or {meta_sha256, program_sha256}"
    elif not isinstance(doc["fetched"], list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and _is_hex64(p[1]) for p in doc["fetched"]
    ):
        problem = "fetched: a list of [url, sha256] pairs"
    if problem is not None:
        raise HashMismatch(f"{MANIFEST}: expected {problem}, found {raw[:200]!r}. {remedy}")
    checked: dict[str, Any] = doc
    return checked


def _encodable(doc: object) -> bool:
    """Whether ``doc`` has a canonical JSON form: the strict reader admits a ``"\\ud800"`` escape (a lone
    surrogate) and ``1e999`` (``inf``), which every later digest of the value would fail to encode with a
    ``ValueError`` instead of a refusal (red team 10: a planted entry or a bundle's result)."""
    try:
        canonical_json(doc)
    except ValueError:
        return False
    return True


def _bounded_json(name: str, data: bytes, limits: JsonLimits, remedy: str) -> Any:
    try:
        doc = strict_loads(data, limits)
    except JsonRefusedError as exc:
        raise HashMismatch(f"{name}: expected bounded, strict JSON, found {exc}. {remedy}") from None
    if not _encodable(doc):
        raise HashMismatch(
            f"{name}: expected JSON with a canonical form, found a lone surrogate escape or a number out of "
            f"range. {remedy}"
        )
    return doc


def _expected_files(doc: Mapping[str, Any]) -> set[str]:
    names = {MANIFEST, STATE, CONFIG}
    if doc["export"] is not None:
        names |= {EXPORT_META, EXPORT_PROGRAM}
    return names


def _read_entry(key: str, path: Path, dir_fd: int, *, load_state: bool) -> CachedResult:
    remedy = _remedy(key)
    doc = _manifest(key, dir_fd, remedy)
    present = set(os.listdir(dir_fd))
    if present != _expected_files(doc):
        raise HashMismatch(
            f"results/{key}: expected the files {sorted(_expected_files(doc))}, found {sorted(present)}. {remedy}"
        )
    config = _bounded_json(
        CONFIG, _checked(CONFIG, dir_fd, _MAX_CONFIG_BYTES, doc["config_sha256"], remedy), _CONFIG_LIMITS, remedy
    )
    if not isinstance(config, dict):
        raise HashMismatch(f"{CONFIG}: expected a JSON object, found {type(config).__name__}. {remedy}")
    export: ExportInfo | None = None
    if doc["export"] is not None:
        meta_bytes = _checked(EXPORT_META, dir_fd, _EXPORT_META_LIMITS.max_bytes, doc["export"]["meta_sha256"], remedy)
        meta = _bounded_json(EXPORT_META, meta_bytes, _EXPORT_META_LIMITS, remedy)
        program = _checked(EXPORT_PROGRAM, dir_fd, _MAX_PROGRAM_BYTES, doc["export"]["program_sha256"], remedy)
        try:
            export = parse_export(meta, program)
        except SecureHubError as exc:
            raise HashMismatch(
                f"{EXPORT_META}: expected a securehub-export/1 record, found one that fails: {exc}. {remedy}"
            ) from None
    state: dict[str, torch.Tensor] = {}
    tensor_sha256: dict[str, str] = {}
    tensor_names: list[str] = []
    if load_state:
        state, tensor_sha256 = _read_state(dir_fd, doc, remedy)
    else:
        st = os.stat(STATE, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_size != doc["state_size"]:
            raise HashMismatch(
                f"{STATE}: expected a regular file of {doc['state_size']} bytes, found "
                f"{st.st_size if stat.S_ISREG(st.st_mode) else 'another kind of'} "
                f"{'bytes' if stat.S_ISREG(st.st_mode) else 'entry'}. {remedy}"
            )
        try:
            check_safetensors_result(path / STATE)
            lines = file_lines(path / STATE)
        except SecureHubError as exc:
            raise HashMismatch(f"{STATE}: {exc.message}. {remedy}") from None
        found = lines_digest(lines)
        if found != doc["state_digest"]:
            raise HashMismatch(f"{STATE}: expected state digest {doc['state_digest']}, found {found}. {remedy}")
        tensor_names = list(lines)
    # Tensors under the export prefixes that the program does not map are read and pinned by nothing:
    # refused on the wire (red team 10), so an entry holding them was not stored by this version.
    stray = unreferenced_export_keys(list(state) if load_state else tensor_names, export)
    if stray:
        raise HashMismatch(
            f"{STATE}: expected only tensors the exported program maps under the export prefixes, found "
            f"{len(stray)} it does not ({', '.join(repr(n) for n in stray[:3])}). {remedy}"
        )
    fetched = tuple((str(u), str(s)) for u, s in doc["fetched"])
    return CachedResult(key, path, state, config, export, fetched, doc["inputs"], tensor_sha256)


def _read_state(dir_fd: int, doc: Mapping[str, Any], remedy: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The entry's tensors, read once, and each one's data sha256; ``HashMismatch`` unless they match the manifest.

    Each tensor is hashed on a thread pool as soon as its bytes are in memory
    (while the next ones are read); the file's own sha256 is not computed: the
    ``securehub-state/1`` digest of the tensors returned is what the manifest
    records and what a pinned hit compares with hub.lock.
    """
    from securehub.verify.fast_safetensors import load_verified  # noqa: PLC0415 - lazy: torch, only to read tensors

    with TensorHasher() as hasher:
        try:
            state = load_verified(
                STATE, expected_sha256=None, expected_size=doc["state_size"], dir_fd=dir_fd, remedy=remedy,
                on_tensor=hasher.add,
            )  # fmt: skip
        except FormatNotAllowed as exc:
            raise HashMismatch(f"{STATE}: {exc}. {remedy}") from None
        except FileNotFoundError:
            raise HashMismatch(f"{STATE}: expected the state file, found none. {remedy}") from None
        found = lines_digest(hasher.lines())
        if found != doc["state_digest"]:
            raise HashMismatch(f"{STATE}: expected state digest {doc['state_digest']}, found {found}. {remedy}")
        return state, hasher.data_sha256()


def load_result(cache: ResultDirs, key: str) -> CachedResult | None:
    """The verified entry for ``key``, or ``None`` when there is none. ``HashMismatch`` if it fails any check.

    The state is read once; the ``securehub-state/1`` digest of its tensors
    (each hashed on a thread pool while the next is read) must equal the
    manifest's, and each tensor's data sha256 is returned with the entry, so
    a caller that compares the output with hub.lock's pin hashes nothing again.

    A miss writes nothing (not even the entry's lock file): a lookup is a
    read, and a load refused later must leave the hub dir as it found it. An
    entry installed between the check and the lock is simply a miss this time.
    """
    path = cache.result_path(key)
    if not os.path.lexists(path):
        return None
    with cache.result_lock(key):
        try:
            dir_fd = os.open(path, _DIR_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise HashMismatch(
                f"results/{key}: expected a directory, found another entry ({exc.strerror}). {_remedy(key)}"
            ) from None
        try:
            return _read_entry(key, path, dir_fd, load_state=True)
        finally:
            os.close(dir_fd)


def verified_result_dir(path: Path) -> CachedResult:
    """Re-verify one ``results/<key>`` directory (``key`` is its name) without keeping tensors.

    Every check of a hit except that its tensors are not returned (``state`` is
    empty): the manifest, every file's digest, the state's size and digest,
    the header. ``HashMismatch`` on any failure.
    """
    try:
        dir_fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        raise HashMismatch(f"{path}: expected a result directory, found none ({exc.strerror})") from None
    try:
        return _read_entry(path.name, path, dir_fd, load_state=False)
    finally:
        os.close(dir_fd)


def verify_result_dir(path: Path) -> str | None:
    """Re-verify one ``results/<key>`` directory without loading tensors; ``None`` if sound, else what is wrong."""
    try:
        dir_fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        return f"not a directory ({exc.strerror})"
    try:
        _read_entry(path.name, path, dir_fd, load_state=False)
    except (HashMismatch, SecureHubError) as exc:
        return exc.message
    except (OSError, ValueError) as exc:
        return f"unreadable ({exc})"
    finally:
        os.close(dir_fd)
    return None
