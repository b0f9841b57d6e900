"""The parent's artifact downloader (SPEC sections 5 and 9).

:func:`download` fetches one artifact URL into the content-addressed cache.
It is the only place securehub downloads checkpoint bytes, and it does so in
numbered steps, each with its own error:

1. **URL rules** (no I/O): the original URL must be ``https`` (or ``http`` to
   a loopback host), carry no user-info, and its host must match ``hosts``.
   An explicit ``hash_prefix`` must be 8-64 hex digits (``min_prefix_hex`` lowers the 8 for
   ``download_url_to_file`` outside ``lock.mode: required``). -> ``artifact-not-allowed``.
   A ``hash_prefix`` that contradicts ``expected.sha256`` -> ``hash-mismatch``.
2. **Cache**: with ``expected`` (sha256 + size from hub.lock) and the blob in
   the store, the blob is *re-verified* and returned without any network
   access. A tampered blob is ``hash-mismatch`` -- never silently replaced.
3. **Offline** (``offline=True`` or ``SECUREHUB_OFFLINE=1``): anything not
   cached is ``offline`` before a connection is attempted.
4. **Mirror**: the URL is rewritten through ``mirrors`` (longest matching
   prefix). The lock keeps recording and checking the *original* URL; the
   mirror only says where the bytes come from. A configured mirror's own host
   is trusted as configured (exempt from ``hosts``); the scheme rule still
   applies to it.
5. **Transport** (:mod:`securehub.fetch._http`): redirects followed by hand,
   every target checked for scheme and host (``hosts`` applies to redirect
   targets, even from a mirror, unless the target is the mirror's own host);
   credentials only to the first request's origin. With ``public_only`` (a
   URL the repository chose that hub.lock does not pin: SSRF), every
   connection, redirects included, must resolve to public addresses only and
   goes to exactly the checked address -- except hosts ``hosts`` names
   literally and the configured mirror's own origin (``artifact-not-allowed``).
6. **Bounded streaming** into a temp file in the store's ``tmp/`` dir, hashing
   as it goes. The cap is ``expected.size`` when locked (an overrun is
   ``hash-mismatch``: "served more bytes than the locked size") or
   ``max_bytes`` otherwise (``artifact-not-allowed``). A ``Content-Length``
   over the cap is refused before the body is read; reading stops at cap + 1
   bytes, so an endless body cannot exhaust the disk.
7. **Verify** size and sha256 against ``expected``, and the hash prefix.
   Failure: ``hash-mismatch``, the temp file is deleted, nothing is cached.
8. **Admit**: the verified temp file is made read-only (0o444) and renamed
   into ``artifacts/sha256/<digest>`` under a per-digest (or per-URL, when
   unlocked) file lock, so N concurrent downloads end with one blob. A process
   killed before step 8 leaves only junk in ``tmp/``, which nothing trusts.

Timeouts and HTTP errors are ``network``. ``timeout_s`` bounds one download
as a whole (connect, redirects and body; policy ``artifacts.download_timeout_s``), so
a server that stalls, or drips bytes just fast enough to beat every per-read
timeout, fails with ``network`` after at most ``timeout_s`` plus one read
timeout, and nothing is cached. A local write failure while streaming into
the temp file (disk full, quota) is ``network`` as well -- the transfer could
not be completed; SPEC section 9 has no code for local I/O -- with a message
naming the error and the cache dir; the partial file is removed. A progress bar is drawn on stderr
only when ``progress`` is true and stderr is a terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, Protocol, cast
from urllib.parse import SplitResult, urlsplit

import filelock

from securehub._util.net import rewrite_by_prefix
from securehub.errors import ArtifactNotAllowed, HashMismatch, NetworkError, OfflineError, PolicyInvalid
from securehub.fetch import _http
from securehub.fetch.addrguard import AddressGuard, literal_hosts, normalize_host
from securehub.resolve.git import is_offline
from securehub.trust.artifact import check_url
from securehub.verify.hashprefix import MIN_PREFIX_HEX, match_prefix, validate_explicit_prefix

__all__ = [
    "ENV_MIRRORS",
    "ENV_OFFLINE",
    "ArtifactPin",
    "ArtifactStore",
    "DownloadResult",
    "apply_mirror",
    "download",
    "effective_mirrors",
    "offline_from_env",
    "parse_mirrors",
]

ENV_MIRRORS: Final = "SECUREHUB_MIRRORS"
ENV_OFFLINE: Final = "SECUREHUB_OFFLINE"


class ArtifactPin(Protocol):
    """What hub.lock pins for an artifact (``lockfile.ArtifactEntry`` satisfies it)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...


