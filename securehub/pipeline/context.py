"""Loading the trust inputs of one operation: policy, lock (signature-checked) and cache.

Every API entry point starts here, so the order of checks is the same
everywhere: the policy is validated first, then the lock is parsed and, when
the policy lists trusted keys, its signature is verified before anything in it
is believed.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from securehub._util.hubdir import hub_dir
from securehub.config.lockfile import Lockfile
from securehub.config.policy import Policy
from securehub.errors import LockInvalid, SignatureInvalid
from securehub.store.cache import Cache

LockArg = str | os.PathLike[str] | Lockfile | None
PolicyArg = str | os.PathLike[str] | Policy | None


@dataclass(frozen=True)
class Context:
    """What one operation trusts. ``lock_path`` is where the lock lives (or would be written)."""

    policy: Policy
    lock: Lockfile
    lock_path: Path | None
    lock_exists: bool
    signed_by: str | None
    cache: Cache


def lock_location(lock: str | os.PathLike[str] | None, *, for_writing: bool) -> Path | None:
    """``lock`` -> env ``SECUREHUB_LOCK`` -> ``./hub.lock`` (if it exists, or when writing) -> none."""
    if lock is not None:
        return Path(lock)
    env = os.environ.get("SECUREHUB_LOCK")
    if env:
        return Path(env)
    default = Path("hub.lock")
    if for_writing or default.exists():
        return default
    return None


def load_context(policy: PolicyArg = None, lock: LockArg = None, *, for_writing: bool = False) -> Context:
    """Validate the policy, then load and signature-check the lock.

    Raises ``PolicyInvalid``, ``LockInvalid`` (unparseable lock, or an
    explicit ``lock`` path that does not exist, unless ``for_writing``) and
    ``SignatureInvalid`` (the policy lists trusted keys and the lock is
    unsigned, missing, or signed by another key).
    """
    pol = Policy.load(policy)
    path: Path | None
    if isinstance(lock, Lockfile):
        lockfile, path, exists = lock, None, True
    else:
        path = lock_location(lock, for_writing=for_writing)
        exists = path is not None and path.exists()
        if lock is not None and not exists and not for_writing:
            _missing_explicit_lock(Path(lock))
        lockfile = Lockfile.load(path) if exists and path is not None else Lockfile.empty()
    signed_by: str | None = None
    if pol.signatures.trusted_keys:
        if not exists and not for_writing:
            raise SignatureInvalid(
                f"the policy {pol.name!r} lists {len(pol.signatures.trusted_keys)} trusted key(s), so a signed "
                "hub.lock is required, but no lock was found (looked at the lock argument, SECUREHUB_LOCK and "
                "./hub.lock). Create one with `securehub lock SPEC` and sign it with "
                "`securehub sign --key PRIVATE_KEY`."
            )
        # Re-locking may start from an unsigned lock (any change drops the signature), but a lock
        # that carries a signature is checked before anything in it is carried forward.
        if exists and (not for_writing or lockfile.signature is not None):
            from securehub.verify.signature import verify_lock  # noqa: PLC0415 - lazy: cryptography is imported only when keys are configured (start-up time).

            signed_by = verify_lock(lockfile, pol.signatures.trusted_keys)
    return Context(
        policy=pol,
        lock=lockfile,
        lock_path=path,
        lock_exists=exists,
        signed_by=signed_by,
        cache=Cache(hub_dir()),
    )


def hub_lock_mutex(ctx: Context, path: Path) -> FileLock:
    """The cross-process lock every read-modify-write of the hub.lock at ``path`` holds.

    One mutex for `securehub lock` and for ``lock.mode: auto`` recording, so neither overwrites
    entries the other wrote meanwhile (a lost update). It lives in the cache's ``locks/``, keyed
    by the absolute path, not as a stray file next to the user's hub.lock.
    """
    key = hashlib.sha256(str(path.absolute()).encode()).hexdigest()
    return FileLock(str(ctx.cache.lock_path(f"hub-lock-{key}")))


def _missing_explicit_lock(path: Path) -> None:
    """Refuse a ``lock=`` / ``--lock`` path that does not exist (SPEC section 2).

    The user named the file that pins this operation; running unpinned instead
    would silently drop to a weaker mode, and creating it would leave a file
    the user keeps after a refusal. Only ``securehub lock`` creates a lock.
    """
    raise LockInvalid(
        f"expected a hub.lock at {path} (the lock argument), found no such file. Nothing was loaded or "
        f"written. Create it with `securehub lock SPEC --lock {shlex.quote(str(path))}`, "
        "or pass the path of an existing lock."
    )


def policy_ref(policy: Policy) -> dict[str, str]:
    """How the audit log names a policy."""
    return {"name": policy.name, "sha256": policy.sha256}
