"""The audit report's data model: :class:`AuditReport`, its findings and the output formats.

Pure data (frozen dataclasses, no I/O): :mod:`securehub.audit.report` builds
these, :mod:`securehub.audit._formats` renders them. Keeping the model apart
from the run is what lets the formatters import it without importing the run
(issue 9: ``audit.report`` <-> ``audit._formats`` was an import cycle).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

__all__ = ["REPORT_SCHEMA", "ArtifactAudit", "AuditReport", "Finding", "ReportFormat", "RepoAudit", "Severity"]

#: The ``schema`` value of the JSON format; bumped only on incompatible changes.
REPORT_SCHEMA = "securehub-audit/1"

Severity = Literal["critical", "error", "warning"]


class ReportFormat(str, enum.Enum):
    """The output formats of ``securehub audit --format``."""

    TEXT = "text"
    JSON = "json"
    SARIF = "sarif"
    CYCLONEDX = "cyclonedx"


@dataclass(frozen=True)
class Finding:
    """One problem the audit found.

    ``code`` is a SPEC section 9 error code; ``message`` is one sanitised
    line. ``repo_key``/``artifact_url`` say what the finding is about (either
    may be ``None``); ``lock_line`` is the 1-based line of that key in
    ``hub.lock`` when it could be found (for an unparseable lock, the line
    the parser names).
    """

    code: str
    severity: Severity
    message: str
    repo_key: str | None = None
    artifact_url: str | None = None
    lock_line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RepoAudit:
    """A locked repo as the audit saw it. ``cached``: a copy is cached *and* re-verified now."""

    key: str
    remote: str
    ref: str
    ref_type: str
    commit: str
    tree_sha256: str
    cached: bool
    entrypoints: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {name: tuple(urls) for name, urls in sorted(self.entrypoints.items())}
        object.__setattr__(self, "entrypoints", MappingProxyType(frozen))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        # Not dataclasses.asdict: it cannot deep-copy the read-only entrypoints mapping.
        return {
            "key": self.key,
            "remote": self.remote,
            "ref": self.ref,
            "ref_type": self.ref_type,
            "commit": self.commit,
            "tree_sha256": self.tree_sha256,
            "cached": self.cached,
            "entrypoints": {name: list(urls) for name, urls in self.entrypoints.items()},
        }


@dataclass(frozen=True)
class ArtifactAudit:
    """A locked artifact as the audit saw it. ``cached``: a blob is cached *and* re-verified now."""

    url: str
    sha256: str
    size: int
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class AuditReport:
    """Everything one audit found. ``findings`` empty means the audit passed.

    ``lock_path`` is ``None`` when the lock was passed as an object or none
    was found; ``lock_bytes`` are the lock's canonical bytes (``b""`` when no
    lock could be parsed), used to derive stable identifiers in reports.
    """

    lock_path: str | None
    policy_name: str
    policy_sha256: str
    signed_by: str | None
    repos: tuple[RepoAudit, ...]
    artifacts: tuple[ArtifactAudit, ...]
    findings: tuple[Finding, ...]
    offline: bool
    lock_bytes: bytes = field(default=b"", repr=False)
    #: Pinned entrypoints were re-run in the sandbox and compared with the lock (``--rerun``).
    rerun: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``schema`` included; ``lock_bytes`` left out)."""
        return {
            "schema": REPORT_SCHEMA,
            "lock_path": self.lock_path,
            "policy": {"name": self.policy_name, "sha256": self.policy_sha256},
            "signed_by": self.signed_by,
            "offline": self.offline,
            "rerun": self.rerun,
            "repos": [r.to_dict() for r in self.repos],
            "artifacts": [a.to_dict() for a in self.artifacts],
            "findings": [f.to_dict() for f in self.findings],
        }
