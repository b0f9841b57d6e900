"""Air-gapped bundles: ``securehub cache export|import BUNDLE`` (SPEC section 10).

A bundle is one uncompressed tar file holding exactly what hub.lock pins, so a
machine without network access can load the locked entrypoints with
``SECUREHUB_OFFLINE=1``::

    manifest.json          {"format": "securehub-bundle/2", "lock_sha256", "trees", "artifacts", "results"}
    blobs/<sha256>         every file content, symlink target, artifact and result file, named by its digest

``trees`` maps each locked ``tree_sha256`` to ``{remote, commit, entries:
[[path, mode, size, sha256], ...]}``; ``artifacts`` maps each locked URL to
``{sha256, size}``; ``results`` maps the key of each result-cache entry
hub.lock anchors (its output pinned, the entry's digests equal to the pin:
:mod:`securehub.pipeline.bundle_results`) to ``{file name: sha256}``, so the
importing machine loads those entrypoints without a sandbox run when its
policy and torch match the exporting machine's (the key covers both; an entry
built under others is simply never looked up, and the sandbox runs offline
from the bundled tree and artifacts). An unpinned result would be anchored by
nothing outside the bundle and is never carried. ``securehub-bundle/1``
bundles (no ``results``) are still imported.

Import guarantees (every check runs before anything enters the cache):

1. the lock is loaded and, when the policy lists trusted keys, its
   signature verified (``signature-invalid``);
2. the tar is read member by member, never with ``extract``: only regular
   files named ``manifest.json`` or ``blobs/<64 hex>`` are accepted (no
   links, devices, directories, absolute or ``..`` paths, duplicates), within
   count and size caps derived from the lock and policy; each blob is copied
   into a private temp dir while hashed and must have the digest it is
   named by; manifest.json is scanned for depth, value count and string
   size before it is parsed, strictly (no duplicate keys);
3. the manifest must name exactly the trees and artifacts the lock pins,
   with the lock's digests, sizes, remotes and commits -- nothing more,
   nothing less -- and reference exactly the blobs present (a tree the lock
   pins at several commits is listed once, under one of them, and indexed
   for all of them on import);
4. each tree is rebuilt from its blobs with the same path, mode and symlink
   rules as a git export (:func:`securehub.fetch.tree.write_tree`; every
   listed size must be its blob's, so the tree size limit holds) and its
   ``tree_sha256`` recomputed from disk must equal the lock's;
5. each result is rebuilt from its blobs and must pass every check a cache
   hit makes *and* be anchored by hub.lock (its output pin, digests computed
   from the entry's own state, config and program).

Every digest is compared with hub.lock, never with the bundle's own manifest:
a manifest rewritten consistently with tampered content is still refused. A
refused bundle raises :class:`HashMismatch` (the bundle does not match the
lock), naming what was expected and found, and leaves the cache unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from securehub._util.atomic import replace_file
from securehub._util.canonical import canonical_json
from securehub._util.hubdir import hub_dir
from securehub._util.regular import open_regular
from securehub._util.strict_json import JsonLimits, JsonRefusedError
from securehub._util.strict_json import loads as strict_loads
from securehub.audit.log import AuditRecord, append, check_writable, outcome_for_code
from securehub.config.lockfile import Lockfile
from securehub.config.policy import Policy
from securehub.errors import ArchiveUnsafe, HashMismatch, LockInvalid, SecureHubError
from securehub.fetch.tree import MODE_SYMLINK, TreeEntry, digest_entries, scan_tree, tree_sha256, write_tree
from securehub.pipeline.broker import ArtifactBroker
from securehub.pipeline.bundle_results import MAX_RESULTS_PER_PIN, build_result, exportable_results
from securehub.pipeline.context import Context, LockArg, PolicyArg, load_context, policy_ref
from securehub.pipeline.tree import verified_tree
from securehub.store.results import verify_result_dir

__all__ = ["BUNDLE_FORMAT", "BundleReport", "export_bundle", "import_bundle"]

BUNDLE_FORMAT: Final = "securehub-bundle/2"
_FORMATS: Final = {"securehub-bundle/1": frozenset({"format", "lock_sha256", "trees", "artifacts"}),
                   BUNDLE_FORMAT: frozenset({"format", "lock_sha256", "trees", "artifacts", "results"})}  # fmt: skip
_MANIFEST: Final = "manifest.json"
_BLOB = re.compile(r"blobs/([0-9a-f]{64})")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_MANIFEST_BYTES: Final = 64 << 20
_CHUNK: Final = 1 << 20
_MANIFEST_DEPTH: Final = 8
_MAX_PROGRAM_BYTES: Final = 1 << 30  # the result store's bound on a stored program
_MANIFEST_STRING: Final = 64 << 10


@dataclass(frozen=True)
class BundleReport:
    """What an export wrote or an import admitted."""

    path: Path
    trees: tuple[str, ...]
    artifacts: tuple[str, ...]
    blobs: int
    #: url -> sha256 of every artifact written or admitted.
    artifact_digests: Mapping[str, str] = field(default_factory=dict)
    #: keys of the pinned result-cache entries written or admitted.
    results: tuple[str, ...] = ()


def _lock_of(ctx: Context, verb: str) -> Lockfile:
    if not ctx.lock_exists:
        raise LockInvalid(
            f"`securehub cache {verb}` needs the hub.lock that says what the bundle holds; found none (looked "
            "at --lock, SECUREHUB_LOCK and ./hub.lock). Create one with `securehub lock SPEC -e ENTRYPOINT`."
        )
    return ctx.lock


def _lock_sha256(lock: Lockfile) -> str:
    return hashlib.sha256(lock.canonical_unsigned_bytes()).hexdigest()


# --------------------------------------------------------------------------- export


def export_bundle(bundle: str | os.PathLike[str], *, lock: LockArg = None, policy: PolicyArg = None) -> BundleReport:
    """Write everything ``lock`` pins (trees, artifacts, pinned results; verified now) into the file ``bundle``.

    Trees and artifacts come from the cache, re-verified against the lock;
    ones not cached yet are fetched and verified first (the same path and the
    same admission as a load: repo allowed, remote the spec's, ref allowed).
    Results: every sound result-cache entry hub.lock anchors (none are
    computed here: load the entrypoints first to include theirs).
    The file appears atomically; its member order and metadata are fixed, so
    exporting the same lock twice gives identical bytes.
    """
    ctx = load_context(policy, lock)
    pinned = _lock_of(ctx, "export")
    blobs: dict[str, Path] = {}
    trees: dict[str, Any] = {}
    for key in sorted(pinned.repos):
        entry = pinned.repos[key]
        # The same admission as a load: the repo allowed, the spec's remote the lock's (an unsigned
        # lock rewritten to another remote would otherwise send git there), the ref allowed.
        tree = verified_tree(ctx, key)
        manifest = scan_tree(tree.path)
        for e in manifest.entries:
            blobs.setdefault(e.sha256, tree.path / e.path)
        # One tree may be pinned by several entries (two tags around an empty commit): the first in
        # key order names it here, and import indexes it for every entry the lock pins it under.
        trees.setdefault(entry.tree_sha256, {
            "remote": entry.remote,
            "commit": entry.commit,
            "entries": [[e.path, e.mode, e.size, e.sha256] for e in manifest.entries],
        })  # fmt: skip
    broker = ArtifactBroker(ctx)
    artifacts: dict[str, Any] = {}
    for url in sorted(pinned.artifacts):
        art = pinned.artifacts[url]
        fetched = broker.fetch(url, sha256=art.sha256, require_checkpoint=False)
        blobs.setdefault(art.sha256, fetched.path)
        artifacts[url] = {"sha256": art.sha256, "size": art.size}
    results: dict[str, dict[str, str]] = {}
    for key, files in exportable_results(ctx.cache, pinned).items():
        results[key] = {name: sha for name, (sha, _) in files.items()}
        for sha, path in files.values():
            blobs.setdefault(sha, path)
    doc = {"format": BUNDLE_FORMAT, "lock_sha256": _lock_sha256(pinned), "trees": trees, "artifacts": artifacts,
           "results": results}  # fmt: skip
    data = canonical_json(doc, ascii_only=True)
    symlinks = {e[3] for t in trees.values() for e in t["entries"] if e[1] == MODE_SYMLINK}
    out = Path(bundle)
    replace_file(out, lambda f: _write_tar(f, data, blobs, symlinks), mode=0o644)
    digests = {url: art["sha256"] for url, art in artifacts.items()}
    return BundleReport(
        out, tuple(sorted(trees)), tuple(sorted(artifacts)), len(blobs), digests, tuple(sorted(results))
    )


def _write_tar(f: IO[bytes], manifest: bytes, blobs: Mapping[str, Path], symlinks: set[str]) -> None:
    with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_member(_MANIFEST, len(manifest)), _bytes_io(manifest))
        for digest in sorted(blobs):
            path = blobs[digest]
            if digest in symlinks and path.is_symlink():
                target = os.readlink(os.fsencode(path))  # noqa: PTH115 - the target's exact bytes
                tar.addfile(_member(f"blobs/{digest}", len(target)), _bytes_io(target))
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as inp:
                tar.addfile(_member(f"blobs/{digest}", os.fstat(inp.fileno()).st_size), inp)


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o444
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _bytes_io(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)


# --------------------------------------------------------------------------- import


@dataclass(frozen=True)
class _Caps:
    """Bounds on what a bundle for this lock may hold, checked before content is read."""

    members: int
    member_bytes: int
    total_bytes: int
    results: int


def _caps(ctx: Context, pinned: Lockfile) -> _Caps:
    repos = ctx.policy.repos
    art_bytes = sum(a.size for a in pinned.artifacts.values())
    biggest_art = max((a.size for a in pinned.artifacts.values()), default=0)
    # A result is at most what a sandbox run may return (its state) plus its program and small files.
    results = MAX_RESULTS_PER_PIN * sum(len(ep.outputs) for e in pinned.repos.values() for ep in e.entrypoints.values())
    result_bytes = ctx.policy.sandbox.max_output_mb * 2**20 + _MAX_PROGRAM_BYTES + _MAX_MANIFEST_BYTES
    return _Caps(
        members=1 + len(pinned.repos) * repos.max_files + len(pinned.artifacts) + 5 * results,
        member_bytes=max(_MAX_MANIFEST_BYTES, repos.max_tree_bytes, biggest_art, result_bytes if results else 0),
        total_bytes=_MAX_MANIFEST_BYTES + len(pinned.repos) * repos.max_tree_bytes + art_bytes + results * result_bytes,
        results=results,
    )


def _refuse(bundle: Path, what: str) -> HashMismatch:
    return HashMismatch(
        f"bundle {bundle}: {what}. The bundle does not match hub.lock (tampered, truncated or built from "
        "another lock); nothing was imported and the cache is unchanged. Export it again from the locked "
        "machine with `securehub cache export`."
    )


def import_bundle(bundle: str | os.PathLike[str], *, lock: LockArg = None, policy: PolicyArg = None) -> BundleReport:
    """Verify ``bundle`` against the lock (and its signature when required), then admit it into the cache.

    See the module docstring for the checks. Raises :class:`HashMismatch` for
    any bundle that does not match the lock (unsafe members included),
    ``LockInvalid``/``SignatureInvalid`` for the lock itself. On any error
    nothing was added to the cache.
    """
    check_writable()  # nothing enters the cache unaudited
    created = _missing_cache_dirs(hub_dir())
    try:
        report = _import(Path(bundle), lock, policy)
    except SecureHubError as err:
        # A refused import leaves the cache exactly as it was -- also on a fresh machine, where opening
        # the cache created its (still empty) directories.
        _remove_empty(created)
        _audit("cache import", bundle, policy, err.code)
        raise
    except BaseException:
        _remove_empty(created)
        raise
    _audit("cache import", bundle, policy, None, artifacts=report.artifact_digests)
    return report


def _audit(
    action: str,
    bundle: str | os.PathLike[str],
    policy: PolicyArg,
    code: str | None,
    *,
    artifacts: Mapping[str, str] | None = None,
) -> None:
    """One audit line (SPEC section 11) for an import: ``spec`` is the bundle path, artifacts what was admitted."""
    try:
        pol: dict[str, str] | None = policy_ref(Policy.load(policy))
    except SecureHubError:
        pol = None
    append(
        AuditRecord(
            action=action,
            outcome=outcome_for_code(code),
            spec=os.fspath(bundle),
            artifacts=[{"url": url, "sha256": digest} for url, digest in sorted((artifacts or {}).items())],
            policy=pol,
            code=code,
        )
    )


def _missing_cache_dirs(hub: Path) -> list[Path]:
    """The cache directories opening a :class:`Cache` at ``hub`` would create, that do not exist yet."""
    dirs = [hub, *(hub / d for d in ("trees", "index", "index/commits", "artifacts", "artifacts/sha256", "tmp"))]
    return [d for d in [*dirs, hub / "locks"] if not d.exists()]


def _remove_empty(dirs: list[Path]) -> None:
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()  # only ever succeeds on an empty directory
        except OSError:
            continue


def _import(path: Path, lock: LockArg, policy: PolicyArg) -> BundleReport:
    ctx = load_context(policy, lock)
    pinned = _lock_of(ctx, "import")
    with ctx.cache.temp_dir() as work:
        staged = work / "blobs"
        staged.mkdir(mode=0o700)
        manifest = _read_members(path, staged, _caps(ctx, pinned))
        _check_manifest(path, manifest, pinned, staged)
        built: dict[str, Path] = {}
        for digest, tree in sorted(manifest["trees"].items()):
            built[digest] = _build_tree(ctx, path, work / f"tree-{digest}", tree, staged, digest)
        results = _build_results(ctx, path, manifest["results"], staged, work, pinned)
        # Everything verified: only now does anything enter the cache.
        for digest in sorted(manifest["trees"]):
            ctx.cache.admit_tree(built[digest], digest, sources=_sources(pinned, digest), work=work)
        for url in sorted(manifest["artifacts"]):
            _admit_artifact(ctx, staged / manifest["artifacts"][url]["sha256"], manifest["artifacts"][url]["sha256"])
        for key, entry in sorted(results.items()):
            ctx.cache.install_result(entry, key, replace=False, check=verify_result_dir)
        count = sum(1 for _ in staged.iterdir())
    digests = {url: art["sha256"] for url, art in manifest["artifacts"].items()}
    return BundleReport(path, tuple(sorted(manifest["trees"])), tuple(sorted(digests)), count, digests,
                        tuple(sorted(results)))  # fmt: skip


def _build_results(
    ctx: Context, bundle: Path, results: Mapping[str, Mapping[str, str]], staged: Path, work: Path, pinned: Lockfile
) -> dict[str, Path]:
    """Every bundled result rebuilt and checked (a cache hit's checks, anchored by hub.lock), before any admission.

    A result already in this cache must be sound too (it is kept, not replaced): a broken one is
    reported now, before anything is admitted, instead of half-way through the admissions.
    """
    out: dict[str, Path] = {}
    for key, files in sorted(results.items()):
        built = build_result(key, files, staged, work, pinned, ctx.cache)
        if isinstance(built, str):
            raise _refuse(bundle, built)
        existing = ctx.cache.result_path(key)
        problem = verify_result_dir(existing) if os.path.lexists(existing) else None
        if problem is not None:
            raise HashMismatch(
                f"cached result {existing}: expected an entry matching its manifest, found: {problem}. Nothing "
                "was imported; run `securehub cache prune` (it removes broken results) and import again."
            )
        out[key] = built
    return out


def _read_members(bundle: Path, staged: Path, caps: _Caps) -> dict[str, Any]:
    """Copy every blob into ``staged`` (hashed on the way), return the parsed manifest; refuse anything else."""
    manifest: dict[str, Any] | None = None
    seen = 0
    total = 0
    with _open_tar(bundle) as tar:
        for member in _members(tar, bundle):
            seen += 1
            total += member.size
            if seen > caps.members or member.size > caps.member_bytes or total > caps.total_bytes:
                raise _refuse(bundle, f"more members or bytes than hub.lock pins (at member {member.name!r})")
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - regular members always have a file object
                raise _refuse(bundle, f"member {member.name!r} has no content")
            if member.name == _MANIFEST:
                if manifest is not None:
                    raise _refuse(bundle, "two manifest.json members")
                manifest = _parse_manifest(bundle, source.read(_MAX_MANIFEST_BYTES + 1), caps)
                continue
            match = _BLOB.fullmatch(member.name)
            if match is None:
                raise _refuse(
                    bundle,
                    f"unexpected member {member.name!r}; expected only manifest.json and blobs/<sha256> "
                    "(absolute or '..' paths, links, devices and directories are never extracted)",
                )
            _stage_blob(bundle, source, staged / match.group(1), match.group(1))
    if manifest is None:
        raise _refuse(bundle, "no manifest.json member")
    return manifest


@contextmanager
def _open_tar(bundle: Path) -> Iterator[tarfile.TarFile]:
    try:
        # Uncompressed only (no decompression bombs); closed in the finally below, so open errors stay distinct.
        fh = os.fdopen(open_regular(bundle), "rb")  # never a FIFO or a device: a read that never ends
    except OSError as exc:
        raise _refuse(bundle, f"expected an uncompressed tar file, found something unreadable ({exc})") from None
    try:
        tar = tarfile.open(fileobj=fh, mode="r:")  # noqa: SIM115
    except (tarfile.TarError, OSError) as exc:
        fh.close()
        raise _refuse(bundle, f"expected an uncompressed tar file, found something unreadable ({exc})") from None
    try:
        yield tar
    except tarfile.TarError as exc:
        raise _refuse(bundle, f"a corrupt tar archive ({exc})") from None
    finally:
        tar.close()
        fh.close()


def _members(tar: tarfile.TarFile, bundle: Path) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        # Links, devices, fifos, directories and sparse files are refused before their name is used.
        if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
            raise _refuse(bundle, f"member {member.name!r} is not a regular file (tar type {member.type!r})")
        yield member


def _stage_blob(bundle: Path, source: IO[bytes], dest: Path, digest: str) -> None:
    h = hashlib.sha256()
    try:
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise _refuse(bundle, f"blob {digest} appears twice") from None
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != digest:
        raise _refuse(bundle, f"blob {digest}: expected content with sha256 {digest}, found {h.hexdigest()}")


def _manifest_limits(caps: _Caps) -> JsonLimits:
    """Bounds on manifest.json, scanned before it is parsed: five levels deep, five values per tree
    entry (``[path, mode, size, sha256]``), a few per tree and artifact, no string over a path or URL."""
    return JsonLimits(
        max_bytes=_MAX_MANIFEST_BYTES,
        max_depth=_MANIFEST_DEPTH,
        max_items=8 * caps.members + 64,
        max_str_bytes=_MANIFEST_STRING,
    )


def _parse_manifest(bundle: Path, data: bytes, caps: _Caps) -> dict[str, Any]:
    if len(data) > _MAX_MANIFEST_BYTES:
        raise _refuse(bundle, f"manifest.json is larger than {_MAX_MANIFEST_BYTES} bytes")
    try:
        # Bounded and strict: json.loads would recurse on deep nesting (RecursionError, not a refusal)
        # and build gigabytes from 64 MB of tiny values; a duplicate key could read two ways.
        doc = strict_loads(data, _manifest_limits(caps))
    except JsonRefusedError as exc:
        raise _refuse(bundle, f"manifest.json is not a bounded, strict JSON document ({exc})") from None
    try:
        # The strict reader admits a "\\ud800" escape (a lone surrogate): a tree path holding one made the
        # tree digest's UTF-8 encoding raise UnicodeEncodeError instead of a refusal (red team 10).
        canonical_json(doc)
    except ValueError:
        raise _refuse(bundle, "manifest.json holds a lone surrogate escape or a number out of range") from None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    keys = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if not isinstance(doc, dict) or keys is None or set(doc) != keys:
        raise _refuse(bundle, f"expected a {BUNDLE_FORMAT} manifest with keys {sorted(_FORMATS[BUNDLE_FORMAT])}")
    doc.setdefault("results", {})  # securehub-bundle/1: no results
    if not all(isinstance(doc[k], dict) for k in ("trees", "artifacts", "results")):
        raise _refuse(bundle, "manifest.json: trees, artifacts and results must be objects")
    if len(doc["results"]) > caps.results:
        raise _refuse(bundle, f"{len(doc['results'])} results, more than hub.lock's pins allow ({caps.results})")
    for key, files in doc["results"].items():
        if not isinstance(files, dict) or not all(isinstance(v, str) and _HEX64.fullmatch(v) for v in files.values()):
            raise _refuse(bundle, f"result {key!r}: expected {{file name: sha256}}, found {files!r:.200}")
    return doc


def _sources(pinned: Lockfile, digest: str) -> list[tuple[str, str]]:
    """Every (remote, commit) hub.lock pins the tree ``digest`` at, in key order (the first is the export's)."""
    out: list[tuple[str, str]] = []
    for key in sorted(pinned.repos):
        entry = pinned.repos[key]
        if entry.tree_sha256 == digest and (entry.remote, entry.commit) not in out:
            out.append((entry.remote, entry.commit))
    return out


def _check_manifest(bundle: Path, doc: Mapping[str, Any], pinned: Lockfile, staged: Path) -> None:
    """The manifest names exactly what the lock pins, with the lock's digests, and exactly the staged blobs."""
    want_trees = {e.tree_sha256: e for e in pinned.repos.values()}
    if set(doc["trees"]) != set(want_trees):
        raise _refuse(
            bundle,
            f"expected the trees hub.lock pins {sorted(want_trees)}, found {sorted(doc['trees'])}",
        )
    if set(doc["artifacts"]) != set(pinned.artifacts):
        raise _refuse(
            bundle,
            f"expected the artifacts hub.lock pins {sorted(pinned.artifacts)}, found {sorted(doc['artifacts'])}",
        )
    referenced: set[str] = set()
    for digest, tree in doc["trees"].items():
        if not isinstance(tree, dict) or set(tree) != {"remote", "commit", "entries"}:
            raise _refuse(bundle, f"tree {digest}: expected {{remote, commit, entries}}")
        sources = _sources(pinned, digest)
        if (tree["remote"], tree["commit"]) not in sources:
            expected = " or ".join(f"{remote} @ {commit}" for remote, commit in sources)
            raise _refuse(
                bundle,
                f"tree {digest}: expected {expected} (from hub.lock), found {tree['remote']!r} @ {tree['commit']!r}",
            )
        entries = _tree_entries(bundle, digest, tree["entries"])
        found = digest_entries((e.path.encode("utf-8"), e.mode, e.sha256) for e in entries)
        if found != digest:
            raise _refuse(bundle, f"tree {digest}: its entries digest to {found}, expected {digest} (from hub.lock)")
        referenced.update(e.sha256 for e in entries)
    for url, art in doc["artifacts"].items():
        pin = pinned.artifacts[url]
        if not isinstance(art, dict) or (art.get("sha256"), art.get("size")) != (pin.sha256, pin.size):
            raise _refuse(
                bundle,
                f"artifact {url}: expected sha256 {pin.sha256} and size {pin.size} (from hub.lock), found {art!r}",
            )
        referenced.add(pin.sha256)
    for files in doc["results"].values():
        referenced.update(files.values())
    present = {p.name for p in staged.iterdir()}
    if present != referenced:
        extra, missing = sorted(present - referenced), sorted(referenced - present)
        raise _refuse(bundle, f"blobs not referenced by the lock: {extra}; blobs missing: {missing}")
    for url, art in doc["artifacts"].items():
        size = (staged / art["sha256"]).stat().st_size
        if size != pinned.artifacts[url].size:
            raise _refuse(bundle, f"artifact {url}: expected {pinned.artifacts[url].size} bytes, found {size}")


def _tree_entries(bundle: Path, digest: str, raw: object) -> list[TreeEntry]:
    if not isinstance(raw, list):
        raise _refuse(bundle, f"tree {digest}: entries must be a list")
    out: list[TreeEntry] = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not isinstance(item[0], str)
            or not isinstance(item[1], str)
            or not isinstance(item[2], int)
            or isinstance(item[2], bool)
            or item[2] < 0
            or not isinstance(item[3], str)
            or not _HEX64.fullmatch(item[3])
        ):
            raise _refuse(bundle, f"tree {digest}: expected entries [path, mode, size, sha256], found {item!r:.200}")
        out.append(TreeEntry(path=item[0], mode=item[1], size=item[2], sha256=item[3]))
    return out


def _build_tree(ctx: Context, bundle: Path, dest: Path, tree: Mapping[str, Any], staged: Path, digest: str) -> Path:
    """Rebuild one tree from staged blobs with git-export rules; its on-disk digest must be the lock's."""
    entries = _tree_entries(bundle, digest, tree["entries"])
    try:
        write_tree(
            dest,
            entries,
            lambda sha: staged / sha,
            max_files=ctx.policy.repos.max_files,
            max_bytes=ctx.policy.repos.max_tree_bytes,
        )
        found = tree_sha256(dest)
    except ArchiveUnsafe as exc:
        raise _refuse(bundle, f"tree {digest} is unsafe ({exc.message})") from None
    if found != digest:
        raise _refuse(bundle, f"tree {digest}: rebuilt tree has tree_sha256 {found}, expected {digest}")
    return dest


def _admit_artifact(ctx: Context, blob: Path, digest: str) -> None:
    """Copy a verified blob into ``tmp/`` and let the cache re-hash and admit it."""
    tmp = ctx.cache.tmp_dir() / f"import-{digest}-{os.getpid()}"
    with blob.open("rb") as inp, tmp.open("xb") as out:
        shutil.copyfileobj(inp, out, _CHUNK)
    try:
        ctx.cache.put_artifact_from_temp(tmp, digest)
    finally:
        tmp.unlink(missing_ok=True)