class ArtifactStore(Protocol):
    """The slice of :class:`securehub.store.cache.Cache` the downloader needs."""

    def verified_artifact(self, sha256: str) -> Path | None:
        """The cached blob with this digest, re-hashed (``HashMismatch`` if tampered); None if absent."""
        ...

    def tmp_dir(self) -> Path:
        """Where partial downloads go: same file system as the blobs; nothing there is trusted."""
        ...

    def lock_path(self, name: str) -> Path:
        """A lock file for a caller-chosen key, never clashing with the store's own locks."""
        ...

    def put_artifact_from_temp(self, tmp_path: Path, sha256: str) -> Path:
        """Re-hash a downloaded temp file and atomically move it into place, read-only; return the blob."""
        ...


@dataclass(frozen=True)
class DownloadResult:
    """A verified artifact in the cache.

    ``path`` is read-only and its content has the given ``sha256`` and ``size``
    (checked in this call). ``url`` is the original URL (what the lock records);
    ``fetched_from`` is where the bytes came from (a mirror URL, the original,
    or ``None`` when served from the cache).
    """

    path: Path
    sha256: str
    size: int
    url: str
    fetched_from: str | None
    from_cache: bool


# --------------------------------------------------------------------------- mirrors and env


def parse_mirrors(policy_mirrors: Mapping[str, str], env_value: str | None) -> dict[str, str]:
    """Merge the policy's ``artifacts.mirrors`` with ``SECUREHUB_MIRRORS`` (a JSON object).

    Entries from the environment override policy entries with the same prefix.
    Every prefix must be non-empty and every replacement an ``http(s)://`` URL
    prefix; otherwise :class:`PolicyInvalid` naming where it came from.
    """
    merged: dict[str, str] = {}
    for prefix, target in policy_mirrors.items():
        _check_mirror_entry(prefix, target, source="artifacts.mirrors")
        merged[prefix] = target
    if env_value is not None and env_value.strip():
        try:
            data = json.loads(env_value)
        except json.JSONDecodeError as exc:
            raise PolicyInvalid(
                f"{ENV_MIRRORS}: expected a JSON object mapping URL prefixes to replacement prefixes, "
                f"found invalid JSON ({exc.msg} at position {exc.pos}); "
                'e.g. {"https://download.pytorch.org/": "https://mirror.example/"}'
            ) from exc
        if not isinstance(data, dict):
            raise PolicyInvalid(
                f"{ENV_MIRRORS}: expected a JSON object mapping URL prefixes to replacement prefixes, "
                f"found a JSON {type(data).__name__}"
            )
        for prefix, target in data.items():
            _check_mirror_entry(prefix, target, source=ENV_MIRRORS)
            merged[prefix] = target
    return merged


def _check_mirror_entry(prefix: object, target: object, *, source: str) -> None:
    if not isinstance(prefix, str) or not prefix:
        raise PolicyInvalid(f"{source}: expected non-empty string URL prefixes as keys, found {prefix!r}")
    if not isinstance(target, str):
        raise PolicyInvalid(
            f"{source}[{prefix!r}]: expected a string replacement prefix, found {type(target).__name__} {target!r}"
        )
    if urlsplit(target).scheme.lower() not in ("http", "https") or not urlsplit(target).netloc:
        raise PolicyInvalid(f"{source}[{prefix!r}]: expected an http(s):// URL prefix with a host, found {target!r}")


