"""torch.hub's file-name hash-prefix rule, as securehub tightens it."""

from __future__ import annotations

import hashlib

import pytest

from securehub.errors import ArtifactNotAllowed, HashMismatch
from securehub.verify import hashprefix
from securehub.verify.hashprefix import (
    PrefixMode,
    check_prefix,
    expected_prefix,
    required_prefix,
    validate_explicit_prefix,
)

DIGEST = hashlib.sha256(b"weights").hexdigest()


def test_regex_is_exactly_torch_hubs() -> None:
    torch_hub = pytest.importorskip("torch.hub")
    assert hashprefix.HASH_REGEX.pattern == torch_hub.HASH_REGEX.pattern


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("resnet18-f37072fd.pth", "f37072fd"),
        ("resnet-.pth", ""),
        ("model-abc.pth", "abc"),
        ("model-ABCDEF12.pth", None),  # torch.hub's regex is lowercase only
        ("model.pth", None),
        ("model-abc-def01234.pth", "def01234"),  # "-abc-" is not followed by "."; first match wins
        ("model-deadbeef.tar-12345678.gz", "deadbeef"),
        ("https://h/dir-12345678.x/model.pth", None),  # only the last path component counts
    ],
)
def test_expected_prefix_matches_torch_hub(name: str, prefix: str | None) -> None:
    assert expected_prefix(name) == prefix
    torch_hub = pytest.importorskip("torch.hub")
    base = name.rsplit("/", 1)[-1]
    m = torch_hub.HASH_REGEX.search(base)
    assert (m.group(1) if m else None) == prefix


def test_match_passes_in_both_modes() -> None:
    name = f"resnet-{DIGEST[:8]}.pth"
    check_prefix(DIGEST, name, check_hash=True)
    check_prefix(DIGEST, name, check_hash=False)
    check_prefix(DIGEST, f"resnet-{DIGEST}.pth", check_hash=True)


@pytest.mark.parametrize("check_hash", [True, False])
def test_mismatch_is_hash_mismatch(check_hash: bool) -> None:
    wrong = "0" * 8 if not DIGEST.startswith("0" * 8) else "1" * 8
    with pytest.raises(HashMismatch) as exc:
        check_prefix(DIGEST, f"resnet-{wrong}.pth", check_hash=check_hash)
    assert exc.value.code == "hash-mismatch"
    assert wrong in str(exc.value)


def test_empty_prefix_refused_with_check_hash() -> None:
    # torch.hub accepts "resnet-.pth" with check_hash=True: digest[:0] == "" always holds.
    with pytest.raises(ArtifactNotAllowed) as exc:
        check_prefix(DIGEST, "resnet-.pth", check_hash=True)
    assert exc.value.code == "artifact-not-allowed"


def test_empty_prefix_claims_nothing_when_unlocked_default() -> None:
    check_prefix(DIGEST, "resnet-.pth", check_hash=False)
    assert required_prefix("resnet-.pth", mode=PrefixMode.ENFORCE_WHEN_PRESENT) is None


@pytest.mark.parametrize("check_hash", [True, False])
def test_short_prefix_refused_not_ignored(check_hash: bool) -> None:
    # Even when it happens to match: 3 hex digits are forged by brute force.
    with pytest.raises(ArtifactNotAllowed) as exc:
        check_prefix(DIGEST, f"model-{DIGEST[:3]}.pth", check_hash=check_hash)
    assert exc.value.code == "artifact-not-allowed"
    with pytest.raises(ArtifactNotAllowed):
        check_prefix(DIGEST, f"model-{DIGEST[:7]}.pth", check_hash=check_hash)


def test_missing_prefix_refused_only_with_check_hash() -> None:
    with pytest.raises(ArtifactNotAllowed):
        check_prefix(DIGEST, "model.pth", check_hash=True)
    check_prefix(DIGEST, "model.pth", check_hash=False)


def test_uppercase_prefix_is_no_prefix() -> None:
    # Same as torch.hub: uppercase digits do not match HASH_REGEX.
    name = f"model-{DIGEST[:8].upper()}.pth"
    with pytest.raises(ArtifactNotAllowed):
        check_prefix(DIGEST, name, check_hash=True)
    check_prefix(DIGEST, name, check_hash=False)


def test_ignore_mode_checks_nothing() -> None:
    assert required_prefix("model-abc.pth", mode=PrefixMode.IGNORE) is None


def test_required_prefix_refuses_before_download() -> None:
    assert required_prefix("r-0123abcd.pth", mode=PrefixMode.CHECK_HASH) == "0123abcd"
    with pytest.raises(ArtifactNotAllowed):
        required_prefix("r-0123.pth", mode=PrefixMode.ENFORCE_WHEN_PRESENT)


@pytest.mark.parametrize("bad", ["", "abc", "xyz12345", "0" * 65, "0123abc "])
def test_explicit_prefix_must_be_8_to_64_hex(bad: str) -> None:
    with pytest.raises(ArtifactNotAllowed) as exc:
        validate_explicit_prefix(bad)
    assert exc.value.code == "artifact-not-allowed"


def test_explicit_prefix_is_lowercased() -> None:
    assert validate_explicit_prefix(DIGEST[:10].upper()) == DIGEST[:10]
