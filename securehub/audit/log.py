"""The audit log: one JSON line per ``load``, ``lock`` and refused action (SPEC section 11).

Destination: env ``SECUREHUB_AUDIT_LOG``, else ``<hub dir>/audit.jsonl``.
Every record has exactly the SPEC keys; values that could carry secrets
(URLs with credentials, tokens) are redacted before writing. Appends are a
single ``write`` on an ``O_APPEND`` descriptor, so concurrent processes never
interleave within a line.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from securehub._util.canonical import canonical_json
from securehub._util.hubdir import hub_dir
from securehub._util.regular import open_regular
from securehub.errors import UsageError

Outcome = Literal["ok", "refused", "error"]

#: Codes that mean "securehub said no" rather than "something broke".
_REFUSAL_CODES = frozenset(
    {
        "ref-not-allowed",
        "ref-ambiguous",
        "repo-not-allowed",
        "not-locked",
        "lock-drift",
        "hash-mismatch",
        "output-mismatch",
        "artifact-not-allowed",
        "unsafe-pickle",
        "format-not-allowed",
        "archive-unsafe",
        "signature-invalid",
        "sandbox-violation",
        "sandbox-unavailable",
        "reconstruct-refused",
        "offline",
    }
)

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
_TOKENISH = re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{20,})\b")
_SECRET_QUERY = re.compile(r"([?&](?:token|access_token|sig|signature|key|X-Amz-Signature)=)[^&#\s]*", re.I)


def redact(text: str) -> str:
    """Remove credentials from a URL or message: userinfo, token-like strings, signed-URL params."""
    text = _USERINFO.sub(r"\g<scheme>", text)
    text = _TOKENISH.sub("[redacted]", text)
    return _SECRET_QUERY.sub(r"\1[redacted]", text)


@dataclass(frozen=True)
class AuditRecord:
    """One audit line: exactly the SPEC section 11 keys, nothing else (reports carry the details)."""

    action: str
    outcome: Outcome
    spec: str | None = None
    ref: str | None = None
    commit: str | None = None
    tree_sha256: str | None = None
    entrypoint: str | None = None
    args_sha256: str | None = None
    artifacts: Sequence[Mapping[str, str]] = ()
    policy: Mapping[str, str] | None = None
    isolation: Mapping[str, Any] | None = None
    strategy: str | None = None
    code: str | None = None

    def to_json(self) -> str:
        """The record as one line of canonical JSON (sorted keys), secrets redacted."""
        obj: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "action": self.action,
            "spec": redact(self.spec) if self.spec else self.spec,
            "ref": self.ref,
            "commit": self.commit,
            "tree_sha256": self.tree_sha256,
            "entrypoint": self.entrypoint,
            "args_sha256": self.args_sha256,
            "artifacts": [{"url": redact(a["url"]), "sha256": a["sha256"]} for a in self.artifacts],
            "policy": dict(self.policy) if self.policy else None,
            "isolation": dict(self.isolation) if self.isolation else None,
            "strategy": self.strategy,
            "outcome": self.outcome,
            "code": self.code,
        }
        return canonical_json(obj, ascii_only=True).decode("ascii")


def outcome_for_code(code: str | None) -> Outcome:
    """``ok`` for no code, ``refused`` for a policy/verification refusal, ``error`` otherwise."""
    if code is None:
        return "ok"
    return "refused" if code in _REFUSAL_CODES else "error"


def log_path() -> Path:
    """Where audit lines go: ``SECUREHUB_AUDIT_LOG`` or ``<hub dir>/audit.jsonl``."""
    env = os.environ.get("SECUREHUB_AUDIT_LOG")
    return Path(env) if env else hub_dir() / "audit.jsonl"


class AuditLogError(UsageError):
    """The audit log cannot be written: a configuration error (the CLI's ``error[usage]``, exit 2)."""


def check_writable() -> None:
    """Raise :class:`AuditLogError` now if :func:`append` could not write the log (nothing is written):
    an action checks this before it does anything, so no hub.lock, cache entry or model results from a
    run whose audit line could not be kept."""
    _write(b"")


def append(record: AuditRecord) -> None:
    """Append ``record`` as one line. Raises :class:`AuditLogError` if the log cannot be written
    (a directory, a FIFO, a full disk, no permission): a regulated pipeline must not lose its audit trail
    silently, and the message says which file and what to do."""
    _write((record.to_json() + "\n").encode("ascii"))


def _write(line: bytes) -> None:
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)  # a FIFO would block forever
        try:
            if line:
                os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise AuditLogError(
            f"cannot append to the audit log {path}: {exc.strerror or exc}; expected a writable regular file "
            "(set SECUREHUB_AUDIT_LOG to one, or fix the hub directory); securehub does not act without its "
            "audit trail"
        ) from exc
