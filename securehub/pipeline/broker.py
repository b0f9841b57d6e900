"""The artifact broker: the only way a checkpoint reaches a model (SPEC sections 5, 6, 8).

Both the sandbox child's ``torch.hub.load_state_dict_from_url`` calls and the
public :func:`securehub.load_state_dict_from_url` go through
:meth:`ArtifactBroker.fetch`, which applies, in order:

1. ``lock.mode: required`` — an artifact missing from hub.lock is refused
   (``not-locked``) before any network access;
2. the hash-prefix rule (torch.hub's file-name prefix: enforced when it has at
   least 8 hex digits; with ``check_hash=True`` it must be present);
3. the download itself (:func:`securehub.fetch.artifacts.download`): hosts,
   redirects, size caps, digest against the lock, atomic content-addressed
   caching; cached blobs are re-verified on every use. A URL the sandboxed
   repository asked for that hub.lock does not pin may reach only public
   addresses, checked on the resolved address at connect time and on every
   redirect (SSRF: a hubconf must not make the parent fetch
   ``http://127.0.0.1:…/admin/token`` or cloud metadata and read it back),
   unless the policy names the host literally in ``artifacts.hosts`` or the
   bytes come from a configured mirror;
4. the format, detected from content (never the name), against
   ``artifacts.formats``; safetensors headers validated; pickle checkpoints
   statically scanned (``unsafe-pickle`` naming the global).

Only then is the path handed out. What was fetched is remembered so that
``lock.mode: auto`` and ``securehub lock -e`` can record it.

Checking ahead (:meth:`ArtifactBroker.checking_ahead`). Re-verifying a cached
700 MB blob (sha256, then the pickle scan) takes about a second, and the
sandbox child used to wait for it at its first ``load_state_dict_from_url``.
While the child starts (``import torch``, the hubconf, the model's own
initialisation), the broker runs exactly the checks the child's plain
``load_state_dict_from_url(url)`` of each locked URL of the entrypoint would
trigger, on a second thread, for cached blobs only (never a download: that
waits for the child's request). A request with the same parameters is then
answered from that check while the blob still has the identity it had when
checked (inode, size, mtime, ctime); any other request, a changed blob or a
check that failed runs the whole path again (so an error is reported by the
request it belongs to). The session still hashes every hand-over and compares
it with the digest answered here before the call's result counts.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from securehub._util.deadline import time_left
from securehub._util.identity import FileIdentity
from securehub.config.lockfile import ArtifactEntry
from securehub.errors import FormatNotAllowed, NetworkError
from securehub.pipeline.context import Context
from securehub.sandbox.parent.handoff import Verified
from securehub.sandbox.wire.messages import FetchRequest
from securehub.trust.artifact import check_artifact_locked, check_caller_digest, effective_prefix, url_file_name
from securehub.verify.formats import check_format_allowed, detect_format
from securehub.verify.hashprefix import MIN_PREFIX_HEX, PrefixMode
from securehub.verify.pickle.scan import check as scan_pickle
from securehub.verify.safetensors_check import check_safetensors_artifact


@dataclass(frozen=True)
class Fetched:
    """One artifact handed out: original URL, digest, size and detected format."""

    url: str
    sha256: str
    size: int
    format: str
    path: Path


@dataclass
class ArtifactBroker:
    """Downloads and verifies artifacts for one operation under ``ctx``'s policy and lock.

    ``allow_unlocked`` overrides ``lock.mode: required`` — used only by
    ``securehub lock -e``, whose job is to record artifacts not yet locked.
    ``entrypoint_urls`` narrows what may be fetched to what the lock records
    for the entrypoint being loaded, under every lock mode (an existing lock
    entry is always enforced).
    """

    ctx: Context
    progress: bool = False
    allow_unlocked: bool = False
    #: When hub.lock records the entrypoint being run, the only URLs it may fetch (weights of one
    #: entrypoint or revision must not be mixed into another: threats.md "mix-and-match").
    entrypoint_urls: frozenset[str] | None = None
    entrypoint_name: str | None = None
    #: Serve only verified cached blobs and never connect (``offline`` for anything uncached);
    #: ``SECUREHUB_OFFLINE=1`` has the same effect whatever this says.
    offline: bool = False
    fetched: list[Fetched] = field(default_factory=list)
    #: Checks run ahead of the child's requests (:meth:`checking_ahead`), by the request's parameters.
    _ahead: dict[_Request, Future[_Checked | None]] = field(default_factory=dict, init=False, repr=False)

    def __call__(self, request: FetchRequest) -> Verified:
        """Sandbox broker interface: answer a child's fetch request with a verified path and its digest.

        The URL is the repository's choice, so an unlocked one may reach public addresses only.
        The session checks the digest of what it hands over against the one verified here.
        A download takes at most the time the requesting child has left (``request.deadline``;
        ``sandbox-timeout`` when none is left), never a whole ``download_timeout_s`` past it.
        """
        time_left(request.deadline, f"the download of {request.url!r}")
        key = _Request(
            request.url,
            request.file_name or url_file_name(request.url),
            PrefixMode.CHECK_HASH if request.check_hash else PrefixMode.ENFORCE_WHEN_PRESENT,
            request.hash_prefix if request.kind == "download" else None,
            request.kind == "load_state_dict",
        )
        ahead = self._ahead.pop(key, None)
        checked = ahead.result() if ahead is not None else None
        if checked is not None and checked.still_valid():
            self.fetched.append(checked.fetched)
            return Verified(checked.fetched.path, checked.fetched.sha256)
        fetched = self.fetch(
            key.url,
            file_name=key.file_name,
            prefix_mode=key.prefix_mode,
            hash_prefix=key.hash_prefix,
            require_checkpoint=key.require_checkpoint,
            chosen_by_repo=True,
            deadline=request.deadline,
        )
        return Verified(fetched.path, fetched.sha256)

    @contextmanager
    def checking_ahead(self, urls: Collection[str]) -> Iterator[None]:
        """Verify the cached blobs of ``urls`` on a second thread while the block runs (see the module docstring).

        Only locked URLs with a cached blob are checked, as a child's plain
        ``load_state_dict_from_url(url)`` would have them checked; nothing is
        downloaded and nothing is recorded in :attr:`fetched` until the child
        asks. On exit, checks not yet started are dropped and a running one is
        waited for (no thread outlives the block).
        """
        if not urls:
            yield
            return
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="securehub-broker")
        try:
            for url in sorted(urls):
                if self.ctx.lock.artifact(url) is None:
                    continue
                key = _Request(url, url_file_name(url), PrefixMode.ENFORCE_WHEN_PRESENT, None, True)
                self._ahead[key] = pool.submit(self._check_ahead, key)
            yield
        finally:
            self._ahead.clear()
            pool.shutdown(wait=True, cancel_futures=True)

    def _check_ahead(self, key: _Request) -> _Checked | None:
        """The whole check of a cached blob for ``key``, or ``None`` (not cached, refused, changed meanwhile)."""
        try:
            return self._fetch_checked(
                key.url,
                file_name=key.file_name,
                prefix_mode=key.prefix_mode,
                hash_prefix=key.hash_prefix,
                sha256=None,
                require_checkpoint=key.require_checkpoint,
                chosen_by_repo=True,
                min_prefix_hex=MIN_PREFIX_HEX,
                offline=True,
                identity_before=True,
            )
        except Exception:  # whatever failed, the child's own request runs the whole path again and reports it
            return None

    def fetch(
        self,
        url: str,
        *,
        file_name: str | None = None,
        prefix_mode: PrefixMode = PrefixMode.ENFORCE_WHEN_PRESENT,
        hash_prefix: str | None = None,
        sha256: str | None = None,
        require_checkpoint: bool = True,
        chosen_by_repo: bool = False,
        min_prefix_hex: int = MIN_PREFIX_HEX,
        deadline: float | None = None,
    ) -> Fetched:
        """Download (or reuse) ``url`` and run every check; see the module docstring.

        ``sha256``: a digest the caller pins explicitly (API ``sha256=``); it
        must agree with the lock when both exist. ``require_checkpoint=False``
        (``download_url_to_file``) admits files of no checkpoint format (a
        vocabulary, a config); a file that *is* a checkpoint is checked the same.
        ``chosen_by_repo``: the URL comes from repository code (the sandbox
        child), not from the user; unless hub.lock pins it, its connections
        must reach public addresses only (``artifact-not-allowed``).
        ``min_prefix_hex``: the shortest explicit ``hash_prefix`` accepted (below 8 only for
        ``download_url_to_file`` outside ``lock.mode: required``, audited by the caller).
        ``deadline`` (``time.monotonic()``): the download must end by then, whatever
        ``artifacts.download_timeout_s`` allows (``sandbox-timeout`` once it passed).
        """
        checked = self._fetch_checked(
            url,
            file_name=file_name,
            prefix_mode=prefix_mode,
            hash_prefix=hash_prefix,
            sha256=sha256,
            require_checkpoint=require_checkpoint,
            chosen_by_repo=chosen_by_repo,
            min_prefix_hex=min_prefix_hex,
            offline=self.offline,
            identity_before=False,
            deadline=deadline,
        )
        assert checked is not None  # noqa: S101 - only a check ahead (identity_before) may find a blob changed
        self.fetched.append(checked.fetched)
        return checked.fetched

    def _fetch_checked(
        self,
        url: str,
        *,
        file_name: str | None,
        prefix_mode: PrefixMode,
        hash_prefix: str | None,
        sha256: str | None,
        require_checkpoint: bool,
        chosen_by_repo: bool,
        min_prefix_hex: int,
        offline: bool,
        identity_before: bool,
        deadline: float | None = None,
    ) -> _Checked | None:
        """:meth:`fetch`'s steps, recording nothing. ``identity_before``: take the blob's identity before
        it is hashed and return ``None`` if it differs after the checks (a check ahead of the request)."""
        policy = self.ctx.policy
        pin = self.ctx.lock.artifact(url)
        # Step 1: the lock.
        check_artifact_locked(
            url,
            pin=pin,
            policy=policy,
            allow_unlocked=self.allow_unlocked,
            entrypoint_urls=self.entrypoint_urls,
            entrypoint_name=self.entrypoint_name,
            sha256=sha256,
        )
        # Step 2: the hash-prefix rule, decided from the name before any download.
        prefix = effective_prefix(
            url,
            file_name=file_name,
            prefix_mode=prefix_mode,
            hash_prefix=hash_prefix,
            sha256=sha256,
            pinned=pin is not None,
            recording=self.allow_unlocked,
        )

        # Step 3: download or re-verify the cached copy; step 4 (the content) runs before a new
        # download is admitted into the cache, and again on every use of a cached copy.
        def content(path: Path) -> None:
            formats.append(_check_content(path, url, policy.artifacts.formats, require_checkpoint=require_checkpoint))

        from securehub.fetch.artifacts import download, effective_mirrors  # noqa: PLC0415 - lazy: requests is imported only when something is fetched (start-up time).

        before = None
        if identity_before:
            pinned = self.ctx.cache.artifact_path(pin.sha256) if pin is not None else None
            if pinned is None or not pinned.is_file():
                return None  # not cached: downloading waits for the child's own request
            before = FileIdentity.of(os.lstat(pinned))
        formats: list[str] = []
        # A child's request carries its deadline: the download ends by then (red team 5), and a download
        # cut short by it is the child's timeout, not the host's fault (``network``).
        timeout_s = float(policy.artifacts.download_timeout_s)
        left = time_left(deadline, f"the download of {url!r}")
        cut_short = left is not None and left < timeout_s
        try:
            result = download(
                url,
                expected=pin,
                hash_prefix=prefix,
                hosts=policy.artifacts.hosts,
                max_bytes=policy.artifacts.max_bytes,
                mirrors=effective_mirrors(policy.artifacts.mirrors),
                store=self.ctx.cache,
                progress=self.progress,
                offline=offline,
                admit_check=content,
                public_only=chosen_by_repo and pin is None,
                timeout_s=min(timeout_s, left) if left is not None else timeout_s,
                min_prefix_hex=min_prefix_hex,
            )
        except NetworkError:
            if cut_short:
                time_left(deadline, f"the download of {url!r}")  # SandboxTimeout once the deadline passed
            raise
        check_caller_digest(url, sha256, result.sha256)
        if result.from_cache:
            content(result.path)
        checked = _Checked(Fetched(url, result.sha256, result.size, formats[-1], result.path), before)
        if before is not None and not checked.still_valid():
            return None
        return checked

    def lock_entries(self) -> dict[str, ArtifactEntry]:
        """What was fetched, as hub.lock ``artifacts`` entries (original URLs)."""
        return {f.url: ArtifactEntry(sha256=f.sha256, size=f.size) for f in self.fetched}


@dataclass(frozen=True)
class _Request:
    """The parameters of one fetch request that decide its checks (what a check ahead is keyed by)."""

    url: str
    file_name: str
    prefix_mode: PrefixMode
    hash_prefix: str | None
    require_checkpoint: bool


@dataclass(frozen=True)
class _Checked:
    """A fetch whose checks passed; ``identity``: the blob's identity before it was hashed (checks ahead only)."""

    fetched: Fetched
    identity: FileIdentity | None

    def still_valid(self) -> bool:
        """Whether the blob still has the identity it had before it was checked (always, without one)."""
        if self.identity is None:
            return True
        try:
            return FileIdentity.of(os.lstat(self.fetched.path)) == self.identity
        except OSError:
            return False


def _check_content(path: Path, url: str, allowed: Sequence[str], *, require_checkpoint: bool) -> str:
    """Format by content against the policy; safetensors header checks; pickle static scan.

    Returns the detected format. ``require_checkpoint=False`` admits files of
    no checkpoint format; a file that is a checkpoint is checked all the same.
    """
    detected = detect_format(path) if path.stat().st_size else "unknown"
    if require_checkpoint or detected != "unknown":
        try:
            check_format_allowed(detected, tuple(allowed))
        except FormatNotAllowed as err:  # name the URL: the path here is a temp download file
            raise FormatNotAllowed(f"{url}: {err.message}") from None
        if detected == "safetensors":
            check_safetensors_artifact(path, name=url)
        else:
            scan_pickle(path, name=url)  # messages name the URL, never the temp download file
    return detected
