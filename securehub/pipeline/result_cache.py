"""The verified result cache: reuse a locked entrypoint's sandbox output without starting the sandbox.

A ``load`` whose inputs were all seen before -- commit, tree digest,
entrypoint, arguments, the locked artifact digests, the policy, the securehub
and torch versions, the example inputs -- produces the same sandbox output
again, so the parent can keep that output (safetensors state, JSON config,
exported program) and rebuild the module from it directly.

Layout: ``<cache>/results/<key>/`` (read-only) holding ``manifest.json``,
``state.safetensors``, ``config.json`` and, when an exported program was
returned, ``export.json`` + ``program.json``. ``key`` is the sha256 of the
canonical JSON of the inputs (:func:`result_key`); the manifest repeats the
inputs and records the sha256 (and size) of every file.

What is cacheable, and why: only a load of an entrypoint that hub.lock pins
completely -- the repo entry has a commit and the entrypoint entry lists its
artifacts, each with a locked sha256. The key must be computed *before* the
sandbox runs, so everything the entrypoint may read has to be known by digest
beforehand; for an unlocked load the artifacts (and hence the weights) could
change under the same key. After a sandbox run the result is stored only if
the child fetched at least one artifact and every artifact it fetched is one
of the locked ones. An entrypoint that fetched nothing (a randomly
initialised model) is cached only when hub.lock pins its output (the child
runs seeded and deterministic, and the pin anchors the entry); otherwise it is
re-run every time, as torch.hub would. A pinned output's digests are part of
the key, so re-pinning (``lock --upgrade``) selects a fresh entry.

Guarantees (every hit is re-verified, SPEC section 4):

* the manifest must parse, name this key, and its inputs must hash to the
  key; every file's sha256 (and the state's size) must match the manifest;
  the directory must hold exactly the expected files; the state file must be
  well-formed safetensors. Anything else raises
  :class:`~securehub.errors.HashMismatch` -- the cache was tampered with or is
  corrupt, and it is never silently re-run or repaired (``securehub cache
  prune`` removes broken results; ``force_reload=True`` replaces one);
* the state is read once and hashed in the same pass
  (:func:`securehub.verify.fast_safetensors.load_verified`): the tensors returned
  are exactly the bytes whose digest was checked;
* entries appear atomically (built in ``tmp/``, renamed into place) and are
  read under the entry's lock, so a concurrent ``force_reload`` never mixes
  two versions;
* output pinning (SPEC section 4): when hub.lock pins the load's output, a
  fresh sandbox output is compared with the pin before it is stored
  (``output-mismatch``), and a hit is served only when the canonical digests
  (:mod:`securehub.pipeline.state_digest`) of its state and config -- and program,
  when the lock's example inputs were used -- equal the pinned ones; anything
  else is ``HashMismatch`` (the entry passed its own manifest, so it was
  rewritten consistently or is stale: cache tampering, like a cached artifact
  whose bytes differ from the lock). The locked artifacts are still re-hashed
  (SPEC section 4: every cached artifact, every load), on a second thread; the
  state is read once (single pass, file digest) and its canonical digest
  computed on a thread pool.

Trust note: with a pinned output (``lock.outputs: verify`` or ``required``
and ``securehub lock -e``), the lock anchors the entry: a consistent rewrite
of manifest and files is refused. Without one, the manifest is anchored by
nothing outside the cache: someone who can write the cache directory and
rewrites manifest and files consistently can substitute weights (never code:
the config and exported program still pass every reconstruction check,
exactly like a hostile child's output). The cache directory must therefore be
writable only by its owner -- the sandbox child never can -- and a CI cache
restored from untrusted jobs must not include ``results/`` unless every
cached entrypoint's output is pinned.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import torch
from torch import nn

from securehub._util.canonical import canonical_json
from securehub._util.digest import file_sha256
from securehub._util.storage import storage_exhaustion
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.config.lockfile import OutputPin
from securehub.errors import FormatNotAllowed, HashMismatch, SecureHubError
from securehub.pipeline.context import Context
from securehub.pipeline.output_guard import OutputGuard
from securehub.pipeline.state_digest import OutputDigests, file_digests, output_digests
from securehub.pipeline.tree import VerifiedTree
from securehub.sandbox.messages import CHILD_FRAME_LIMITS, CONFIG_JSON_LIMITS, EXPORT, ExportInfo, parse_export
from securehub.sandbox.session import SandboxResult
from securehub.store.cache import Cache
from securehub.verify.fast_safetensors import load_verified
from securehub.verify.safetensors_check import check_safetensors_result

if TYPE_CHECKING:
    from securehub.reconstruct.source import SourceCall

__all__ = [
    "RESULT_FORMAT",
    "CachePlan",
    "CachedResult",
    "LoadOutcome",
    "cache_plan",
    "cached_or_run",
    "example_inputs_digest",
    "load_result",
    "result_inputs",
    "result_key",
    "store_result",
    "verify_result_dir",
]

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


def _canonical(obj: object) -> bytes:
    return canonical_json(obj)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- keys


def result_inputs(
    *,
    commit: str,
    tree_sha256: str,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    artifact_digests: Mapping[str, str],
    policy_sha256: str,
    securehub_version: str,
    torch_version: str,
    example_inputs_digest: str | None,
    output_pin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document a result key is the digest of. ``ValueError``/``TypeError`` if args are not JSON.

    ``output_pin``: the digests hub.lock pins for this load's output, if any. Part of the key only
    when present (unpinned keys are unchanged), so re-pinning (``lock --upgrade``) selects a new
    entry instead of refusing the old one as stale.
    """
    doc = {
        "format": RESULT_FORMAT,
        "commit": commit,
        "tree_sha256": tree_sha256,
        "entrypoint": entrypoint,
        "args": list(args),
        "kwargs": dict(kwargs),
        "artifacts": dict(sorted(artifact_digests.items())),
        "policy_sha256": policy_sha256,
        "securehub_version": securehub_version,
        "torch_version": torch_version,
        "example_inputs_sha256": example_inputs_digest,
    }
    if output_pin is not None:
        doc["output_pin"] = dict(output_pin)
    _canonical(doc)  # refuse what is not strict JSON now, not when storing
    return doc


