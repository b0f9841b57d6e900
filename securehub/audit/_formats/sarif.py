"""SARIF 2.1.0 audit report, for code-scanning dashboards (GitHub code scanning first).

Shape: one run; ``tool.driver`` names securehub with ``version``,
``semanticVersion`` and, when the installed distribution declares a homepage
(``[project.urls]``), ``informationUri`` (omitted otherwise; SARIF makes it
optional and an invented URL would mislead); ``tool.driver.rules`` holds one
rule per SPEC section 9 error code (:mod:`._rules`), sorted by code, so the
rule array (and every ``ruleIndex``) is the same in every report. Each rule
has ``fullDescription``, ``help`` (text and markdown: meaning, what to do),
``helpUri`` into docs/errors.md, and ``properties.tags`` with ``security``
plus a numeric ``security-severity`` (critical drift and tampering >= 9.0),
which is what makes GitHub file results as security alerts with a severity.

Each finding is a result with ``ruleId`` = its code, a level (critical and
error -> ``error``, warning -> ``warning``) and exactly one location in
``hub.lock``: ``region.startLine`` is the line of the entry when the audit
found it in the lock text; without a line the location's ``message`` says
why (the lock as a whole, or no lock could be read). ``partialFingerprints``
hash what the finding is about (code, repo key, artifact URL), not its
wording or line, so a finding keeps its identity across runs and GitHub
de-duplicates its alert.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from securehub._util.version import __version__
from securehub.audit._formats._rules import INFORMATION_URI, RULES, rule_for
from securehub.audit._formats.base import Formatter

if TYPE_CHECKING:
    from securehub.audit.model import AuditReport, Finding

__all__ = ["INFORMATION_URI", "RULE_DESCRIPTIONS", "SARIF_SCHEMA", "SARIFFormatter", "rules"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

#: One short description per SPEC section 9 code (kept for callers of the old name).
RULE_DESCRIPTIONS: dict[str, str] = {code: rule.title for code, rule in RULES.items()}

_LEVELS = {"critical": "error", "error": "error", "warning": "warning"}


def rules(extra_codes: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The ``tool.driver.rules`` array: one rule per SPEC code, sorted by code.

    ``extra_codes`` (codes outside the table; never expected) get generic
    rules appended after the table, so every result still has a ``ruleIndex``.
    """
    unknown = sorted(extra_codes - RULES.keys())
    return [rule_for(code).to_sarif() for code in [*RULES, *unknown]]


def _lock_uri(lock_path: str | None) -> str:
    """The lock's location as a URI reference: relative to the working directory when inside it."""
    if lock_path is None:
        return "hub.lock"
    path = Path(lock_path)
    absolute = path.absolute()
    cwd = Path.cwd()
    if absolute.is_relative_to(cwd):
        return quote(absolute.relative_to(cwd).as_posix())
    return absolute.as_uri()


def _fingerprint(finding: Finding) -> str:
    what = json.dumps([finding.code, finding.repo_key, finding.artifact_url], ensure_ascii=True)
    return hashlib.sha256(what.encode("ascii")).hexdigest()


def _location(finding: Finding, uri: str, lock_read: bool) -> dict[str, Any]:
    """The finding's one location in hub.lock; valid SARIF whether or not a line or a lock is known."""
    physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
    location: dict[str, Any] = {"physicalLocation": physical}
    if finding.lock_line is not None:
        physical["region"] = {"startLine": finding.lock_line}
    elif lock_read:
        # Not about one entry (e.g. an unsigned lock): point at the document itself, and say so.
        physical["region"] = {"startLine": 1}
        location["message"] = {"text": "the finding concerns hub.lock as a whole, not one entry"}
    else:
        location["message"] = {
            "text": f"no hub.lock could be read at {uri} (missing or not parseable); "
            "this is where securehub looked for it"
        }
    return location


def _result(finding: Finding, uri: str, lock_read: bool, index: dict[str, int]) -> dict[str, Any]:
    return {
        "ruleId": finding.code,
        "ruleIndex": index[finding.code],
        "level": _LEVELS[finding.severity],
        "message": {"text": finding.message},
        "locations": [_location(finding, uri, lock_read)],
        "partialFingerprints": {"securehubFinding/v1": _fingerprint(finding)},
        "properties": {
            "severity": finding.severity,
            "repoKey": finding.repo_key,
            "artifactUrl": finding.artifact_url,
        },
    }


class SARIFFormatter(Formatter):
    """SARIF 2.1.0 (``$schema`` points at the schemastore copy; nothing is fetched)."""

    def render(self, report: AuditReport) -> str:
        rule_list = rules(frozenset(f.code for f in report.findings))
        index = {rule["id"]: i for i, rule in enumerate(rule_list)}
        uri = _lock_uri(report.lock_path)
        lock_read = bool(report.lock_bytes)
        log = {
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "securehub",
                            "fullName": f"securehub {__version__}",
                            "version": __version__,
                            "semanticVersion": __version__,
                            **({"informationUri": INFORMATION_URI} if INFORMATION_URI else {}),
                            "rules": rule_list,
                        }
                    },
                    "results": [_result(f, uri, lock_read, index) for f in report.findings],
                    "columnKind": "unicodeCodePoints",
                    "properties": {
                        "policy": {"name": report.policy_name, "sha256": report.policy_sha256},
                        "signedBy": report.signed_by,
                        "offline": report.offline,
                        "rerun": report.rerun,
                    },
                }
            ],
        }
        return json.dumps(log, indent=2, ensure_ascii=True) + "\n"
