"""SARIF and CycloneDX as CI tools consume them, on hand-built reports, validated against the official schemas.

The schemas are local (tests/_report_schemas.py): the vendored OASIS SARIF
2.1.0 schema and the CycloneDX 1.6 schema shipped with cyclonedx-python-lib.
End-to-end audits through the real git server are validated the same way in
tests/integration/test_audit_reports.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from packageurl import PackageURL

from securehub.audit._formats import _rules
from securehub.audit._formats import sarif as sarif_format
from securehub.audit._formats._rules import DOCS_ERRORS_URI, RULES
from securehub.audit._formats.cyclonedx import pinned_outputs, purl_for_remote
from securehub.audit.report import ArtifactAudit, AuditReport, Finding, RepoAudit, render_report
from tests._report_schemas import cyclonedx_errors, sarif_errors

ERRORS_MD = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
C1 = "1" * 40
C2 = "2" * 40
URL_A = "https://download.example.org/m/a.safetensors"
URL_B = "https://download.example.org/m/b.safetensors"
SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_B = hashlib.sha256(b"b").hexdigest()
ARGS = hashlib.sha256(b"args").hexdigest()
ARGS2 = hashlib.sha256(b"args2").hexdigest()
STATE = hashlib.sha256(b"state").hexdigest()
CONFIG = hashlib.sha256(b"config").hexdigest()
PROGRAM = hashlib.sha256(b"program").hexdigest()
ESC = "\x1b[2J\x1b]0;pwned\x07\x9b31m"


def _repo(key: str, remote: str, commit: str, **entrypoints: tuple[str, ...]) -> RepoAudit:
    return RepoAudit(key, remote, "v1", "tag", commit, "4" * 64, True, entrypoints)


def _lock_bytes(outputs: dict[str, dict[str, Any]]) -> bytes:
    """A hand-written lock with ``repos[k].entrypoints[e].outputs`` (SPEC section 4)."""
    repos = {
        key: {"entrypoints": {ep: {"artifacts": [], "outputs": outs} for ep, outs in eps.items()}}
        for key, eps in outputs.items()
    }
    return json.dumps({"version": 1, "repos": repos, "artifacts": {}}, sort_keys=True, indent=2).encode() + b"\n"


def _report(
    repos: tuple[RepoAudit, ...],
    *,
    findings: tuple[Finding, ...] = (),
    artifacts: tuple[ArtifactAudit, ...] = (),
    lock_bytes: bytes = b"{}\n",
    lock_path: str | None = "hub.lock",
) -> AuditReport:
    return AuditReport(
        lock_path=lock_path,
        policy_name="default",
        policy_sha256="c" * 64,
        signed_by=None,
        repos=repos,
        artifacts=artifacts,
        findings=findings,
        offline=True,
        lock_bytes=lock_bytes,
    )


def _sarif(report: AuditReport) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render_report(report, "sarif"))
    assert sarif_errors(doc) == []
    return doc


def _bom(report: AuditReport) -> dict[str, Any]:
    text = render_report(report, "cyclonedx")
    assert cyclonedx_errors(text) == []
    bom: dict[str, Any] = json.loads(text)
    refs = [c["bom-ref"] for c in bom["components"]]
    purls = [c["purl"] for c in bom["components"] if "purl" in c]
    assert len(set(refs)) == len(refs)
    assert len(set(purls)) == len(purls)
    for purl in purls:
        assert PackageURL.from_string(purl).to_string() == purl  # canonical, parseable purls
    return bom


GITHUB = _repo("alice/model:v1", "https://github.com/alice/model.git", C1, resnet=(URL_A,))
DRIFT = Finding("lock-drift", "critical", "critical: tag re-pointed", "alice/model:v1", None, 9)
HASH = Finding("hash-mismatch", "critical", "cached artifact differs", None, URL_A, 30)
UNSIGNED = Finding("signature-invalid", "critical", "hub.lock is unsigned", None, None, None)


# --------------------------------------------------------------------------- the validators themselves


def test_validators_reject_what_the_schemas_forbid() -> None:
    # Guards against a validator that silently accepts everything (wrong schema, no format checks).
    assert sarif_errors({"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]})
    assert sarif_errors({"version": "2.0.0", "runs": []})
    assert cyclonedx_errors(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [{"type": "x"}]}))


# --------------------------------------------------------------------------- SARIF


def test_sarif_rules_carry_what_github_needs() -> None:
    driver = _sarif(_report((GITHUB,)))["runs"][0]["tool"]["driver"]
    info = driver.get("informationUri")
    assert (
        info is None
        or info.startswith("https://")
        or (info.startswith("file:///") and Path(info.removeprefix("file://")).is_file())
    )  # a declared homepage, or a README that exists
    assert driver["version"] and driver["semanticVersion"] == driver["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+([-+].*)?", driver["semanticVersion"])
    assert DOCS_ERRORS_URI is not None  # this checkout: its docs/errors.md, or the declared Documentation URL
    for rule in driver["rules"]:
        assert rule["fullDescription"]["text"]
        assert "What to do:" in rule["help"]["text"]
        assert f"`{rule['id']}`" in rule["help"]["markdown"] and "**What to do:**" in rule["help"]["markdown"]
        assert rule["helpUri"] == f"{DOCS_ERRORS_URI}#{rule['id']}"
        assert "security" in rule["properties"]["tags"]
        score = rule["properties"]["security-severity"]
        assert isinstance(score, float) and 0.0 < score <= 10.0


@pytest.mark.parametrize(
    "code", ["lock-drift", "hash-mismatch", "output-mismatch", "signature-invalid", "sandbox-violation"]
)
def test_sarif_critical_drift_and_tampering_score_at_least_9(code: str) -> None:
    assert RULES[code].to_sarif()["properties"]["security-severity"] >= 9.0


def _headings(markdown: str) -> set[str]:
    """GitHub's anchors for the markdown headings (lower case, punctuation but '-' dropped, spaces -> '-')."""
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_help_uri_anchor_is_a_heading_of_errors_md() -> None:
    anchors = _headings(ERRORS_MD.read_text(encoding="utf-8"))
    for rule in RULES.values():
        uri = rule.to_sarif()["helpUri"]
        assert DOCS_ERRORS_URI is not None
        assert uri.startswith(DOCS_ERRORS_URI + "#")
        assert uri.split("#", 1)[1] in anchors, f"docs/errors.md has no heading for {rule.code}"
    text = ERRORS_MD.read_text(encoding="utf-8")
    section = text.split("#### `output-mismatch`", 1)[1].split("####", 1)[0]
    assert "nothing was cached or rebuilt" in section
    assert "securehub lock SPEC -e EP --upgrade" in section


