"""The result store: the on-disk format of verified sandbox results, and nothing about when to use them.

Layout: ``<cache>/results/<key>/`` (read-only) holding ``manifest.json``,
``state.safetensors``, ``config.json`` and, when an exported program was
returned, ``export.json`` + ``program.json``. ``key`` is the sha256 of the
canonical JSON of the inputs (:func:`canonical`); the manifest repeats the
inputs and records the sha256 (and size) of every file. *Which* loads are
stored, and under which key, is the pipeline's decision
(:mod:`securehub.pipeline.result_cache`); this module only writes and
re-verifies entries. It never fetches and never imports the pipeline.

Guarantees (every read is re-verified, SPEC section 4): the manifest must
parse, name this key, and its inputs must hash to the key; every file's
sha256 (and the state's size) must match the manifest; the directory must hold
exactly the expected files; the state file must be well-formed safetensors.
Anything else raises :class:`~securehub.errors.HashMismatch` (tampered or
corrupt; never silently repaired). The state is read once and hashed in the
same pass. Entries appear atomically (built in ``tmp/``, renamed into place)
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
from securehub._util.digest import file_sha256
from securehub._util.identity import FileIdentity
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.errors import FormatNotAllowed, HashMismatch, SecureHubError
from securehub.sandbox.wire.messages import CHILD_FRAME_LIMITS, CONFIG_JSON_LIMITS, EXPORT, ExportInfo, parse_export
from securehub.verify.safetensors_check import check_safetensors_result

if TYPE_CHECKING:  # torch only where tensors are loaded: cache/audit/lock commands never import it
    import torch

    from securehub.verify.fast_safetensors import HashedState, OnTensor

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

    def install_result(
        self, built: Path, key: str, *, replace: bool, check: Callable[[Path], str | None]
    ) -> Path: ...


RESULT_FORMAT: Final = "securehub-result/1"
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
    {"format", "key", "inputs", "state_sha256", "state_size", "config_sha256", "export", "fetched"}
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


def _placed_sha256(src: Path, dst: Path, read: HashedState | None) -> str:
    """Place ``src`` at ``dst``; the sha256 of ``dst``, hashed again only when ``read``'s cannot be reused.

    ``read``'s digest is reused only when ``dst`` is provably the file that was
    read: unchanged (inode, size, times) right up to the rename, and the very
    inode that arrived at ``dst``. Otherwise (copied across file systems, or
    touched since) ``dst`` is hashed, and must still hold the bytes that were
    read: the module was rebuilt from them (``HashMismatch`` otherwise).
    """
    before = FileIdentity.of(os.lstat(src))
    _place_state(src, dst)
    if read is None or read.sha256 is None:
        return file_sha256(dst)
    after = FileIdentity.of(os.lstat(dst))
    same = before == read.identity and (after.dev, after.ino, after.size, after.mtime_ns) == (
        before.dev, before.ino, before.size, before.mtime_ns
    )  # fmt: skip
    if same:
        return read.sha256
    found = file_sha256(dst)
    if found != read.sha256:
        raise HashMismatch(
            f"{src}: expected the sandbox's output the module was rebuilt from (sha256 {read.sha256}), found "
            f"{found}: the file changed after it was read, so nothing was stored. Something else writes the "
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
    if malformed) and its sha256 taken from ``read`` (the caller's single-pass
    :func:`~securehub.verify.fast_safetensors.read_hashed` of ``state_path``)
    when the stored file is provably the one that was read, else re-hashed. An
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
        state_sha256 = _placed_sha256(state_path, build / STATE, read)
        check_safetensors_result(build / STATE)
        manifest: dict[str, Any] = {
            "format": RESULT_FORMAT,
            "key": key,
            "inputs": dict(inputs),
            "state_sha256": state_sha256,
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
    if not isinstance(doc, dict) or set(doc) != _MANIFEST_KEYS:
        problem = f"an object with exactly the keys {sorted(_MANIFEST_KEYS)}"
    elif doc["format"] != RESULT_FORMAT or doc["key"] != key:
        problem = f"format {RESULT_FORMAT!r} and key {key}"
    elif not isinstance(doc["inputs"], dict) or _sha256(canonical(doc["inputs"])) != key:
        problem = f"inputs whose canonical JSON hashes to {key}"
    elif not (_is_hex64(doc["state_sha256"]) and _is_hex64(doc["config_sha256"])):
        problem = "64-hex state_sha256 and config_sha256"
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


def _bounded_json(name: str, data: bytes, limits: JsonLimits, remedy: str) -> Any:
    try:
        return strict_loads(data, limits)
    except JsonRefusedError as exc:
        raise HashMismatch(f"{name}: expected bounded, strict JSON, found {exc}. {remedy}") from None


def _expected_files(doc: Mapping[str, Any]) -> set[str]:
    names = {MANIFEST, STATE, CONFIG}
    if doc["export"] is not None:
        names |= {EXPORT_META, EXPORT_PROGRAM}
    return names


def _read_entry(
    key: str, path: Path, dir_fd: int, *, load_state: bool, anchored: bool = False, on_tensor: OnTensor | None = None
) -> CachedResult:
    remedy = _remedy(key)
    doc = _manifest(key, dir_fd, remedy)
    present = set(os.listdir(dir_fd))
    if present != _expected_files(doc):
        raise HashMismatch(
            f"results/{key}: expected the files {sorted(_expected_files(doc))}, found {sorted(present)}. {remedy}"
        )
    config = _bounded_json(CONFIG, _checked(CONFIG, dir_fd, _MAX_CONFIG_BYTES, doc["config_sha256"], remedy),
                           _CONFIG_LIMITS, remedy)
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
    if load_state:
        from securehub.verify.fast_safetensors import load_verified  # noqa: PLC0415 - lazy: torch, only to read tensors

        try:
            state = load_verified(
                STATE,
                expected_sha256=None if anchored else doc["state_sha256"],
                expected_size=doc["state_size"],
                dir_fd=dir_fd,
                remedy=remedy,
                on_tensor=on_tensor,
            )
        except FormatNotAllowed as exc:
            raise HashMismatch(f"{STATE}: {exc}. {remedy}") from None
        except FileNotFoundError:
            raise HashMismatch(f"{STATE}: expected the state file, found none. {remedy}") from None
    else:
        st = os.stat(STATE, dir_fd=dir_fd, follow_symlinks=False)
        found = file_sha256(path / STATE) if stat.S_ISREG(st.st_mode) else "not a regular file"
        if found != doc["state_sha256"] or st.st_size != doc["state_size"]:
            raise HashMismatch(
                f"{STATE}: expected sha256 {doc['state_sha256']} ({doc['state_size']} bytes), "
                f"found {found} ({st.st_size} bytes). {remedy}"
            )
        check_safetensors_result(path / STATE)
    fetched = tuple((str(u), str(s)) for u, s in doc["fetched"])
    return CachedResult(key, path, state, config, export, fetched, doc["inputs"])


def load_result(
    cache: ResultDirs, key: str, *, anchored: bool = False, on_tensor: OnTensor | None = None
) -> CachedResult | None:
    """The verified entry for ``key``, or ``None`` when there is none. ``HashMismatch`` if it fails any check.

    ``anchored``: the caller compares the canonical digest of the returned tensors with hub.lock's
    output pin before using them (:func:`securehub.pipeline.result_cache.lookup`); the state file's
    own sha256 adds nothing to that, so it is not computed (its size, the header and every other
    file's digest still are). ``on_tensor``: see :func:`securehub.verify.fast_safetensors.load_verified`
    (the caller's canonical digest, computed while the state is read).

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
            return _read_entry(key, path, dir_fd, load_state=True, anchored=anchored, on_tensor=on_tensor)
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

