"""``securehub.trust.artifact``: lock entry, entrypoint URLs, hash prefix, caller digest (table tests, no I/O).

The URL/host rule (:func:`securehub.trust.artifact.check_url`) has its table in ``test_mirrors.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from securehub.config.lockfile import ArtifactEntry
from securehub.config.policy import Policy
from securehub.errors import ArtifactNotAllowed, HashMismatch, NotLocked
from securehub.trust.artifact import (
    check_artifact_locked,
    check_caller_digest,
    effective_prefix,
    redact_url,
    url_file_name,
)
from securehub.verify.hashprefix import PrefixMode

URL = "https://h.example/w/net-1a2b3c4d.pth"
A, B = "1a2b3c4d" + "a" * 56, "b" * 64
PIN = ArtifactEntry(sha256=A, size=3)


def _locked(mode: str = "auto", **kw: Any) -> None:
    args: dict[str, Any] = {
        "pin": None, "allow_unlocked": False, "entrypoint_urls": None, "entrypoint_name": None, "sha256": None,
    }  # fmt: skip
    args.update(kw)
    check_artifact_locked(URL, policy=Policy.from_dict({"version": 1, "lock": {"mode": mode}}), **args)


@pytest.mark.parametrize(
    ("mode", "kw"),
    [
        ("required", {"pin": PIN}),
        ("auto", {}),
        ("optional", {}),
        ("required", {"allow_unlocked": True}),  # securehub lock -e records what is not locked yet
        ("auto", {"entrypoint_urls": frozenset({URL}), "entrypoint_name": "net"}),
        ("required", {"pin": PIN, "sha256": A.upper()}),
    ],
)
def test_admitted_by_the_lock(mode: str, kw: dict[str, Any]) -> None:
    _locked(mode, **kw)


@pytest.mark.parametrize(
    ("mode", "kw", "error", "needle"),
    [
        ("required", {}, NotLocked, f"artifact {URL} is not in hub.lock, and the policy"),
        (
            "auto",
            {"pin": PIN, "entrypoint_urls": frozenset({"https://h.example/other.pth"}), "entrypoint_name": "net"},
            NotLocked,
            f"artifact {URL} is not among the artifacts hub.lock records for entrypoint 'net' "
            "(['https://h.example/other.pth'])",
        ),
        ("auto", {"entrypoint_urls": frozenset(), "entrypoint_name": "net"}, NotLocked, "entrypoint 'net' (none)"),
        ("auto", {"pin": PIN, "sha256": B}, HashMismatch, f"given by the caller ({B}) differs from hub.lock"),
    ],
)
def test_refused_by_the_lock(mode: str, kw: dict[str, Any], error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as err:
        _locked(mode, **kw)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("file_name", "mode", "hash_prefix", "sha256", "pinned", "prefix"),
    [
        (None, PrefixMode.ENFORCE_WHEN_PRESENT, None, None, False, "1a2b3c4d"),  # torch.hub's name rule, from the URL
        ("plain.pth", PrefixMode.ENFORCE_WHEN_PRESENT, None, None, False, None),
        ("plain.pth", PrefixMode.ENFORCE_WHEN_PRESENT, "abcdef01", None, False, "abcdef01"),  # explicit wins
        (None, PrefixMode.ENFORCE_WHEN_PRESENT, None, A.upper(), False, A),  # caller digest: full-length prefix
        (None, PrefixMode.ENFORCE_WHEN_PRESENT, None, A, True, "1a2b3c4d"),  # pinned: the lock decides
        (None, PrefixMode.IGNORE, None, None, False, None),
        # check_hash=True on a name without a prefix: the full digest the download is checked against
        # anyway (hub.lock's pin, the caller's sha256) is the stronger check
        ("plain.pth", PrefixMode.CHECK_HASH, None, None, True, None),
        ("plain.pth", PrefixMode.CHECK_HASH, None, A, False, A),
        (None, PrefixMode.CHECK_HASH, None, None, True, "1a2b3c4d"),  # a prefix that is there is still enforced
        # check_hash=False: a short run of hex digits in a name is no claim when a full digest is checked
        ("resnet-18.pth", PrefixMode.ENFORCE_WHEN_PRESENT, None, None, True, None),
    ],
)
def test_effective_prefix(file_name: str | None, mode: PrefixMode, hash_prefix: str | None, sha256: str | None,
                          pinned: bool, prefix: str | None) -> None:  # fmt: skip
    got = effective_prefix(
        URL, file_name=file_name, prefix_mode=mode, hash_prefix=hash_prefix, sha256=sha256, pinned=pinned
    )
    assert got == prefix


def test_check_hash_without_a_prefix_is_accepted_while_securehub_lock_records_the_digest() -> None:
    got = effective_prefix(
        URL, file_name="plain.pth", prefix_mode=PrefixMode.CHECK_HASH, hash_prefix=None, sha256=None, pinned=False,
        recording=True,
    )  # fmt: skip
    assert got is None


@pytest.mark.parametrize(
    ("file_name", "pinned", "recording", "needle"),
    [
        ("plain.pth", False, False, "to carry a sha256 prefix"),  # no digest known: torch.hub's rule, closed
        ("net-1a2b.pth", True, False, "refused even when its full digest is known"),  # SPEC 9
        ("net-1a2b.pth", False, True, "refused even when its full digest is known"),
    ],
)
def test_check_hash_refusals(file_name: str, pinned: bool, recording: bool, needle: str) -> None:
    with pytest.raises(ArtifactNotAllowed) as err:
        effective_prefix(
            URL, file_name=file_name, prefix_mode=PrefixMode.CHECK_HASH, hash_prefix=None, sha256=None,
            pinned=pinned, recording=recording,
        )  # fmt: skip
    assert err.value.code == "artifact-not-allowed"
    assert needle in str(err.value)


def test_a_short_run_of_hex_digits_is_still_refused_when_no_full_digest_is_known() -> None:
    with pytest.raises(ArtifactNotAllowed) as err:
        effective_prefix(
            URL, file_name="resnet-18.pth", prefix_mode=PrefixMode.ENFORCE_WHEN_PRESENT, hash_prefix=None,
            sha256=None, pinned=False,
        )  # fmt: skip
    assert err.value.code == "artifact-not-allowed"
    assert "Pin the full digest with sha256=... or lock the artifact in hub.lock" in str(err.value)


def test_caller_digest_contradicting_the_name_prefix_is_refused_before_download() -> None:
    with pytest.raises(HashMismatch, match=r"does not start with the hash prefix '1a2b3c4d'") as err:
        effective_prefix(
            URL, file_name=None, prefix_mode=PrefixMode.ENFORCE_WHEN_PRESENT, hash_prefix=None, sha256=B, pinned=False
        )
    assert err.value.code == "hash-mismatch"


@pytest.mark.parametrize(("sha256", "found", "ok"), [(None, B, True), (A.upper(), A, True), (A, B, False)])
def test_caller_digest_after_download(sha256: str | None, found: str, ok: bool) -> None:
    if ok:
        check_caller_digest(URL, sha256, found)
        return
    with pytest.raises(HashMismatch, match=f"expected sha256 {A} \\(given by the caller\\), found {B}"):
        check_caller_digest(URL, sha256, found)


@pytest.mark.parametrize(
    ("url", "name"),
    [(URL, "net-1a2b3c4d.pth"), ("https://h/a/b.bin?x=1#f", "b.bin"), ("https://h/", "")],
)
def test_url_file_name(url: str, name: str) -> None:
    assert url_file_name(url) == name


def test_redact_url_drops_credentials_query_and_fragment() -> None:
    assert redact_url(urlsplit("https://u:s3cret@h.example:8443/p/x.pth?token=t#f")) == "https://h.example:8443/p/x.pth"