def test_sarif_every_result_has_a_lock_location() -> None:
    doc = _sarif(_report((GITHUB,), findings=(DRIFT, HASH, UNSIGNED)))
    locations = [r["locations"] for r in doc["runs"][0]["results"]]
    assert [len(loc) for loc in locations] == [1, 1, 1]
    assert [loc[0]["physicalLocation"]["artifactLocation"]["uri"] for loc in locations] == ["hub.lock"] * 3
    assert [loc[0]["physicalLocation"]["region"]["startLine"] for loc in locations] == [9, 30, 1]
    assert "as a whole" in locations[2][0]["message"]["text"]


def test_sarif_without_a_lock_still_validates_and_says_so() -> None:
    missing = Finding("lock-invalid", "error", "expected a hub.lock to audit, found none")
    doc = _sarif(_report((), findings=(missing,), lock_bytes=b"", lock_path=None))
    (result,) = doc["runs"][0]["results"]
    (location,) = result["locations"]
    assert location["physicalLocation"] == {"artifactLocation": {"uri": "hub.lock"}}
    assert "no hub.lock could be read" in location["message"]["text"]
    assert doc["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == "lock-invalid"


def test_sarif_fingerprints_stable_across_runs_and_lines() -> None:
    moved = Finding(DRIFT.code, DRIFT.severity, "critical: tag re-pointed to another commit", DRIFT.repo_key, None, 14)
    first = _sarif(_report((GITHUB,), findings=(DRIFT, HASH)))["runs"][0]["results"]
    again = _sarif(_report((GITHUB,), findings=(moved, HASH)))["runs"][0]["results"]
    assert [r["partialFingerprints"] for r in first] == [r["partialFingerprints"] for r in again]
    assert first[0]["partialFingerprints"] != first[1]["partialFingerprints"]


def test_sarif_with_hostile_lock_strings_validates_and_is_ascii() -> None:
    evil = Finding("repo-not-allowed", "error", f"bad {ESC}", f"k{ESC}", f"https://h/{ESC}", 2)
    out = render_report(_report((GITHUB,), findings=(evil,), lock_path=f"hub{ESC}.lock"), "sarif")
    assert out.isascii() and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out)
    assert sarif_errors(json.loads(out)) == []


