"""torch.hub's file-name hash-prefix rule, with its weak cases closed.

torch.hub names checkpoints ``<name>-<first hex digits of sha256>.<ext>``
(``resnet18-f37072fd.pth``) and, with ``check_hash=True``, checks the
downloaded file's sha256 against the digits it finds with
``HASH_REGEX.search(file_name)`` -- the first match of ``-([a-f0-9]*)\\.``.
It accepts an *empty* or one-digit prefix (``resnet-.pth`` passes any
content), which gives a false sense of integrity: a 4-hex-digit prefix is
brute-forced in milliseconds. securehub keeps the regex (so it finds the same
digits as torch.hub) and refuses the weak cases:

* ``check_hash=True`` (:data:`PrefixMode.CHECK_HASH`): the name MUST carry a
  prefix of at least :data:`MIN_PREFIX_HEX` hex digits; a missing, empty or
  shorter one is ``artifact-not-allowed`` -- except that a name with no
  prefix at all is accepted when the download is checked against a full
  sha256 anyway (``full_digest``: pinned in hub.lock, ``sha256=`` given, or
  being recorded by ``securehub lock``).
* Default downloads (:data:`PrefixMode.ENFORCE_WHEN_PRESENT`): a
  prefix of at least 8 digits is enforced; a non-empty shorter one is
  refused (``artifact-not-allowed``), not ignored -- unless the download is
  checked against a full sha256 anyway (``full_digest``), for which such a
  name (``resnet-18.pth``) claims nothing. A name without a match,
  or with an empty match (``resnet-.pth``), claims nothing and is accepted.

A prefix that does not match the digest is ``hash-mismatch`` in every mode.
This module is pure: it does no I/O.
"""

from __future__ import annotations

import enum
import re

from securehub.errors import ArtifactNotAllowed, HashMismatch

__all__ = [
    "HASH_REGEX",
    "MIN_PREFIX_HEX",
    "PrefixMode",
    "check_prefix",
    "expected_prefix",
    "match_prefix",
    "required_prefix",
    "validate_explicit_prefix",
]

#: Exactly torch.hub's ``HASH_REGEX`` (torch/hub.py), so we find the same digits.
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")

#: Shortest prefix securehub accepts as an integrity claim (32 bits).
MIN_PREFIX_HEX = 8

_HEX = re.compile(r"[0-9a-f]+")


class PrefixMode(enum.Enum):
    """How strictly the file-name prefix is applied."""

    #: ``check_hash=True``: a prefix of >= 8 hex digits is required.
    CHECK_HASH = "check_hash"
    #: Unlocked default downloads: enforced when present; short ones refused.
    ENFORCE_WHEN_PRESENT = "enforce_when_present"
    #: ``check_hash=False`` under a policy that ignores the name (torch.hub's default).
    IGNORE = "ignore"


def expected_prefix(file_name: str) -> str | None:
    """The digits torch.hub would check for ``file_name``, or ``None`` without a match.

    Same semantics as torch.hub: the *first* match of :data:`HASH_REGEX`; the
    result may be the empty string (``resnet-.pth``). Only the last path
    component is considered, so directories in a URL path cannot supply one.
    """
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1]
    match = HASH_REGEX.search(base)
    return match.group(1) if match else None