def result_key(inputs: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a :func:`result_inputs` document: equal inputs, equal key."""
    return _sha256(_canonical(inputs))


def example_inputs_digest(inputs: Sequence[torch.Tensor] | None) -> str | None:
    """sha256 over dtype, shape and bytes of each example input tensor (``None`` when there are none)."""
    if inputs is None:
        return None
    h = hashlib.sha256()
    for t in inputs:
        c = t.detach().cpu().contiguous()
        h.update(_canonical({"dtype": str(c.dtype), "shape": list(c.shape)}) + b"\0")
        if c.numel():
            h.update(ctypes.string_at(c.data_ptr(), c.numel() * c.element_size()))
    return h.hexdigest()


@dataclass(frozen=True)
class CachePlan:
    """A cacheable load: its key, the inputs behind it and the locked artifact digests (url -> sha256).

    ``pinned``: hub.lock pins this load's output, so even a run that fetched
    nothing (a random init, deterministic in the sandbox) has an anchor.
    """

    key: str
    inputs: Mapping[str, Any]
    artifacts: Mapping[str, str]
    pinned: bool = False

    def admits(self, fetched: Sequence[tuple[str, str]]) -> bool:
        """True when a run that fetched ``fetched`` may be stored: only locked digests, and at least one
        unless the output is pinned."""
        return (bool(fetched) or self.pinned) and all(self.artifacts.get(url) == sha for url, sha in fetched)


def cache_plan(
    ctx: Context,
    tree: VerifiedTree,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    example_inputs: Sequence[torch.Tensor] | None,
    *,
    pin: OutputPin | None = None,
) -> CachePlan | None:
    """The plan for a cacheable load, or ``None`` when the load is not fully locked (see the module docstring).

    ``pin``: the output hub.lock pins for the load (then an entrypoint with no artifacts is cacheable too).
    """
    entry = tree.entry
    if entry is None or tree.commit is None or tree.spec.kind == "local":
        return None
    ep = entry.entrypoints.get(entrypoint)
    if ep is None or not (ep.artifacts or pin is not None):
        return None
    digests: dict[str, str] = {}
    for url in ep.artifacts:
        art = ctx.lock.artifact(url)
        if art is None:
            return None
        digests[url] = art.sha256
    from securehub._util.version import __version__

    try:
        inputs = result_inputs(
            commit=tree.commit,
            tree_sha256=tree.tree_sha256,
            entrypoint=entrypoint,
            args=args,
            kwargs=kwargs,
            artifact_digests=digests,
            policy_sha256=ctx.policy.sha256,
            securehub_version=__version__,
            torch_version=str(torch.__version__),
            example_inputs_digest=example_inputs_digest(example_inputs),
            output_pin=pin.to_json() if pin is not None else None,
        )
    except (TypeError, ValueError):
        return None  # arguments that are not strict JSON: the sandbox call reports them
    return CachePlan(result_key(inputs), inputs, digests, pin is not None)


# --------------------------------------------------------------------------- store


def _place_state(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst`` (a rename on the same file system: no copy), else copy it."""
    try:
        src.rename(dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copyfile(src, dst, follow_symlinks=False)


def store_result(
    cache: Cache,
    key: str,
    state_path: Path,
    config: Mapping[str, Any],
    export: ExportInfo | None,
    *,
    inputs: Mapping[str, Any],
    fetched: Sequence[tuple[str, str]] = (),
    replace: bool = False,
) -> Path:
    """Store one sandbox result under ``results/<key>/`` atomically and read-only; return its path.

    ``inputs`` must hash to ``key`` (``ValueError`` otherwise). ``state_path``
    is *moved* into the entry (renamed when it is on the cache's file system,
    as the sandbox's output directory under ``tmp/`` is; copied otherwise),
    so the entry never shares an inode with a file someone else may write
    afterwards. The state is re-hashed
    and its header re-checked here (``sandbox-protocol`` if malformed). An
    existing entry is kept if it verifies (another process stored the same
    result) and raises ``HashMismatch`` if it does not, unless ``replace``
    (``force_reload``) is set, which replaces it.
    """
    if _sha256(_canonical(inputs)) != key:
        raise ValueError(f"inputs do not hash to the result key {key}")
    config_bytes = canonical_json(config, ascii_only=True)
    with cache.temp_dir() as work:
        build = work / "result"
        build.mkdir(mode=0o700)
        _place_state(state_path, build / STATE)
        check_safetensors_result(build / STATE)
        manifest: dict[str, Any] = {
            "format": RESULT_FORMAT,
            "key": key,
            "inputs": dict(inputs),
            "state_sha256": file_sha256(build / STATE),
            "state_size": (build / STATE).stat().st_size,
            "config_sha256": _sha256(config_bytes),
            "export": None,
            "fetched": [[url, sha] for url, sha in fetched],
        }
        (build / CONFIG).write_bytes(config_bytes)
        if export is not None:
            meta_bytes = _canonical(export.to_meta())
            (build / EXPORT_META).write_bytes(meta_bytes)
            (build / EXPORT_PROGRAM).write_bytes(export.program_json)
            manifest["export"] = {"meta_sha256": _sha256(meta_bytes), "program_sha256": _sha256(export.program_json)}
        (build / MANIFEST).write_bytes(_canonical(manifest))
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
    elif not isinstance(doc["inputs"], dict) or _sha256(_canonical(doc["inputs"])) != key:
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


def _read_entry(key: str, path: Path, dir_fd: int, *, load_state: bool) -> CachedResult:
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
        try:
            state = load_verified(
                STATE,
                expected_sha256=doc["state_sha256"],
                expected_size=doc["state_size"],
                dir_fd=dir_fd,
                remedy=remedy,
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


def load_result(cache: Cache, key: str) -> CachedResult | None:
    """The verified entry for ``key``, or ``None`` when there is none. ``HashMismatch`` if it fails any check."""
    path = cache.result_path(key)
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


# --------------------------------------------------------------------------- the load path


CacheStatus = Literal["hit", "miss", "refresh", "off"]


@dataclass(frozen=True)
class LoadOutcome:
    """What :func:`cached_or_run` did.

    ``cache``: ``hit`` (rebuilt from a verified entry, no sandbox), ``miss``
    (ran, stored), ``refresh`` (``force_reload``: ran, replaced), ``off``
    (not cacheable, or the run fetched something not locked: ran, nothing
    stored). ``result`` is the sandbox result when the sandbox ran (its
    ``state_path`` is gone by then: the file was moved or its directory removed).
    ``artifacts``: the ``(url, sha256)`` the result was built from.
    ``output``: the canonical digests of the output, when the guard needed
    them (a pinned output that matched, or an unpinned one to record).
    """

    module: nn.Module
    strategy: str
    cache: CacheStatus
    key: str | None
    result: SandboxResult | None
    artifacts: tuple[tuple[str, str], ...]
    output: OutputDigests | None = None


def _source_call(
    ctx: Context, entrypoint: str, args: Sequence[Any], kwargs: Mapping[str, Any], fetched: Sequence[tuple[str, str]]
) -> SourceCall | None:
    """What the ``source`` strategy re-runs: the call, with the artifacts its sandboxed run received
    (each checked against hub.lock on use); ``None`` when the policy does not list ``source``."""
    if "source" not in ctx.policy.reconstruct.strategies:
        return None
    from securehub.reconstruct.source import SourceCall  # the source strategy's code, only when it may run
    from securehub.reconstruct.source_guard import ArtifactSource

    locked = {url: pin.sha256 for url, _ in fetched if (pin := ctx.lock.artifact(url)) is not None}
    artifacts = ArtifactSource(
        tuple(fetched), locked, ctx.cache.artifact_path, pickle_in_parent=ctx.policy.artifacts.pickle_in_parent
    )
    return SourceCall(entrypoint, tuple(args), dict(kwargs), artifacts)


def _rebuild(
    ctx: Context,
    tree: VerifiedTree,
    config: Mapping[str, Any],
    export: ExportInfo | None,
    state_path: Path,
    state: dict[str, torch.Tensor] | None,
    source_call: SourceCall | None,
) -> tuple[nn.Module, str]:
    from securehub.reconstruct.rebuild import reconstruct

    call: dict[str, Any] = {
        "config": config,
        "export": export,
        "strategies": ctx.policy.reconstruct.strategies,
        "trusted_modules": ctx.policy.reconstruct.trusted_modules,
        "tree": tree.path,
        "source_call": source_call,
    }
    # The verified single-pass read when there is one (no second read of the file, 1x memory).
    if state is not None:
        call["state"] = state
    else:
        call["state_path"] = state_path
    module, strategy = reconstruct(**call)
    return module, strategy


def _verify_locked_artifacts(ctx: Context, tree: VerifiedTree, entrypoint: str) -> None:
    """Re-hash the cached blobs of the entrypoint's locked artifacts (``HashMismatch`` when tampered)."""
    entry = tree.entry.entrypoints.get(entrypoint) if tree.entry is not None else None
    for url in entry.artifacts if entry is not None else ():
        pin = ctx.lock.artifact(url)
        if pin is not None:
            ctx.cache.verified_artifact(pin.sha256)


def cached_or_run(
    ctx: Context,
    tree: VerifiedTree,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    example_inputs: Sequence[torch.Tensor] | None,
    force_reload: bool,
    run: Callable[[Path], SandboxResult],
    cacheable: bool = True,
    guard: OutputGuard | None = None,
) -> LoadOutcome:
    """Rebuild ``entrypoint``'s module from a verified cached result, or run the sandbox (``run(out_dir)``).

    Hit: no sandbox and no download; the entry and the cached blobs of the
    entrypoint's locked artifacts are verified first
    (``HashMismatch`` on any tampering -- never a silent re-run). Miss: ``run``
    writes into a fresh, locked directory under the cache's ``tmp/``; a result
    admitted by the plan is stored and the module rebuilt from the stored,
    verified copy; if rebuilding fails, the new entry is removed again so a
    failed load leaves nothing behind. ``force_reload`` skips the lookup and
    replaces the entry. ``cacheable=False`` (``example_inputs="auto"``: the
    inputs are only known after the run, so no key covers them) always runs
    and stores nothing.

    ``guard`` (output pinning, :mod:`securehub.pipeline.output_guard`): a fresh
    output is checked against the pinned digests before it is rebuilt or
    stored (``OutputMismatch``); a hit is served only when its canonical
    digests equal the pinned ones (``HashMismatch`` otherwise: the entry was
    rewritten consistently, or is stale).
    """
    guard = guard or OutputGuard("", entrypoint, "")
    plan = cache_plan(ctx, tree, entrypoint, args, kwargs, example_inputs, pin=guard.pin) if cacheable else None

    def rebuild(
        config: Mapping[str, Any], export: ExportInfo | None, state_path: Path,
        state: dict[str, torch.Tensor] | None, fetched: Sequence[tuple[str, str]],
    ) -> tuple[nn.Module, str]:  # fmt: skip
        source_call = _source_call(ctx, entrypoint, args, kwargs, fetched)
        return _rebuild(ctx, tree, config, export, state_path, state, source_call)

    if plan is not None and not force_reload:
        hit = _verified_hit(ctx, tree, entrypoint, plan.key)
        if hit is not None:
            found = output_digests(hit.state, hit.config, hit.export) if guard.active else None
            if found is not None:
                guard.check(found, cached_key=plan.key)
            module, strategy = rebuild(hit.config, hit.export, hit.path / STATE, hit.state, hit.fetched)
            return LoadOutcome(module, strategy, "hit", plan.key, None, hit.fetched, found)
    # A full disk while the sandbox's output streams into tmp/ or while the entry is stored is a
    # clean `network` refusal (red team: it escaped as a raw OSError); the temp dirs go either way.
    with (
        storage_exhaustion("the sandbox's result", ctx.cache.dir),
        ctx.cache.temp_dir("result-") as out,  # flock-ed: a concurrent `cache prune` leaves it alone
    ):
        result = run(out)
        if result.state_path is None:
            raise ValueError("run() must return the result of a 'load' sandbox call (it has a state file)")
        fresh: OutputDigests | None = None
        if guard.active:
            # Before anything is rebuilt or stored: a differing output leaves nothing behind.
            fresh = file_digests(result.state_path, result.config, result.export)
            guard.check(fresh)
        # A run that made nested torch.hub.load calls is never stored: its result depends on other
        # repos' trees and artifacts that the key does not cover (and each nested load must stay audited).
        if plan is None or result.nested or not plan.admits(result.fetched):
            module, strategy = rebuild(result.config, result.export, result.state_path, None, result.fetched)
            return LoadOutcome(module, strategy, "off", None, result, result.fetched, fresh)
        store_result(
            ctx.cache,
            plan.key,
            result.state_path,
            result.config,
            result.export,
            inputs=plan.inputs,
            fetched=result.fetched,
            replace=force_reload,
        )
    stored = load_result(ctx.cache, plan.key)
    if stored is None:
        raise HashMismatch(
            f"results/{plan.key}: expected the entry just stored, found none (removed concurrently, e.g. by "
            "`securehub cache prune`); load again"
        )
    try:
        module, strategy = rebuild(stored.config, stored.export, stored.path / STATE, stored.state, result.fetched)
    except SecureHubError:
        ctx.cache.remove_result(plan.key)
        raise
    return LoadOutcome(
        module, strategy, "refresh" if force_reload else "miss", plan.key, result, result.fetched, fresh
    )


def _verified_hit(ctx: Context, tree: VerifiedTree, entrypoint: str, key: str) -> CachedResult | None:
    """The verified entry for ``key`` (``None`` if absent), its locked artifacts re-hashed.

    SPEC section 4: cached artifacts are re-verified on every load, even when
    the result derived from them is what gets used -- also when hub.lock pins
    the output (which anchors the entry itself): a tampered cached blob is
    reported as such, never masked by a good result. The artifacts are hashed
    on a second thread (hashlib releases the GIL), overlapping the result's
    own single-pass read.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        artifacts_ok = pool.submit(_verify_locked_artifacts, ctx, tree, entrypoint)
        hit = load_result(ctx.cache, key)
        artifacts_ok.result()
    return hit
