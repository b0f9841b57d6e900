"""Audit report formats on hand-built reports: structure per SARIF 2.1.0 / CycloneDX 1.6, determinism, sanitising.

No schema is downloaded (no internet): the checks below encode the required
properties and enums of the two specs for the parts securehub emits.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from securehub.audit._formats import Formatter, formatter_for, write_atomic
from securehub.audit._formats.cyclonedx import serial_number
from securehub.audit._formats.sarif import RULE_DESCRIPTIONS, rules
from securehub.audit._formats.text import finding_line
from securehub.audit.report import (
    REPORT_SCHEMA,
    ArtifactAudit,
    AuditReport,
    Finding,
    RepoAudit,
    ReportFormat,
    _key_line,
    render_report,
    write_report,
)
from securehub.errors import ALL_CODES

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()
URL_A = "https://download.example.org/m/a.safetensors"
URL_B = "https://download.example.org/m/b.pth"
ESC = "\x1b[2J\x1b]0;pwned\x07\x9b31m"


def _report(
    *, findings: tuple[Finding, ...] = (), key: str = "alice/model:v1", lock_bytes: bytes = b"{}\n"
) -> AuditReport:
    return AuditReport(
        lock_path="hub.lock",
        policy_name="default",
        policy_sha256="c" * 64,
        signed_by=None,
        repos=(
            RepoAudit(
                key=key,
                remote="https://github.com/alice/model.git",
                ref="v1",
                ref_type="tag",
                commit="1" * 40,
                tree_sha256="2" * 64,
                cached=True,
                entrypoints={"resnet": (URL_A,), "detector": (URL_A, URL_B)},
            ),
            RepoAudit(
                key="git+https://git.example.org/bob/tools.git@v2",
                remote="https://git.example.org/bob/tools.git",
                ref="v2",
                ref_type="tag",
                commit="3" * 40,
                tree_sha256="4" * 64,
                cached=False,
            ),
        ),
        artifacts=(
            ArtifactAudit(URL_A, SHA_A, 1, cached=True),
            ArtifactAudit(URL_B, SHA_B, 1, cached=False),
        ),
        findings=findings,
        offline=False,
        lock_bytes=lock_bytes,
    )


DRIFT = Finding("lock-drift", "critical", "critical: alice/model:v1: tag re-pointed", "alice/model:v1", None, 9)
HASH = Finding("hash-mismatch", "critical", "cached artifact differs", None, URL_A, 30)
SIG = Finding("signature-invalid", "critical", "hub.lock is unsigned", None, None, None)
WARN = Finding("network", "warning", "remote slow", "alice/model:v1", None, 9)


# --------------------------------------------------------------------------- choosing formats


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_format_has_a_formatter_and_renders_deterministically(fmt: ReportFormat) -> None:
    formatter = formatter_for(fmt)
    assert isinstance(formatter, Formatter)
    report = _report(findings=(DRIFT, HASH, SIG))
    first = render_report(report, fmt)
    assert first == render_report(report, fmt.value)
    assert first.endswith("\n")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        render_report(_report(), "xml")


# --------------------------------------------------------------------------- text


def test_text_finding_lines() -> None:
    assert finding_line(DRIFT) == "error[lock-drift]: critical: alice/model:v1: tag re-pointed (hub.lock line 9)"
    assert finding_line(HASH).startswith("error[hash-mismatch]: critical: cached artifact differs")
    assert finding_line(SIG) == "error[signature-invalid]: critical: hub.lock is unsigned"
    assert finding_line(WARN) == "warning[network]: remote slow (hub.lock line 9)"
    assert finding_line(WARN, "bad.lock") == "warning[network]: remote slow (bad.lock line 9)"  # audit --lock bad.lock
    assert finding_line(Finding("ref-not-allowed", "error", "branch", "k", None, None)) == (
        "error[ref-not-allowed]: branch"
    )


def test_text_strips_terminal_escapes_from_every_lock_string() -> None:
    evil = Finding("repo-not-allowed", "error", f"bad {ESC}", f"k{ESC}", f"https://h/{ESC}", 2)
    report = AuditReport(
        lock_path=f"hub{ESC}.lock",
        policy_name=f"p{ESC}",
        policy_sha256="c" * 64,
        signed_by=f"key{ESC}",
        repos=(
            RepoAudit(
                key=f"alice/model:v1{ESC}",
                remote="https://github.com/alice/model.git",
                ref=f"v1{ESC}",
                ref_type="tag",
                commit="1" * 40,
                tree_sha256="2" * 64,
                cached=True,
                entrypoints={f"ep{ESC}": (f"https://h/{ESC}",)},
            ),
        ),
        artifacts=(ArtifactAudit(f"https://h/{ESC}", SHA_A, 1, cached=True),),
        findings=(evil,),
        offline=True,
    )
    text = render_report(report, "text")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]", text)
    # the OSC title payload is shown as text, its ESC and BEL written as escapes
    assert "\\x1b]0;pwned\\x07" in text and "\x1b" not in text and "\x07" not in text


def test_text_summary() -> None:
    assert render_report(_report(), "text").splitlines()[-1] == "audit passed: no findings"
    assert render_report(_report(findings=(DRIFT, WARN)), "text").splitlines()[-1] == (
        "audit failed: 2 finding(s), 1 critical"
    )


# --------------------------------------------------------------------------- json


def test_json_is_one_sorted_ascii_document_with_schema() -> None:
    out = render_report(_report(findings=(DRIFT,), key=f"alice/model:v1{ESC}"), "json")
    doc = json.loads(out)
    assert doc["schema"] == REPORT_SCHEMA
    assert out == json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=True) + "\n"
    assert out.isascii() and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out)
    assert doc["findings"] == [
        {
            "code": "lock-drift",
            "severity": "critical",
            "message": DRIFT.message,
            "repo_key": "alice/model:v1",
            "artifact_url": None,
            "lock_line": 9,
        }
    ]
    assert doc["repos"][0]["entrypoints"] == {"detector": [URL_A, URL_B], "resnet": [URL_A]}
    assert "lock_bytes" not in doc


# --------------------------------------------------------------------------- sarif


#: SPEC section 9, verbatim: the rule table must cover exactly these (output-mismatch included,
#: even before errors.py defines it, so the rule array does not change when it lands).
SPEC_CODES = frozenset(
    "ref-not-allowed ref-ambiguous ref-not-found repo-not-allowed not-locked lock-invalid lock-drift "
    "hash-mismatch output-mismatch artifact-not-allowed unsafe-pickle format-not-allowed archive-unsafe "
    "signature-invalid policy-invalid sandbox-violation sandbox-timeout sandbox-resource sandbox-unavailable "
    "sandbox-protocol reconstruct-refused reconstruct-mismatch network offline dependency-missing "
    "entrypoint-not-found entrypoint-error".split()
)


def test_sarif_rule_per_error_code() -> None:
    assert set(RULE_DESCRIPTIONS) == SPEC_CODES
    assert ALL_CODES <= SPEC_CODES
    ids = [r["id"] for r in rules()]
    assert ids == sorted(SPEC_CODES)
    assert rules() == rules()


def _check_sarif(doc: dict[str, Any]) -> None:
    """Required properties of the SARIF 2.1.0 objects securehub emits (sarif-schema-2.1.0.json)."""
    assert doc["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json"
    assert doc["version"] == "2.1.0"
    assert isinstance(doc["runs"], list) and len(doc["runs"]) == 1
    run = doc["runs"][0]
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str) and driver["name"]
    assert isinstance(driver["version"], str)
    assert "informationUri" not in driver or re.match(r"^[a-z][a-z0-9+.-]*:", driver["informationUri"])
    seen: set[str] = set()
    for rule in driver["rules"]:
        assert isinstance(rule["id"], str) and rule["id"] not in seen
        seen.add(rule["id"])
        assert isinstance(rule["shortDescription"]["text"], str) and rule["shortDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in {"none", "note", "warning", "error"}
    for result in run["results"]:
        assert isinstance(result["message"]["text"], str)
        assert result["ruleId"] in seen
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in {"none", "note", "warning", "error"}
        for location in result["locations"]:
            physical = location["physicalLocation"]
            assert isinstance(physical["artifactLocation"]["uri"], str)
            if "region" in physical:
                assert isinstance(physical["region"]["startLine"], int) and physical["region"]["startLine"] >= 1
        assert all(isinstance(v, str) for v in result["partialFingerprints"].values())


def test_sarif_structure_levels_and_locations() -> None:
    doc = json.loads(render_report(_report(findings=(DRIFT, HASH, SIG, WARN)), "sarif"))
    _check_sarif(doc)
    results = doc["runs"][0]["results"]
    assert [(r["ruleId"], r["level"]) for r in results] == [
        ("lock-drift", "error"),
        ("hash-mismatch", "error"),
        ("signature-invalid", "error"),
        ("network", "warning"),
    ]
    assert results[0]["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "hub.lock"},
        "region": {"startLine": 9},
    }
    # Not about one entry: the lock as a whole (line 1), and the location says so.
    unsigned = results[2]["locations"][0]
    assert unsigned["physicalLocation"]["region"] == {"startLine": 1}
    assert "as a whole" in unsigned["message"]["text"]


def test_sarif_fingerprint_follows_identity_not_wording() -> None:
    reworded = Finding(DRIFT.code, DRIFT.severity, "other words", DRIFT.repo_key, None, 12)
    a = json.loads(render_report(_report(findings=(DRIFT,)), "sarif"))["runs"][0]["results"][0]
    b = json.loads(render_report(_report(findings=(reworded,)), "sarif"))["runs"][0]["results"][0]
    c = json.loads(render_report(_report(findings=(HASH,)), "sarif"))["runs"][0]["results"][0]
    assert a["partialFingerprints"] == b["partialFingerprints"]
    assert a["partialFingerprints"] != c["partialFingerprints"]


def test_sarif_absolute_lock_path_outside_cwd_is_a_file_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    report = _report(findings=(DRIFT,))
    outside = AuditReport(**{**report.__dict__, "lock_path": "/srv/ci/hub lock"})
    doc = json.loads(render_report(outside, "sarif"))
    assert doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "file:///srv/ci/hub%20lock"
    )


# --------------------------------------------------------------------------- cyclonedx

_CDX_TYPES = {
    "application", "framework", "library", "container", "platform", "operating-system", "device",
    "device-driver", "firmware", "file", "machine-learning-model", "data", "cryptographic-asset",
}  # fmt: skip
_CDX_HASH_ALGS = {
    "MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512", "SHA3-256", "SHA3-384", "SHA3-512",
    "BLAKE2b-256", "BLAKE2b-384", "BLAKE2b-512", "BLAKE3",
}  # fmt: skip


def _check_cyclonedx(bom: dict[str, Any]) -> None:
    """Required properties and enums of CycloneDX 1.6 (bom-1.6.schema.json) for what securehub emits."""
    assert bom["bomFormat"] == "CycloneDX"
    assert bom["specVersion"] == "1.6"
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", bom["serialNumber"])
    assert isinstance(bom["version"], int) and bom["version"] >= 1
    for tool in bom["metadata"]["tools"]["components"]:
        assert tool["type"] in _CDX_TYPES and tool["name"]
    for prop in bom["metadata"].get("properties", []):
        assert isinstance(prop["name"], str) and isinstance(prop["value"], str)
    refs: set[str] = set()
    for comp in bom["components"]:
        assert comp["type"] in _CDX_TYPES
        assert isinstance(comp["name"], str) and comp["name"]
        assert comp["bom-ref"] not in refs
        refs.add(comp["bom-ref"])
        for h in comp.get("hashes", []):
            assert h["alg"] in _CDX_HASH_ALGS
            assert re.fullmatch(r"[a-fA-F0-9]{64}", h["content"])
        for ext in comp.get("externalReferences", []):
            assert isinstance(ext["url"], str) and ext["type"] in {"vcs", "distribution", "website", "other"}
        for prop in comp.get("properties", []):
            assert isinstance(prop["name"], str) and isinstance(prop["value"], str)
        if "purl" in comp:
            assert comp["purl"].startswith("pkg:")
    for dep in bom["dependencies"]:
        assert dep["ref"] in refs
        assert len(set(dep["dependsOn"])) == len(dep["dependsOn"])
        assert set(dep["dependsOn"]) <= refs


def test_cyclonedx_structure_and_model_components() -> None:
    bom = json.loads(render_report(_report(findings=(DRIFT,)), "cyclonedx"))
    _check_cyclonedx(bom)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for comp in bom["components"]:
        by_type.setdefault(comp["type"], []).append(comp)
    models = {c["name"]: c for c in by_type["machine-learning-model"]}
    assert sorted(models) == ["alice/model:v1#detector", "alice/model:v1#resnet"]
    # Weight digests live on one file component per weight file (one hash per algorithm per component).
    assert "hashes" not in models["alice/model:v1#detector"]
    assert models["alice/model:v1#resnet"]["version"] == "1" * 40
    # Repos appear as libraries, with or without entrypoints; pkg:github only for github.com remotes.
    libs = {c["name"]: c for c in by_type["library"]}
    assert libs["alice/model"]["purl"] == f"pkg:github/alice/model@{'1' * 40}"
    assert libs["bob/tools"]["purl"] == (
        f"pkg:generic/tools@{'3' * 40}?vcs_url=git%2Bhttps://git.example.org/bob/tools.git%40{'3' * 40}"
    )
    files = {c["bom-ref"]: c for c in by_type["file"]}
    assert {c["hashes"][0]["content"] for c in files.values()} == {SHA_A, SHA_B}
    assert {"name": "securehub:size", "value": "1"} in files[f"artifact:{URL_A}"]["properties"]
    deps = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert deps["model:alice/model:v1#detector"] == [
        f"pkg:github/alice/model@{'1' * 40}",
        f"artifact:{URL_A}",
        f"artifact:{URL_B}",
    ]


def test_cyclonedx_serial_number_from_lock_bytes() -> None:
    assert serial_number(b"x", "c" * 64) == serial_number(b"x", "c" * 64)
    assert serial_number(b"x", "c" * 64) != serial_number(b"y", "c" * 64)
    a = json.loads(render_report(_report(lock_bytes=b"one"), "cyclonedx"))
    b = json.loads(render_report(_report(lock_bytes=b"two"), "cyclonedx"))
    assert a["serialNumber"] != b["serialNumber"]
    assert {k: v for k, v in a.items() if k != "serialNumber"} == {k: v for k, v in b.items() if k != "serialNumber"}


def test_cyclonedx_is_ascii_with_hostile_names() -> None:
    out = render_report(_report(key=f"alice/model:v1{ESC}"), "cyclonedx")
    assert out.isascii() and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out)
    _check_cyclonedx(json.loads(out))


# --------------------------------------------------------------------------- writing


def test_write_report_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    write_report(_report(), "json", None)
    assert json.loads(capsys.readouterr().out)["schema"] == REPORT_SCHEMA


def test_write_report_to_file_is_atomic_and_silent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bom.json"
    out.write_text("old")
    out.chmod(0o600)
    write_report(_report(), ReportFormat.CYCLONEDX, out)
    assert capsys.readouterr().out == ""
    assert json.loads(out.read_text())["bomFormat"] == "CycloneDX"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bom.json"]


def test_write_atomic_into_missing_directory_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "r.json", b"{}")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- lock lines


def test_key_line_in_canonical_and_one_line_locks() -> None:
    text = (
        '{\n  "artifacts": {\n    "https://h/a": {\n      "sha256": "x"\n    }\n  },\n'
        '  "repos": {\n    "o/r:v1": {\n      "ref": "v1"\n    }\n  }\n}\n'
    )
    assert _key_line(text, "o/r:v1") == 8
    assert _key_line(text, "https://h/a") == 3
    assert _key_line(text, "missing") is None
    assert _key_line('{"repos": {"o/r:v1": {}}}', "o/r:v1") == 1


def test_key_line_ignores_the_key_inside_a_string_value() -> None:
    # An args value that spells the key followed by a colon must not be taken for the key.
    text = '{\n  "a": "see \\"o/r:v1\\": here",\n  "repos": {\n    "o/r:v1": {}\n  }\n}\n'
    assert _key_line(text, "o/r:v1") == 4