def effective_mirrors(policy_mirrors: Mapping[str, str]) -> dict[str, str]:
    """:func:`parse_mirrors` of the policy's mirrors and the current ``SECUREHUB_MIRRORS``."""
    return parse_mirrors(policy_mirrors, os.environ.get(ENV_MIRRORS))


def apply_mirror(url: str, mirrors: Mapping[str, str]) -> str:
    """``url`` rewritten through the longest prefix in ``mirrors`` matching at a boundary (unchanged if none).

    See :func:`securehub._util.net.rewrite_by_prefix`: ``https://a.org`` does not rewrite
    ``https://a.org.evil.com/x``.
    """
    rewritten = rewrite_by_prefix(url, mirrors)
    return url if rewritten is None else rewritten


def offline_from_env() -> bool:
    """Whether ``SECUREHUB_OFFLINE`` asks for offline mode (any value but empty/0/false/no/off)."""
    return is_offline()


# --------------------------------------------------------------------------- download


def download(
    url: str,
    *,
    expected: ArtifactPin | None,
    hash_prefix: str | None,
    hosts: Sequence[str],
    max_bytes: int,
    mirrors: Mapping[str, str],
    store: ArtifactStore,
    progress: bool,
    offline: bool,
    auth_headers_for: Callable[[str], Mapping[str, str]] | None = None,
    connect_timeout_s: float = 30.0,
    read_timeout_s: float = 60.0,
    admit_check: Callable[[Path], None] | None = None,
    public_only: bool = False,
    timeout_s: float | None = None,
    min_prefix_hex: int = MIN_PREFIX_HEX,
) -> DownloadResult:
    """Fetch ``url`` into ``store``, verified; see the module docstring for the steps.

    ``public_only``: the URL was chosen by repository code, not the user, and
    is not pinned; connections are then checked on their resolved addresses
    (step 5). The caller decides this; locked URLs are the user's choice.

    ``timeout_s`` bounds the transfer as a whole (``None``: per-read timeouts
    only); it starts once this process holds the download lock, so waiting for
    another process's download of the same artifact does not count.

    ``admit_check`` runs on the downloaded temp file after the digest checks
    and before it is admitted into the store (e.g. the format check and pickle
    scan): when it raises, nothing is cached. It does not run on cache hits;
    the caller checks what it uses.

    ``hash_prefix`` is the digest prefix the content must have (from
    ``download_url_to_file(hash_prefix=...)`` or, already validated, from
    :func:`securehub.verify.hashprefix.required_prefix`). The caller still
    decides whether the artifact may be used unlocked (``lock.mode``) and must
    record ``(url, sha256, size)`` in hub.lock when it wants it pinned.
    """
    # Step 1: rules that need no I/O.
    check_url(url, hosts=hosts, exempt_hosts=(), role="artifact URL")
    prefix = validate_explicit_prefix(hash_prefix, min_hex=min_prefix_hex) if hash_prefix is not None else None
    if prefix is not None and expected is not None:
        # hub.lock and the caller's prefix disagree: no download can satisfy both.
        match_prefix(expected.sha256, prefix, what="hash_prefix, compared with the sha256 in hub.lock")
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")

    # Step 2: the cache, re-verified.
    if expected is not None:
        cached = _from_cache(url, expected, prefix, store)
        if cached is not None:
            return cached

    # Step 3: offline.
    if offline or offline_from_env():
        raise OfflineError(
            f"offline mode (offline=True or {ENV_OFFLINE}=1): expected {url} in the cache"
            + (f" with sha256 {expected.sha256}" if expected is not None else " (it is not locked)")
            + ", found nothing; run once with network access (securehub lock) to populate the cache",
            expected=f"{url} in the cache",
            found="nothing",
            remedy="run once with network access (securehub lock) to populate the cache",
        )

    # Step 4: the mirror.
    source = apply_mirror(url, mirrors)
    exempt: frozenset[str] = frozenset()
    trusted_origins: frozenset[tuple[str, int]] = frozenset()
    if source != url:
        mirror = check_url(source, hosts=None, role="mirror URL")
        exempt = frozenset({(mirror.hostname or "").lower().rstrip(".")})
        # "Configured mirrors are trusted as configured" (SPEC 5): the mirror's origin, not its whole host.
        trusted_origins = frozenset({(normalize_host(mirror.hostname or ""), _default_port(mirror))})
    guard = AddressGuard(literal_hosts(hosts), trusted_origins) if public_only else None

    # Steps 5-8, serialised per digest (or per URL when unlocked) across processes.
    key = expected.sha256 if expected is not None else "url-" + hashlib.sha256(url.encode()).hexdigest()
    with filelock.FileLock(str(store.lock_path(key))):
        if expected is not None:
            cached = _from_cache(url, expected, prefix, store)  # another process may have finished
            if cached is not None:
                return cached
        return _fetch(
            url,
            source,
            expected=expected,
            prefix=prefix,
            hosts=hosts,
            exempt_hosts=exempt,
            max_bytes=max_bytes,
            store=store,
            progress=progress,
            auth_headers_for=auth_headers_for,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            admit_check=admit_check,
            guard=guard,
            deadline=None if timeout_s is None else time.monotonic() + timeout_s,
        )