# --------------------------------------------------------------------------- CycloneDX


def test_cyclonedx_purl_is_github_only_for_github_com() -> None:
    assert purl_for_remote("https://github.com/Alice/Model.git", C1) == f"pkg:github/alice/model@{C1}"
    for remote in (
        "http://127.0.0.1:8000/alice/model.git",  # the test server stands in for GitHub: not github.com
        "https://gitlab.example.org/group/sub/model.git",
        "https://github.com.evil.example/alice/model.git",
        "http://github.com/alice/model.git",
    ):
        purl = PackageURL.from_string(purl_for_remote(remote, C1))
        assert purl.type == "generic"
        assert purl.name == "model" and purl.version == C1
        assert purl.qualifiers == {"vcs_url": f"git+{remote}@{C1}"}


def test_cyclonedx_several_specs_on_one_commit_do_not_collide() -> None:
    repos = (
        _repo("alice/model:v1", "https://github.com/alice/model.git", C1, resnet=(URL_A,)),
        _repo("alice/model:v1.0", "https://github.com/alice/model.git", C1, resnet=(URL_A,), head=(URL_B,)),
        _repo("Alice/Model:v1", "https://github.com/Alice/Model.git", C1, resnet=(URL_A,)),
        _repo("alice/model:v2", "https://github.com/alice/model.git", C2, resnet=(URL_B,)),
    )
    arts = (ArtifactAudit(URL_A, SHA_A, 1, True), ArtifactAudit(URL_B, SHA_B, 1, True))
    bom = _bom(_report(repos, artifacts=arts))
    libs = [c for c in bom["components"] if c["type"] == "library"]
    # Same code, one component: every spec that pins it is listed.
    assert [lib["purl"] for lib in libs] == [f"pkg:github/alice/model@{C1}", f"pkg:github/alice/model@{C2}"]
    specs = [p["value"] for p in libs[0]["properties"] if p["name"] == "securehub:spec"]
    assert specs == ["alice/model:v1", "alice/model:v1.0", "Alice/Model:v1"]
    models = [c["name"] for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert models == [
        "alice/model:v1#resnet",
        "alice/model:v1.0#head",
        "alice/model:v1.0#resnet",
        "Alice/Model:v1#resnet",
        "alice/model:v2#resnet",
    ]
    deps = {d["ref"]: d["dependsOn"] for d in bom["dependencies"]}
    assert deps["model:alice/model:v1.0#head"] == [f"pkg:github/alice/model@{C1}", f"artifact:{URL_B}"]
    assert deps["model:alice/model:v2#resnet"] == [f"pkg:github/alice/model@{C2}", f"artifact:{URL_B}"]


def test_cyclonedx_one_hash_per_algorithm_one_component_per_weight_file() -> None:
    repo = _repo("alice/model:v1", "https://github.com/alice/model.git", C1, detector=(URL_A, URL_B))
    arts = (ArtifactAudit(URL_A, SHA_A, 1, True), ArtifactAudit(URL_B, SHA_B, 2, False))
    bom = _bom(_report((repo,), artifacts=arts))
    for comp in bom["components"]:
        algs = [h["alg"] for h in comp.get("hashes", [])]
        assert len(set(algs)) == len(algs)
    files = {c["hashes"][0]["content"]: c for c in bom["components"] if c["type"] == "file"}
    assert set(files) == {SHA_A, SHA_B}
    assert files[SHA_A]["externalReferences"] == [{"type": "distribution", "url": URL_A}]  # well-formed: as is
    assert PackageURL.from_string(files[SHA_A]["purl"]).qualifiers == {
        "checksum": f"sha256:{SHA_A}",
        "download_url": URL_A,
    }


def test_cyclonedx_pinned_outputs_are_model_properties() -> None:
    outputs = {
        ARGS: {"state_sha256": STATE, "config_sha256": CONFIG, "program_sha256": PROGRAM},
        ARGS2: {"state_sha256": STATE, "config_sha256": CONFIG, "program_sha256": None},
    }
    lock = _lock_bytes({"alice/model:v1": {"resnet": outputs}})
    bom = _bom(_report((GITHUB,), artifacts=(ArtifactAudit(URL_A, SHA_A, 1, True),), lock_bytes=lock))
    (model,) = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props[f"securehub:output:{ARGS}:state_sha256"] == STATE
    assert props[f"securehub:output:{ARGS}:config_sha256"] == CONFIG
    assert props[f"securehub:output:{ARGS}:program_sha256"] == PROGRAM
    assert props[f"securehub:output:{ARGS2}:program_sha256"] == "none"
    assert "hashes" not in model  # two argument sets: a single SHA-256 could not say which


def test_pinned_outputs_are_read_defensively() -> None:
    assert pinned_outputs(b"") == {}
    assert pinned_outputs(b"not json") == {}
    assert pinned_outputs(b'{"repos": []}') == {}
    lock = _lock_bytes(
        {
            "k": {
                "ok": {ARGS: {"state_sha256": STATE, "config_sha256": CONFIG, "program_sha256": None}},
                "bad": {
                    "not-hex": {"state_sha256": STATE},
                    ARGS: {"state_sha256": "zz", "config_sha256": CONFIG, "program_sha256": None},
                    ARGS2: ["not", "a", "map"],
                },
            }
        }
    )
    assert pinned_outputs(lock) == {
        "k": {"ok": {ARGS: {"state_sha256": STATE, "config_sha256": CONFIG, "program_sha256": None}}, "bad": {}}
    }


def test_cyclonedx_same_lock_gives_byte_identical_bom() -> None:
    lock = _lock_bytes({"alice/model:v1": {"resnet": {ARGS: {"state_sha256": STATE}}}})
    report = _report((GITHUB,), artifacts=(ArtifactAudit(URL_A, SHA_A, 1, True),), lock_bytes=lock)
    assert render_report(report, "cyclonedx") == render_report(report, "cyclonedx")


def test_cyclonedx_with_hostile_names_validates() -> None:
    evil = _repo(f"alice/model:v1{ESC}", f"https://git.example.org/x{ESC}/m.git", C1, resnet=(f"https://h/{ESC}",))
    arts = (ArtifactAudit(f"https://h/{ESC}", SHA_A, 1, True),)
    out = render_report(_report((evil,), artifacts=arts), "cyclonedx")
    assert out.isascii() and not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", out)
    _bom(_report((evil,), artifacts=arts))


# --------------------------------------------------------------------------- informationUri (issue 12)


class _Meta:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def get_all(self, name: str) -> list[str] | None:
        return self.urls if name == "Project-URL" else None


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        ([], None),
        (["Homepage, https://example.org/securehub"], "https://example.org/securehub"),
        (
            ["Documentation, https://docs.example.org", "Source, https://git.example.org/sh"],
            "https://git.example.org/sh",
        ),
        (["Homepage, http://insecure.example.org"], None),  # not https: not shown as the tool's home
        (["Homepage, https://example.org/\x1b[2K"], None),
    ],
)
def test_information_uri_is_the_declared_homepage_or_nothing(
    monkeypatch: pytest.MonkeyPatch, urls: list[str], expected: str | None
) -> None:
    monkeypatch.setattr(_rules.importlib.metadata, "metadata", lambda name: _Meta(urls))
    assert _rules._declared_homepage() == expected


