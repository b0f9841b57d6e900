"""Ed25519 signatures over ``hub.lock`` (SPEC section 4).

Key files, as written by :func:`generate_keypair` (``securehub keygen``):

* ``PREFIX.key`` -- the private key, PEM-encoded unencrypted PKCS#8
  (``-----BEGIN PRIVATE KEY-----``), created with mode 0600 and ``O_EXCL``
  so it never exists with wider permissions and never replaces a file;
* ``PREFIX.pub`` -- base64 of the raw 32-byte public key plus a newline: the
  form ``signatures.trusted_keys`` takes in a policy.

A key id is the lowercase hex sha256 of the raw 32-byte public key.

What a signature covers is exactly
:meth:`securehub.config.lockfile.Lockfile.canonical_unsigned_bytes`: the canonical
JSON of the whole lock without its ``signature`` field. Re-indenting the file
therefore does not matter; changing any value (or unknown extra field) does.

A valid signature proves who approved *some* lock content; it does not stop
an attacker replaying an older lock that the same key signed (rollback).
Keep the lock in version control and review its diffs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from securehub._util.regular import NotRegularFileError, open_regular
from securehub.config.lockfile import Lockfile, Signature
from securehub.errors import PolicyInvalid, SignatureInvalid

__all__ = [
    "ALG",
    "generate_keypair",
    "keyid",
    "parse_public_key",
    "read_public_key_file",
    "sign_lock",
    "verify_lock",
]

#: The only signature algorithm securehub writes or accepts.
ALG = "ed25519"

_PUBLIC_KEY_BYTES = 32
_SIGNATURE_BYTES = 64
_MAX_KEY_FILE_BYTES = 64 * 1024
_SIGN_HINT = "run `securehub sign --key PRIVATE_KEY` with the private key of a trusted key"


def keyid(public_raw: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: full lowercase hex sha256."""
    if len(public_raw) != _PUBLIC_KEY_BYTES:
        raise ValueError(f"expected a raw {_PUBLIC_KEY_BYTES}-byte Ed25519 public key, found {len(public_raw)} bytes")
    return hashlib.sha256(public_raw).hexdigest()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _strict_b64decode(text: str) -> bytes:
    """Decode standard padded base64, refusing anything that does not re-encode identically."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(str(exc)) from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


# --------------------------------------------------------------------------- keys


def generate_keypair(prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Create ``PREFIX.key`` (private, 0600) and ``PREFIX.pub`` (public); return both paths.

    Guarantees: neither file is overwritten (``FileExistsError`` if either
    exists); the private key file is created with mode 0600 in the same
    ``open`` call that creates it, whatever the umask, and is removed again
    if the public key cannot be written.
    """
    base = os.fspath(prefix)
    key_path = Path(base + ".key")
    pub_path = Path(base + ".pub")
    for p in (key_path, pub_path):
        if os.path.lexists(p):
            raise FileExistsError(
                f"{p} already exists; expected a new prefix. securehub keygen never overwrites keys: "
                "choose another prefix or move the old files away first"
            )
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_line = base64.b64encode(_raw_public(private.public_key())) + b"\n"

    _create_exclusive(key_path, pem, 0o600)
    try:
        _create_exclusive(pub_path, public_line, 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, mode)
    try:
        # The umask can only narrow ``mode``; fchmod makes it exact (0644 for .pub).
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    p = Path(path)
    try:
        fd = open_regular(p)
    except NotRegularFileError as exc:
        raise SignatureInvalid(
            f"{p}: expected a regular file holding a private key, found {exc.found} (not a regular file)"
        ) from None
    except FileNotFoundError:
        raise SignatureInvalid(
            f"{p}: expected an Ed25519 private key file, found no such file; "
            "create one with `securehub keygen PREFIX` and pass PREFIX.key"
        ) from None
    except OSError as exc:
        raise SignatureInvalid(
            f"{p}: expected a readable private key file, could not open it ({exc.strerror or exc})"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        # fstat on the open file, not stat on the name: no window to swap it.
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SignatureInvalid(f"{p}: expected a regular file holding a private key, found something else")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SignatureInvalid(
                f"{p}: expected a private key readable only by its owner (mode 0600), found mode "
                f"{mode:04o}, accessible to group or others; run `chmod 600 {p}` and consider the key "
                "exposed if others could read it",
                expected="mode 0600 (readable only by its owner)",
                found=f"mode {mode:04o}",
                remedy=f"run `chmod 600 {p}` and consider the key exposed if others could read it",
            )
        data = fh.read(_MAX_KEY_FILE_BYTES + 1)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise SignatureInvalid(f"{p}: expected a small PEM private key file, found a file over 64 KiB")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureInvalid(
            f"{p}: expected an unencrypted PEM (PKCS#8) Ed25519 private key as written by "
            f"`securehub keygen PREFIX`, could not load it ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureInvalid(
            f"{p}: expected an Ed25519 private key, found a {type(key).__name__}; "
            "generate one with `securehub keygen PREFIX`"
        )
    return key


def parse_public_key(text: str, *, where: str = "signatures.trusted_keys") -> bytes:
    """Decode a trusted key (base64 of the raw 32 bytes, surrounding whitespace ignored).

    Returns the raw 32 bytes. Raises :class:`PolicyInvalid` naming ``where``.
    """
    problem = _public_key_problem(text)
    if problem is not None:
        shown = _shown(text.strip()) if isinstance(text, str) else type(text).__name__
        raise PolicyInvalid(
            f"{where}: expected base64 of a raw {_PUBLIC_KEY_BYTES}-byte Ed25519 public key (the contents "
            f"of a .pub file from `securehub keygen PREFIX`), found {shown} ({problem}); fix the policy"
        )
    return _strict_b64decode(text.strip())


def _public_key_problem(text: object) -> str | None:
    if not isinstance(text, str):
        return "not a string"
    try:
        raw = _strict_b64decode(text.strip())
    except ValueError as exc:
        return str(exc)
    if len(raw) != _PUBLIC_KEY_BYTES:
        return f"decodes to {len(raw)} bytes"
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        return str(exc)
    return None


def read_public_key_file(path: str | os.PathLike[str]) -> str:
    """Read a ``.pub`` file and return its base64 key (validated, without the newline)."""
    p = Path(path)
    text = p.read_text(encoding="ascii").strip()
    parse_public_key(text, where=str(p))
    return text


# --------------------------------------------------------------------------- sign / verify


def sign_lock(lock: Lockfile, private_key_path: str | os.PathLike[str]) -> Lockfile:
    """Return ``lock`` carrying an Ed25519 signature over its canonical unsigned bytes.

    Refuses (:class:`SignatureInvalid`) a key file accessible to group or
    others, a missing file, or anything that is not an Ed25519 private key.
    The caller saves the result.
    """
    private = _load_private_key(private_key_path)
    sig = private.sign(lock.canonical_unsigned_bytes())
    return lock.with_signature(
        Signature(
            keyid=keyid(_raw_public(private.public_key())),
            alg=ALG,
            sig=base64.b64encode(sig).decode("ascii"),
        )
    )


def verify_lock(lock: Lockfile, trusted_keys: Sequence[str]) -> str | None:
    """Check ``lock``'s signature against the policy's ``trusted_keys``.

    Returns ``None`` when ``trusted_keys`` is empty (no signature required;
    a signature present is then not checked). Otherwise returns the key id
    that verified, or raises :class:`SignatureInvalid`. A malformed entry in
    ``trusted_keys`` raises :class:`PolicyInvalid`.
    """
    # Step 1: the trusted keys themselves.
    trusted: dict[str, bytes] = {}
    for i, text in enumerate(trusted_keys):
        raw = parse_public_key(text, where=f"signatures.trusted_keys[{i}]")
        trusted[keyid(raw)] = raw
    if not trusted:
        return None
    count = f"{len(trusted)} trusted key{'s' if len(trusted) != 1 else ''}"

    # Step 2: a signature must be present.
    signature = lock.signature
    if signature is None:
        raise SignatureInvalid(
            f"the policy lists {count} but hub.lock is unsigned; expected a signature by one of them; {_SIGN_HINT}",
            expected=f"a signature by one of the policy's {count}",
            found="an unsigned hub.lock",
            remedy=_SIGN_HINT,
        )

    # Step 3: the algorithm.
    if signature.alg != ALG:
        raise SignatureInvalid(f'hub.lock signature.alg: expected "{ALG}", found {_shown(signature.alg)}; {_SIGN_HINT}')

    # Step 4: the key id selects the key; it must be one we trust.
    public_raw = trusted.get(signature.keyid)
    if public_raw is None:
        ids = ", ".join(sorted(k[:16] for k in trusted))
        raise SignatureInvalid(
            f"hub.lock is signed by key id {_shown(signature.keyid)}, which is not among the policy's "
            f"{count} (ids starting {ids}); expected a signature by a trusted key; {_SIGN_HINT}, or add "
            "the signer's public key to signatures.trusted_keys after review",
            expected="a signature by a trusted key",
            found=f"key id {_shown(signature.keyid)}",
            remedy=f"{_SIGN_HINT}, or add the signer's public key to signatures.trusted_keys after review",
        )

    # Step 5: the signature encoding.
    try:
        sig = _strict_b64decode(signature.sig)
    except ValueError as exc:
        raise SignatureInvalid(
            f"hub.lock signature.sig: expected base64 of a {_SIGNATURE_BYTES}-byte Ed25519 signature, "
            f"found {_shown(signature.sig)} ({exc}); {_SIGN_HINT}"
        ) from None
    if len(sig) != _SIGNATURE_BYTES:
        raise SignatureInvalid(
            f"hub.lock signature.sig: expected a {_SIGNATURE_BYTES}-byte Ed25519 signature, found "
            f"{len(sig)} bytes; {_SIGN_HINT}"
        )

    # Step 6: the signature over the canonical unsigned bytes.
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(sig, lock.canonical_unsigned_bytes())
    except InvalidSignature:
        raise SignatureInvalid(
            f"hub.lock signature by key id {signature.keyid[:16]}... does not match the lock's content: "
            "expected the signed content, found a lock modified after signing (or signed by a different "
            "key claiming this id); review the changes to hub.lock (e.g. `git diff hub.lock`) and re-sign "
            "only if they are intended",
            expected="the signed content",
            found="a lock modified after signing (or signed by a different key claiming this id)",
            remedy="review the changes to hub.lock (e.g. `git diff hub.lock`) and re-sign only if they are intended",
        ) from None
    return signature.keyid
