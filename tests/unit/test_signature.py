"""Ed25519 keys and lock signatures: keygen, sign, verify, each refusal with its own message."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from securehub.config.lockfile import Lockfile, Signature
from securehub.errors import PolicyInvalid, SignatureInvalid
from securehub.verify.signature import (
    generate_keypair,
    keyid,
    parse_public_key,
    read_public_key_file,
    sign_lock,
    verify_lock,
)
from tests._lock_helpers import URL, keypair, one_repo_lock


def make_lock() -> Lockfile:
    return one_repo_lock("1" * 40, "2" * 64, args={"pretrained": True})


@pytest.fixture
def keys(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    return keypair(tmp_path, "ci")


@pytest.fixture
def other_keys(tmp_path: pathlib.Path) -> tuple[pathlib.Path, str]:
    return keypair(tmp_path, "other")


# --------------------------------------------------------------------------- keygen


def test_keygen_writes_private_0600_and_public_base64(tmp_path: pathlib.Path) -> None:
    key, pub = generate_keypair(str(tmp_path / "team"))
    assert (key.name, pub.name) == ("team.key", "team.pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    text = pub.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    raw = base64.b64decode(text.strip(), validate=True)
    assert len(raw) == 32
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (
        private.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        == raw
    )
    assert read_public_key_file(pub) == text.strip()


def test_keygen_private_key_is_never_readable_by_others_during_creation(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = os.open
    seen: list[tuple[int, int, int]] = []

    def spy_open(path: object, flags: int, mode: int = 0o777, *a: object, **kw: object) -> int:
        fd = real_open(path, flags, mode, *a, **kw)  # type: ignore[arg-type]
        if str(path).endswith(".key"):
            # Right after creation, before a single byte is written.
            seen.append((flags, mode, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "open", spy_open)
    old = os.umask(0)  # a careless umask must not widen the key file
    try:
        key, _ = generate_keypair(tmp_path / "k")
    finally:
        os.umask(old)
    assert len(seen) == 1
    flags, mode, actual = seen[0]
    assert flags & os.O_EXCL and flags & os.O_CREAT and flags & os.O_NOFOLLOW
    assert mode == 0o600
    assert actual & 0o077 == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


@pytest.mark.parametrize("existing", ["x.key", "x.pub"])
def test_keygen_refuses_to_overwrite_and_writes_nothing(tmp_path: pathlib.Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious")
    with pytest.raises(FileExistsError, match="never overwrites"):
        generate_keypair(tmp_path / "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_text() == "precious"


def test_keygen_refuses_a_dangling_symlink_at_the_key_path(tmp_path: pathlib.Path) -> None:
    (tmp_path / "x.key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileExistsError):
        generate_keypair(tmp_path / "x")
    assert not (tmp_path / "elsewhere").exists()


def test_keyid_is_full_sha256_of_raw_public_key(keys: tuple[pathlib.Path, str]) -> None:
    raw = base64.b64decode(keys[1])
    assert keyid(raw) == hashlib.sha256(raw).hexdigest()
    assert len(keyid(raw)) == 64
    with pytest.raises(ValueError):
        keyid(raw[:31])


# --------------------------------------------------------------------------- sign / verify


def test_sign_verify_roundtrip_returns_the_keyid(keys: tuple[pathlib.Path, str]) -> None:
    key, pub = keys
    signed = sign_lock(make_lock(), key)
    assert signed.signature is not None
    assert signed.signature.alg == "ed25519"
    assert signed.signature.keyid == keyid(base64.b64decode(pub))
    assert len(base64.b64decode(signed.signature.sig)) == 64
    assert verify_lock(signed, [pub]) == signed.signature.keyid
    # Through the file: save, load, verify.
    path = key.parent / "hub.lock"
    signed.save(path)
    assert verify_lock(Lockfile.load(path), [pub]) == signed.signature.keyid


def test_any_of_several_trusted_keys_verifies(
    keys: tuple[pathlib.Path, str], other_keys: tuple[pathlib.Path, str]
) -> None:
    signed = sign_lock(make_lock(), other_keys[0])
    assert verify_lock(signed, [keys[1], other_keys[1] + "\n"]) == keyid(base64.b64decode(other_keys[1]))


def test_no_trusted_keys_means_no_requirement() -> None:
    assert verify_lock(make_lock(), []) is None
    garbage = make_lock().with_signature(Signature(keyid="x", alg="rsa", sig="!!"))
    assert verify_lock(garbage, ()) is None


def test_unsigned_lock_is_refused_when_keys_are_trusted(keys: tuple[pathlib.Path, str]) -> None:
    with pytest.raises(SignatureInvalid) as info:
        verify_lock(make_lock(), [keys[1]])
    assert info.value.code == "signature-invalid"
    assert "the policy lists 1 trusted key but hub.lock is unsigned" in str(info.value)
    assert "securehub sign" in str(info.value)


def test_lock_signed_by_an_untrusted_key_is_refused(
    keys: tuple[pathlib.Path, str], other_keys: tuple[pathlib.Path, str]
) -> None:
    signed = sign_lock(make_lock(), other_keys[0])
    with pytest.raises(SignatureInvalid, match="not among the policy's 1 trusted key") as info:
        verify_lock(signed, [keys[1]])
    assert info.value.code == "signature-invalid"


def test_wrong_algorithm_is_refused(keys: tuple[pathlib.Path, str]) -> None:
    signed = sign_lock(make_lock(), keys[0])
    assert signed.signature is not None
    bad = signed.with_signature(Signature(keyid=signed.signature.keyid, alg="rsa-pss", sig=signed.signature.sig))
    with pytest.raises(SignatureInvalid, match=r'signature.alg: expected "ed25519", found \'rsa-pss\''):
        verify_lock(bad, [keys[1]])


@pytest.mark.parametrize(
    ("sig", "needle"),
    [
        ("not base64!", "expected base64"),
        ("QUJD", "found 3 bytes"),
        ("QUJD\n", "expected base64"),
        ("QUI=", "found 2 bytes"),
        ("QUJ=", "non-canonical"),  # padding bits set: same bytes, different text
    ],
)
def test_malformed_signature_encoding_is_refused(keys: tuple[pathlib.Path, str], sig: str, needle: str) -> None:
    signed = sign_lock(make_lock(), keys[0])
    assert signed.signature is not None
    bad = signed.with_signature(Signature(keyid=signed.signature.keyid, alg="ed25519", sig=sig))
    with pytest.raises(SignatureInvalid, match="signature.sig") as info:
        verify_lock(bad, [keys[1]])
    assert needle in str(info.value)


def test_modified_signature_bytes_are_refused(keys: tuple[pathlib.Path, str]) -> None:
    signed = sign_lock(make_lock(), keys[0])
    assert signed.signature is not None
    raw = bytearray(base64.b64decode(signed.signature.sig))
    raw[10] ^= 0x01
    bad = signed.with_signature(
        Signature(keyid=signed.signature.keyid, alg="ed25519", sig=base64.b64encode(bytes(raw)).decode())
    )
    with pytest.raises(SignatureInvalid, match="does not match the lock's content"):
        verify_lock(bad, [keys[1]])


def _tamper(obj: dict, what: str) -> None:  # type: ignore[type-arg]
    repo = obj["repos"]["owner/repo:v1"]
    if what == "commit":
        repo["commit"] = "3" * 40
    elif what == "tree_sha256":
        repo["tree_sha256"] = "4" * 64
    elif what == "remote":
        repo["remote"] = "https://github.com/evil/repo.git"
    elif what == "ref":
        repo["ref"] = "v2"
    elif what == "ref_type":
        repo["ref_type"] = "branch"
    elif what == "artifact-sha256":
        obj["artifacts"][URL]["sha256"] = "b" * 64
    elif what == "artifact-size":
        obj["artifacts"][URL]["size"] = 1235
    elif what == "entrypoint-args":
        repo["entrypoints"]["resnet18"]["args"]["pretrained"] = False
    elif what == "extra-top-level-field":
        obj["x-note"] = "harmless?"
    elif what == "extra-repo-field":
        repo["x-note"] = 1
    elif what == "new-artifact":
        obj["artifacts"]["https://evil.example/x.pth"] = {"sha256": "c" * 64, "size": 1}
    elif what == "repo-renamed":
        obj["repos"]["owner/repo:v2"] = obj["repos"].pop("owner/repo:v1")
    elif what == "entrypoint-dropped":
        repo["entrypoints"] = {}
    else:
        raise AssertionError(what)


TAMPERINGS = [
    "commit",
    "tree_sha256",
    "remote",
    "ref",
    "ref_type",
    "artifact-sha256",
    "artifact-size",
    "entrypoint-args",
    "extra-top-level-field",
    "extra-repo-field",
    "new-artifact",
    "repo-renamed",
    "entrypoint-dropped",
]


@pytest.mark.parametrize("what", TAMPERINGS)
def test_changing_any_value_breaks_the_signature(keys: tuple[pathlib.Path, str], what: str) -> None:
    signed = sign_lock(make_lock(), keys[0])
    obj = json.loads(signed.to_bytes())
    _tamper(obj, what)
    tampered = Lockfile.parse(json.dumps(obj).encode())  # still a well-formed lock
    with pytest.raises(SignatureInvalid, match="does not match") as info:
        verify_lock(tampered, [keys[1]])
    assert info.value.code == "signature-invalid"


@pytest.mark.parametrize(
    "dump",
    [
        lambda o: json.dumps(o),
        lambda o: json.dumps(o, indent=4),
        lambda o: json.dumps(o, indent="\t", separators=(" ,", " : ")),
        lambda o: json.dumps(dict(reversed(list(o.items()))), ensure_ascii=True),
    ],
)
def test_reformatting_the_file_does_not_matter(keys: tuple[pathlib.Path, str], dump: object) -> None:
    signed = sign_lock(make_lock(), keys[0])
    text = dump(json.loads(signed.to_bytes()))  # type: ignore[operator]
    reparsed = Lockfile.parse(text.encode())
    assert verify_lock(reparsed, [keys[1]]) == keyid(base64.b64decode(keys[1]))


# --------------------------------------------------------------------------- private key handling


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_key_file_accessible_to_others_is_refused(keys: tuple[pathlib.Path, str], mode: int) -> None:
    key = keys[0]
    key.chmod(mode)
    with pytest.raises(SignatureInvalid) as info:
        sign_lock(make_lock(), key)
    assert info.value.code == "signature-invalid"
    assert f"chmod 600 {key}" in str(info.value)
    assert f"{mode:04o}" in str(info.value)


def test_key_file_0400_is_accepted(keys: tuple[pathlib.Path, str]) -> None:
    keys[0].chmod(0o400)
    assert sign_lock(make_lock(), keys[0]).signature is not None


def test_missing_key_file_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SignatureInvalid, match="securehub keygen"):
        sign_lock(make_lock(), tmp_path / "nope.key")


def test_non_ed25519_key_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ec.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(SignatureInvalid, match="expected an Ed25519 private key"):
        sign_lock(make_lock(), path)


def test_garbage_key_file_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(b"hello")
    path.chmod(0o600)
    with pytest.raises(SignatureInvalid, match="unencrypted PEM"):
        sign_lock(make_lock(), path)


# --------------------------------------------------------------------------- trusted key strings


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "not-base64!",
        base64.b64encode(b"\x01" * 31).decode(),
        base64.b64encode(b"\x01" * 33).decode(),
        "a" * 64,  # a hex key id is not a public key
        12345,
    ],
)
def test_invalid_trusted_key_is_policy_invalid(keys: tuple[pathlib.Path, str], bad: object) -> None:
    signed = sign_lock(make_lock(), keys[0])
    with pytest.raises(PolicyInvalid) as info:
        verify_lock(signed, [keys[1], bad])  # type: ignore[list-item]
    assert info.value.code == "policy-invalid"
    assert "signatures.trusted_keys[1]" in str(info.value)
    assert "32-byte Ed25519 public key" in str(info.value)


def test_parse_public_key_accepts_pub_file_contents(keys: tuple[pathlib.Path, str]) -> None:
    assert len(parse_public_key(keys[1] + "\n")) == 32
