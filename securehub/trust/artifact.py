"""Admission of an artifact URL: hosts and scheme, the lock entry, entrypoint URLs, hash prefix, caller digest.

Pure decisions (SPEC sections 5 and 6): plain values in, ``None``/a value or
the coded :class:`~securehub.errors.SecureHubError` out, decided on the URL
text and the lock alone (no DNS, no download). The broker
(:mod:`securehub.pipeline.broker`) asks them in its numbered order and does
the I/O; :mod:`securehub.fetch` asks :func:`check_url` before every hop.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

from securehub._util.net import is_loopback_host, is_plain_host
from securehub.config.lockfile import ArtifactEntry
from securehub.config.policy import Policy
from securehub.errors import ArtifactNotAllowed, HashMismatch, NotLocked
from securehub.verify.hashprefix import PrefixMode, required_prefix

__all__ = [
    "check_artifact_locked",
    "check_caller_digest",
    "check_url",
    "effective_prefix",
    "host_matches",
    "redact_url",
    "scheme_only",
    "url_file_name",
]


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` (no port) matches one of the globs (case-insensitive, trailing dot ignored)."""
    name = host.lower().rstrip(".")
    return bool(name) and any(fnmatchcase(name, p.lower().rstrip(".")) for p in patterns)


def check_url(url: str, *, hosts: Sequence[str] | None, exempt_hosts: Collection[str] = (), role: str) -> SplitResult:
    """Refuse ``url`` (:class:`ArtifactNotAllowed`) unless it may be contacted; return it split.

    ``role`` names the URL in messages ("artifact URL", "redirect target",
    "mirror URL"). ``hosts=None`` skips the allowlist (a configured mirror);
    so does a host in ``exempt_hosts``. The scheme rule is never skipped.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ArtifactNotAllowed(
            f"{role} {scheme_only(url)}... is not a valid URL ({exc}); expected https://host/path"
        ) from exc
    scheme = parts.scheme.lower()
    shown = redact_url(parts)
    if scheme not in ("http", "https"):
        raise ArtifactNotAllowed(
            f"{role} {shown} uses the scheme {scheme or '(none)'!r}; expected https:// (or http:// to a loopback host)"
        )
    if not host:
        raise ArtifactNotAllowed(f"{role} {shown} has no host; expected {scheme}://host/path")
    if not is_plain_host(host):
        # Red team 14: a repository-chosen URL whose host imitates another (a Cyrillic letter, fullwidth
        # letters, U+3002 for '.') reached the network -- the HTTP client IDNA-maps it to another name --
        # and would have been recorded in hub.lock by `lock -e`, where it reads as the host it imitates.
        raise ArtifactNotAllowed(
            f"{role} {shown!a} names the host {host!a}; expected "
            "an ASCII host name (letters, digits, '.', '-', '_') or an IP address. A non-ASCII or "
            "percent-encoded host reads as another host; write an internationalised domain in its xn-- form"
        )
    if parts.username is not None or parts.password is not None:
        raise ArtifactNotAllowed(
            f"{role} {shown} carries credentials in the URL; expected a URL without user-info "
            "(credentials would end up in hub.lock and the audit log). Supply them through the token "
            "settings instead"
        )
    if scheme == "http" and not is_loopback_host(host):
        raise ArtifactNotAllowed(
            f"{role} {shown} uses plain http:// to the non-loopback host {host!r}; expected "
            "https:// (plain http is allowed only for 127.0.0.0/8, ::1 and localhost, under every policy)"
        )
    if hosts is not None and host.lower().rstrip(".") not in exempt_hosts and not host_matches(host, hosts):
        raise ArtifactNotAllowed(
            f"{role} host {host!r} is not in the policy's artifacts.hosts {list(hosts)!r}; "
            "add it to artifacts.hosts or configure a mirror under artifacts.mirrors"
        )
    return parts


def redact_url(parts: SplitResult) -> str:
    """The URL without user-info, query and fragment (they may carry credentials or signed tokens)."""
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{netloc}{parts.path}"


def scheme_only(url: str) -> str:
    """What is safe to show of an unparsable URL: its scheme."""
    return url.partition(":")[0][:16] + ":"


def check_artifact_locked(
    url: str,
    *,
    pin: ArtifactEntry | None,
    policy: Policy,
    allow_unlocked: bool,
    entrypoint_urls: frozenset[str] | None,
    entrypoint_name: str | None,
    sha256: str | None,
) -> None:
    """The lock's word on ``url``, before any network access (the broker's step 1).

    ``not-locked`` when hub.lock records the entrypoint's URLs (``entrypoint_urls``) and ``url`` is
    not one of them, or when ``url`` has no lock entry (``pin``) under ``lock.mode: required``
    (unless ``allow_unlocked``: ``securehub lock -e`` records it); ``hash-mismatch`` when the caller's
    ``sha256`` differs from the pinned one.
    """
    if entrypoint_urls is not None and url not in entrypoint_urls:
        raise NotLocked(
            f"artifact {url} is not among the artifacts hub.lock records for entrypoint "
            f"{entrypoint_name!r} ({sorted(entrypoint_urls) or 'none'}); expected only those. "
            "If the entrypoint legitimately changed, re-lock it with `securehub lock SPEC -e ENTRYPOINT --upgrade`."
        )
    if pin is None and policy.lock.mode == "required" and not allow_unlocked:
        raise NotLocked(
            f"artifact {url} is not in hub.lock, and the policy {policy.name!r} requires every artifact to "
            "be locked (lock.mode: required). Record it with `securehub lock SPEC -e ENTRYPOINT`."
        )
    if pin is not None and sha256 is not None and pin.sha256 != sha256.lower():
        raise HashMismatch(
            f"artifact {url}: the sha256 given by the caller ({sha256}) differs from hub.lock ({pin.sha256}); "
            "expected them to agree. Fix the caller or re-lock."
        )


def effective_prefix(
    url: str,
    *,
    file_name: str | None,
    prefix_mode: PrefixMode,
    hash_prefix: str | None,
    sha256: str | None,
    pinned: bool,
    recording: bool = False,
) -> str | None:
    """The digest prefix a download of ``url`` must have, decided from the name before any download
    (the broker's step 2): an explicit ``hash_prefix``, else torch.hub's file-name rule; for an
    unpinned URL with a caller ``sha256``, that full digest (``hash-mismatch`` if it contradicts the
    prefix), so nothing that fails a check is ever cached. ``recording``: ``securehub lock`` is
    recording the URL's full digest (with ``pinned`` or ``sha256``, a name without a prefix is
    accepted under ``check_hash=True``: see :func:`~securehub.verify.hashprefix.required_prefix`)."""
    full_digest = pinned or sha256 is not None or recording
    prefix = (
        hash_prefix
        if hash_prefix is not None
        else required_prefix(file_name or url_file_name(url), mode=prefix_mode, full_digest=full_digest)
    )
    if sha256 is not None and not pinned:
        # The caller's digest is checked before the download is admitted into the cache (as a
        # full-length prefix), not after: nothing that fails a check is ever cached.
        full = sha256.lower()
        if prefix is not None and not full.startswith(prefix.lower()):
            raise HashMismatch(
                f"artifact {url}: the sha256 given by the caller ({full}) does not start with the hash "
                f"prefix {prefix!r} (from the file name or hash_prefix); expected them to agree. Fix the caller."
            )
        prefix = full
    return prefix


def check_caller_digest(url: str, sha256: str | None, found: str) -> None:
    """``hash-mismatch`` when the caller pinned ``sha256`` and the downloaded bytes hash to ``found`` instead."""
    if sha256 is not None and found != sha256.lower():
        raise HashMismatch(
            f"artifact {url}: expected sha256 {sha256.lower()} (given by the caller), found {found}. "
            "The file was not used."
        )


def url_file_name(url: str) -> str:
    """The file name torch.hub would use for ``url`` (last path component)."""
    return Path(urlsplit(url).path).name