def _default_port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def _from_cache(url: str, expected: ArtifactPin, prefix: str | None, store: ArtifactStore) -> DownloadResult | None:
    """The cached blob for ``expected``, re-verified (sha256 by the store, size here); None if absent."""
    path = store.verified_artifact(expected.sha256)  # re-hashes the blob: HashMismatch when tampered
    if path is None:
        return None
    size = path.stat().st_size
    if size != expected.size:
        raise HashMismatch(
            f"cached artifact for {url} at {path}: expected size {expected.size} (hub.lock), found {size}. "
            "The sha256 matches, so hub.lock's size entry is wrong or was edited; fix hub.lock "
            "(re-lock with `securehub lock --upgrade`)",
            expected=f"size {expected.size} (hub.lock)",
            found=f"size {size}",
            remedy="fix hub.lock's size entry (re-lock with `securehub lock --upgrade`)",
        )
    if prefix is not None:
        match_prefix(expected.sha256, prefix, what="hash_prefix")
    return DownloadResult(path, expected.sha256, expected.size, url, None, from_cache=True)


def _fetch(
    url: str,
    source: str,
    *,
    expected: ArtifactPin | None,
    prefix: str | None,
    hosts: Sequence[str],
    exempt_hosts: frozenset[str],
    max_bytes: int,
    store: ArtifactStore,
    progress: bool,
    auth_headers_for: Callable[[str], Mapping[str, str]] | None,
    connect_timeout_s: float,
    read_timeout_s: float,
    admit_check: Callable[[Path], None] | None,
    guard: AddressGuard | None,
    deadline: float | None,
) -> DownloadResult:
    cap = expected.size if expected is not None else max_bytes
    with (
        _http.open_body(
            source,
            hosts=hosts,
            exempt_hosts=exempt_hosts,
            auth_headers_for=auth_headers_for,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            guard=guard,
            deadline=deadline,
        ) as body,
        _temp_file(store.tmp_dir()) as (tmp_path, out),
    ):
        # Step 6: refuse a declared size over the cap before reading any of the body.
        declared = body.content_length
        if declared is not None and declared > cap:
            raise _over_cap(url, expected, max_bytes, f"declares Content-Length {declared}")
        digest = hashlib.sha256()
        size = 0
        total = declared if declared is not None else (expected.size if expected is not None else None)
        with _progress_bar(progress, total=total, name=url) as bar:
            for chunk in body.chunks(cap):
                size += len(chunk)
                if size > cap:
                    raise _over_cap(url, expected, max_bytes, f"sent more than {cap} bytes")
                digest.update(chunk)
                with _local_write(tmp_path):
                    out.write(chunk)
                bar.update(len(chunk))
        with _local_write(tmp_path):
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()

        # Step 7: verify before anything is admitted.
        if expected is not None and (size != expected.size or sha256 != expected.sha256):
            raise HashMismatch(
                f"{url}: expected sha256 {expected.sha256} and size {expected.size} (hub.lock), found "
                f"sha256 {sha256} and size {size} from {body.url}; nothing was cached. The content changed "
                "since it was locked: if the change is legitimate, re-lock with `securehub lock --upgrade`",
                expected=f"sha256 {expected.sha256} and size {expected.size} (hub.lock)",
                found=f"sha256 {sha256} and size {size}",
                remedy="if the change is legitimate, re-lock with `securehub lock --upgrade`",
            )
        if prefix is not None:
            match_prefix(sha256, prefix, what="hash_prefix")
        out.close()
        if admit_check is not None:
            admit_check(tmp_path)

        # Step 8: admit atomically, read-only (the store re-hashes before the rename).
        tmp_path.chmod(0o444)
        final = store.put_artifact_from_temp(tmp_path, sha256)
    return DownloadResult(final, sha256, size, url, source, from_cache=False)


