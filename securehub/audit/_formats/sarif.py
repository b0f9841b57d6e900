"""SARIF 2.1.0 audit report, for code-scanning dashboards.

Shape: one run; ``tool.driver.rules`` holds one rule per SPEC section 9 error
code, sorted by code, so the rule array (and every ``ruleIndex``) is the same
in every report. Each finding is a result with ``ruleId`` = its code, a level
(critical and error -> ``error``, warning -> ``warning``), and a location in
``hub.lock`` (``region.startLine`` when the key's line is known).
``partialFingerprints`` hash what the finding is about (code, repo key,
artifact URL), not its wording, so a finding keeps its identity across runs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import securehub
from securehub.audit._formats import Formatter
from securehub.errors import ALL_CODES

if TYPE_CHECKING:
    from securehub.audit.report import AuditReport, Finding

__all__ = ["INFORMATION_URI", "RULE_DESCRIPTIONS", "SARIF_SCHEMA", "SARIFFormatter", "rules"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/securehub/securehub"

#: One short description per SPEC section 9 code (a unit test keeps this in step with ALL_CODES).
RULE_DESCRIPTIONS: dict[str, str] = {
    "ref-not-allowed": "A ref is not a branch or tag name the policy allows.",
    "ref-ambiguous": "A ref names both a branch and a tag.",
    "ref-not-found": "A ref does not exist on the remote.",
    "repo-not-allowed": "A repository is not allowed by the policy.",
    "not-locked": "A repository or artifact is missing from hub.lock.",
    "lock-invalid": "hub.lock is missing or malformed.",
    "lock-drift": "A locked ref or remote no longer matches hub.lock.",
    "hash-mismatch": "Content differs from the digest pinned in hub.lock.",
    "output-mismatch": "An entrypoint produced an output other than the one pinned in hub.lock.",
    "artifact-not-allowed": "An artifact URL or host is not allowed.",
    "unsafe-pickle": "A pickle checkpoint failed the static scan.",
    "format-not-allowed": "An artifact format is not allowed by the policy.",
    "archive-unsafe": "A repository tree is unsafe to extract.",
    "signature-invalid": "hub.lock is unsigned or not signed by a trusted key.",
    "policy-invalid": "The policy file is invalid.",
    "sandbox-violation": "Code in the sandbox attempted a forbidden action.",
    "sandbox-timeout": "The sandbox exceeded its time limit.",
    "sandbox-resource": "The sandbox exceeded a resource limit.",
    "sandbox-unavailable": "A required isolation mechanism is unavailable.",
    "sandbox-protocol": "The sandbox child broke the channel protocol.",
    "reconstruct-refused": "A model could not be reconstructed safely.",
    "reconstruct-mismatch": "A state dict does not match the reconstructed model.",
    "network": "A remote could not be reached.",
    "offline": "Network access was needed in offline mode.",
    "dependency-missing": "An entrypoint dependency is missing.",
    "entrypoint-not-found": "The repository does not define the entrypoint.",
    "entrypoint-error": "The entrypoint raised an error.",
}

_LEVELS = {"critical": "error", "error": "error", "warning": "warning"}


def rules() -> list[dict[str, Any]]:
    """The ``tool.driver.rules`` array: one rule per error code, sorted by code."""
    return [
        {
            "id": code,
            "name": "".join(part.capitalize() for part in code.split("-")),
            "shortDescription": {"text": RULE_DESCRIPTIONS.get(code, f"securehub finding {code}")},
            "defaultConfiguration": {"level": "error"},
        }
        for code in sorted(ALL_CODES)
    ]


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


class SARIFFormatter(Formatter):
    """SARIF 2.1.0 (``$schema`` points at the schemastore copy; nothing is fetched)."""

    def render(self, report: AuditReport) -> str:
        rule_list = rules()
        index = {rule["id"]: i for i, rule in enumerate(rule_list)}
        uri = _lock_uri(report.lock_path)
        results: list[dict[str, Any]] = []
        for finding in report.findings:
            physical: dict[str, Any] = {"artifactLocation": {"uri": uri}}
            if finding.lock_line is not None:
                physical["region"] = {"startLine": finding.lock_line}
            result: dict[str, Any] = {
                "ruleId": finding.code,
                "level": _LEVELS[finding.severity],
                "message": {"text": finding.message},
                "locations": [{"physicalLocation": physical}],
                "partialFingerprints": {"securehubFinding/v1": _fingerprint(finding)},
                "properties": {
                    "severity": finding.severity,
                    "repoKey": finding.repo_key,
                    "artifactUrl": finding.artifact_url,
                },
            }
            if finding.code in index:
                result["ruleIndex"] = index[finding.code]
            results.append(result)
        log = {
            "$schema": SARIF_SCHEMA,
            "version": "2.1.0",
            "runs": [
                {
                    "tool": {
                        "driver": {
                            "name": "securehub",
                            "version": securehub.__version__,
                            "informationUri": INFORMATION_URI,
                            "rules": rule_list,
                        }
                    },
                    "results": results,
                    "properties": {
                        "policy": {"name": report.policy_name, "sha256": report.policy_sha256},
                        "signedBy": report.signed_by,
                        "offline": report.offline,
                    },
                }
            ],
        }
        return json.dumps(log, indent=2, ensure_ascii=True) + "\n"
