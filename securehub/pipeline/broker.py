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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from securehub.config.lockfile import ArtifactEntry
from securehub.errors import FormatNotAllowed
from securehub.pipeline.context import Context
from securehub.sandbox.handoff import Verified
from securehub.sandbox.messages import FetchRequest
from securehub.trust.artifact import check_artifact_locked, check_caller_digest, effective_prefix, url_file_name
from securehub.verify.formats import check_format_allowed, detect_format
from securehub.verify.hashprefix import MIN_PREFIX_HEX, PrefixMode
from securehub.verify.pickle_scan import check as scan_pickle
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

    def __call__(self, request: FetchRequest) -> Verified:
        """Sandbox broker interface: answer a child's fetch request with a verified path and its digest.

        The URL is the repository's choice, so an unlocked one may reach public addresses only.
        The session checks the digest of what it hands over against the one verified here.
        """
        file_name = request.file_name or url_file_name(request.url)
        mode = PrefixMode.CHECK_HASH if request.check_hash else PrefixMode.ENFORCE_WHEN_PRESENT
        explicit = request.hash_prefix if request.kind == "download" else None
        fetched = self.fetch(
            request.url,
            file_name=file_name,
            prefix_mode=mode,
            hash_prefix=explicit,
            require_checkpoint=request.kind == "load_state_dict",
            chosen_by_repo=True,
        )
        return Verified(fetched.path, fetched.sha256)

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
        """
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
        )

        # Step 3: download or re-verify the cached copy; step 4 (the content) runs before a new
        # download is admitted into the cache, and again on every use of a cached copy.
        def content(path: Path) -> None:
            formats.append(_check_content(path, url, policy.artifacts.formats, require_checkpoint=require_checkpoint))

        from securehub.fetch.artifacts import download, effective_mirrors  # noqa: PLC0415 - lazy: requests is imported only when something is fetched (start-up time).

        formats: list[str] = []
        result = download(
            url,
            expected=pin,
            hash_prefix=prefix,
            hosts=policy.artifacts.hosts,
            max_bytes=policy.artifacts.max_bytes,
            mirrors=effective_mirrors(policy.artifacts.mirrors),
            store=self.ctx.cache,
            progress=self.progress,
            offline=self.offline,
            admit_check=content,
            public_only=chosen_by_repo and pin is None,
            timeout_s=float(policy.artifacts.download_timeout_s),
            min_prefix_hex=min_prefix_hex,
        )
        check_caller_digest(url, sha256, result.sha256)
        if result.from_cache:
            content(result.path)
        fetched = Fetched(url, result.sha256, result.size, formats[-1], result.path)
        self.fetched.append(fetched)
        return fetched

    def lock_entries(self) -> dict[str, ArtifactEntry]:
        """What was fetched, as hub.lock ``artifacts`` entries (original URLs)."""
        return {f.url: ArtifactEntry(sha256=f.sha256, size=f.size) for f in self.fetched}


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