def _over_cap(url: str, expected: ArtifactPin | None, max_bytes: int, found: str) -> Exception:
    if expected is not None:
        return HashMismatch(
            f"{url}: the server served more bytes than the locked size: expected {expected.size} bytes "
            f"(hub.lock), found that it {found}; the download was stopped and nothing was cached"
        )
    return ArtifactNotAllowed(
        f"{url}: expected at most {max_bytes} bytes (policy artifacts.max_bytes), found that the server "
        f"{found}; the download was stopped and nothing was cached. Raise artifacts.max_bytes if this "
        "artifact is legitimately that large"
    )


@contextlib.contextmanager
def _local_write(path: Path) -> Iterator[None]:
    """A local ``OSError`` while writing the temp download (disk full, quota) becomes ``network``.

    It must not leak as a bare traceback: the transfer failed, the partial file is removed by
    :func:`_temp_file`, nothing is admitted. Only the local write is wrapped, never a read from
    the server (requests' errors are ``OSError`` subclasses too).
    """
    try:
        yield
    except OSError as exc:
        raise NetworkError(
            f"could not write the download to {path.parent} ({exc.strerror or type(exc).__name__}, "
            f"errno {exc.errno}); expected free space in the securehub cache. Nothing was cached. Free "
            "disk space (or point SECUREHUB_DIR at a larger disk) and try again"
        ) from exc


@contextlib.contextmanager
def _temp_file(directory: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new private file in the store's tmp dir; removed on any exit unless it was moved away."""
    fd, name = tempfile.mkstemp(prefix="download-", suffix=".part", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            yield path, out
    finally:
        # After a successful admit the file has been renamed away; otherwise it is junk.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


class _Bar(Protocol):
    def update(self, n: int) -> Any: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int) -> None:
        return None

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _progress_bar(enabled: bool, *, total: int | None, name: str) -> Iterator[_Bar]:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal; a no-op otherwise."""
    if not (enabled and sys.stderr.isatty()):
        yield _NoBar()
        return
    # tqdm ships no type information; the import is confined to this function.
    tqdm_cls = importlib.import_module("tqdm").tqdm
    bar = cast(
        "_Bar",
        tqdm_cls(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=urlsplit(name).path.rsplit("/", 1)[-1] or name,
            file=sys.stderr,
            leave=False,
        ),
    )
    try:
        yield bar
    finally:
        bar.close()