def test_sarif_omits_information_uri_when_no_homepage_is_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sarif_format, "INFORMATION_URI", None)
    log = _sarif(_report((GITHUB,)))
    assert "informationUri" not in log["runs"][0]["tool"]["driver"]
    assert sarif_errors(log) == []


def test_information_uri_falls_back_to_this_installations_readme(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No declared homepage: the checkout's README, else the copy a wheel installs, else nothing."""
    monkeypatch.setattr(_rules.importlib.metadata, "metadata", lambda name: _Meta([]))
    readme = Path(_rules.__file__).resolve().parents[3] / "README.md"
    assert _rules._information_uri(readme) == readme.as_uri()
    installed = tmp_path / "share" / "doc" / "securehub" / "README.md"
    installed.parent.mkdir(parents=True)
    installed.write_text("# securehub\n")
    monkeypatch.setattr(_rules, "_installed_doc", lambda name: installed if name == "README.md" else None)
    assert _rules._information_uri(tmp_path / "no-checkout" / "README.md") == installed.as_uri()
    monkeypatch.setattr(_rules, "_installed_doc", lambda name: None)
    assert _rules._information_uri(tmp_path / "no-checkout" / "README.md") is None
    monkeypatch.setattr(_rules.importlib.metadata, "metadata", lambda name: _Meta(["Homepage, https://h.example.org"]))
    assert _rules._information_uri(readme) == "https://h.example.org"


def test_sarif_shows_the_declared_homepage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sarif_format, "INFORMATION_URI", "https://example.org/securehub")
    log = _sarif(_report((GITHUB,)))
    assert log["runs"][0]["tool"]["driver"]["informationUri"] == "https://example.org/securehub"
    assert sarif_errors(log) == []