def required_prefix(file_name: str, *, mode: PrefixMode, full_digest: bool = False) -> str | None:
    """The prefix the downloaded digest must start with, checked *before* any download.

    Returns ``None`` when nothing is to be checked. Raises
    :class:`ArtifactNotAllowed` for a prefix too weak to be trusted under
    ``mode`` (see the module docstring), so the caller can refuse before
    touching the network. ``full_digest``: the download is checked against a
    full sha256 anyway (hub.lock pins the URL, the caller passed ``sha256=``,
    or ``securehub lock`` is recording it), a stronger check than any name
    prefix. Then a name *without* a prefix is accepted under ``check_hash=True``
    (torch.hub checks nothing for such a name), and a short run of hex digits
    in a name (``resnet-18.pth``) is no claim at all under ``check_hash=False``;
    a prefix of 8 or more digits is still enforced, and a short one is still
    refused under ``check_hash=True`` (SPEC section 9).
    """
    if mode is PrefixMode.IGNORE:
        return None
    prefix = expected_prefix(file_name)
    if mode is PrefixMode.CHECK_HASH:
        if prefix is None and full_digest:
            return None
        if prefix is None:
            raise ArtifactNotAllowed(
                f"check_hash=True: expected the file name {file_name!r} to carry a sha256 prefix "
                f"('<name>-<at least {MIN_PREFIX_HEX} lowercase hex digits>.<ext>'), found none; "
                "pass sha256=... or lock the artifact in hub.lock instead"
            )
        if len(prefix) < MIN_PREFIX_HEX:
            raise ArtifactNotAllowed(_too_short(file_name, prefix, check_hash=True))
        return prefix
    # ENFORCE_WHEN_PRESENT
    if not prefix:
        return None
    if len(prefix) < MIN_PREFIX_HEX:
        if full_digest:
            return None
        raise ArtifactNotAllowed(_too_short(file_name, prefix, check_hash=False))
    return prefix


def validate_explicit_prefix(prefix: str, *, min_hex: int = MIN_PREFIX_HEX) -> str:
    """Check a caller-given ``hash_prefix`` (``download_url_to_file``) and return it lowercased.

    It must be at least ``min_hex`` (default :data:`MIN_PREFIX_HEX`) and at
    most 64 hex digits; anything else is refused (:class:`ArtifactNotAllowed`)
    rather than silently accepted as torch.hub does for ``""``. A caller that
    passes a smaller ``min_hex`` (torch.hub's own leniency, outside
    ``lock.mode: required``) must say so in the audit line.
    """
    lowered = prefix.lower()
    if not (_HEX.fullmatch(lowered) or lowered == "") or not min_hex <= len(lowered) <= 64:
        raise ArtifactNotAllowed(
            f"hash_prefix: expected {MIN_PREFIX_HEX} to 64 hex digits of the file's sha256, "
            f"found {prefix!r}; pass the full sha256 (sha256=...) instead"
        )
    return lowered


def check_prefix(sha256_hex: str, file_name: str, *, check_hash: bool) -> None:
    """Check a downloaded file's digest against the prefix in ``file_name``.

    ``check_hash=True`` uses :data:`PrefixMode.CHECK_HASH`, otherwise
    :data:`PrefixMode.ENFORCE_WHEN_PRESENT`. Raises :class:`ArtifactNotAllowed`
    for a missing/short prefix (per mode) and :class:`HashMismatch` when the
    digest does not start with the prefix. Returns only when the rule holds.
    """
    mode = PrefixMode.CHECK_HASH if check_hash else PrefixMode.ENFORCE_WHEN_PRESENT
    prefix = required_prefix(file_name, mode=mode)
    if prefix is not None:
        match_prefix(sha256_hex, prefix, what=f"the file name {file_name!r}")


def match_prefix(sha256_hex: str, prefix: str, *, what: str) -> None:
    """Raise :class:`HashMismatch` unless ``sha256_hex`` starts with ``prefix`` (case-insensitive)."""
    if not sha256_hex.lower().startswith(prefix.lower()):
        raise HashMismatch(
            f"expected a sha256 starting with {prefix!r} (from {what}), found {sha256_hex}; "
            "the file was not kept. The server sent different content than the name promises: "
            "check the URL or pin the digest you trust with sha256=..."
        )


def _too_short(file_name: str, prefix: str, *, check_hash: bool) -> str:
    found = (
        f"the file name {file_name!r} carries a sha256 prefix of {len(prefix)} hex digit(s) "
        f"({prefix!r}); expected at least {MIN_PREFIX_HEX}, because a shorter prefix can be "
        "forged by brute force. "
    )
    if check_hash:
        return found + (
            "With check_hash=True such a name is refused even when its full digest is known; where the "
            "entrypoint takes a check_hash argument, pass check_hash=False and lock the artifact in hub.lock "
            "(its full sha256 is then checked instead)"
        )
    return found + "Pin the full digest with sha256=... or lock the artifact in hub.lock"