def _reload_rules(monkeypatch: pytest.MonkeyPatch, urls: list[str], checkout: Path) -> None:
    """Recompute the module-level URIs as an installation with ``urls`` declared and ``checkout`` would."""
    monkeypatch.setattr(_rules.importlib.metadata, "metadata", lambda name: _Meta(urls))
    monkeypatch.setattr(_rules, "DOCS_ERRORS_URI", _rules._docs_errors_uri(checkout))


def test_help_uri_is_under_the_declared_documentation_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """One place sets it: pyproject's [project.urls] Documentation (the published docs/ directory)."""
    urls = ["Homepage, https://h.example.org", "Documentation, https://d.example.org/sh/"]
    _reload_rules(monkeypatch, urls, ERRORS_MD)
    sarif = RULES["hash-mismatch"].to_sarif()
    assert sarif["helpUri"] == "https://d.example.org/sh/errors.md#hash-mismatch"
    assert "(https://d.example.org/sh/errors.md#hash-mismatch)" in sarif["help"]["markdown"]


def test_help_uri_is_the_checkout_errors_md_when_no_documentation_is_declared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A source checkout (the editable install) points at the very file the anchors are tested against."""
    _reload_rules(monkeypatch, ["Documentation, http://insecure.example.org"], ERRORS_MD)
    uri = RULES["lock-drift"].to_sarif()["helpUri"]
    assert uri == ERRORS_MD.resolve().as_uri() + "#lock-drift"
    assert uri.startswith("file:///")
    assert sarif_errors(_sarif(_report((GITHUB,)))) == []


def test_help_uri_is_the_installed_copy_of_errors_md_outside_a_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A wheel install (no checkout, no declared Documentation URL) links to the page it installed
    (tests/integration/test_packaging.py installs a real wheel and checks the same)."""
    page = tmp_path / "share" / "doc" / "securehub" / "errors.md"
    page.parent.mkdir(parents=True)
    page.write_bytes(ERRORS_MD.read_bytes())
    monkeypatch.setattr(_rules, "_installed_doc", lambda name: page if name == "errors.md" else None)
    _reload_rules(monkeypatch, [], tmp_path / "no-checkout" / "errors.md")
    assert RULES["hash-mismatch"].to_sarif()["helpUri"] == page.as_uri() + "#hash-mismatch"
    assert sarif_errors(_sarif(_report((GITHUB,)))) == []


def test_no_help_uri_is_invented_when_nothing_declares_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No declared Documentation URL, no checkout and the installed page deleted: no helpUri, never a placeholder."""
    monkeypatch.setattr(_rules, "_installed_doc", lambda name: None)
    _reload_rules(monkeypatch, [], tmp_path / "docs" / "errors.md")
    rule = RULES["hash-mismatch"].to_sarif()
    assert "helpUri" not in rule
    assert "`hash-mismatch` in docs/errors.md" in rule["help"]["text"]
    assert "](" not in rule["help"]["markdown"]
    log = _sarif(_report((GITHUB,)))
    assert all("helpUri" not in r for r in log["runs"][0]["tool"]["driver"]["rules"])
    assert sarif_errors(log) == []


def test_the_old_placeholder_url_is_gone() -> None:
    assert "github.com/securehub/securehub" not in Path(_rules.__file__).read_text(encoding="utf-8")


def test_this_checkout_declares_no_homepage_so_none_is_invented() -> None:
    """pyproject.toml has no [project.urls]: no placeholder address (the old github.com/securehub/securehub
    is gone); the tool links to this checkout's own README instead."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    if "[project.urls]" not in pyproject:
        assert _rules.INFORMATION_URI == (Path(__file__).resolve().parents[2] / "README.md").as_uri()
