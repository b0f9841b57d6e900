"""SARIF and CycloneDX from real audits (real git server, real cache), validated against the official schemas.

Each scenario the issue names: a clean lock, a drifted lock, a tampered
cache, no lock at all, several specs on one commit, and a non-GitHub remote.
Every output must validate with zero errors (tests/_report_schemas.py) and
carry what GitHub code scanning and Dependency-Track rely on.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packageurl import PackageURL

from securehub.audit.report import render_report, run_audit
from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, Lockfile
from securehub.pipeline.lock import lock_repos
from securehub.store.cache import Cache
from tests._report_schemas import cyclonedx_errors, sarif_errors
from tests._servers import GitServer, RepoFactory, RepoHandle

HUBCONF = "dependencies = []\n\ndef resnet():\n    return None\n"
ART_DATA = b"weights, as far as the audit is concerned\n"
ART_SHA = hashlib.sha256(ART_DATA).hexdigest()
# torch.hub's name-<prefix> form, with the real prefix: a contradicting one is itself a finding.
ART_URL = f"https://download.example.org/models/resnet-{ART_SHA[:8]}.safetensors"


def _lock(repo_keys: list[str], lock: Path, hub: Path) -> None:
    """Lock ``repo_keys`` (trees cached), give each an entrypoint ``resnet`` fetching one cached artifact."""
    lock_repos(repo_keys, policy="default", lock=lock)
    doc = Lockfile.load(lock).with_artifact(ART_URL, ArtifactEntry(ART_SHA, len(ART_DATA)))
    for key in repo_keys:
        doc = doc.with_entrypoint(key, "resnet", EntrypointEntry(artifacts=(ART_URL,)))
    doc.save(lock)
    cache = Cache(hub)
    tmp = cache.tmp_dir() / "upload"
    tmp.write_bytes(ART_DATA)
    cache.put_artifact_from_temp(tmp, ART_SHA)


def _reports(lock: Path | None, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(SARIF, CycloneDX) of one audit, each validated against its schema with zero errors."""
    report = run_audit(lock=lock, **kw)
    sarif: dict[str, Any] = json.loads(render_report(report, "sarif"))
    assert sarif_errors(sarif) == []
    bom_text = render_report(report, "cyclonedx")
    assert cyclonedx_errors(bom_text) == []
    bom: dict[str, Any] = json.loads(bom_text)
    refs = [c["bom-ref"] for c in bom["components"]]
    purls = [c["purl"] for c in bom["components"] if "purl" in c]
    assert len(set(refs)) == len(refs) and len(set(purls)) == len(purls)
    return sarif, bom


def _line_of(lock: Path, key: str) -> int:
    lines = lock.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.lstrip().startswith(json.dumps(key) + ":"))


def _rule(sarif: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    rule: dict[str, Any] = sarif["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert rule["id"] == result["ruleId"]
    return rule


@pytest.fixture
def alice(
    repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[RepoHandle, Path]:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "hub.lock"
    _lock(["alice/model:v1"], lock, hub_dir)
    return repo, lock


def test_clean_lock(alice: tuple[RepoHandle, Path]) -> None:
    _, lock = alice
    sarif, bom = _reports(lock, offline=True)
    assert sarif["runs"][0]["results"] == []
    models = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert [m["name"] for m in models] == ["alice/model:v1#resnet"]
    (art,) = [c for c in bom["components"] if c["type"] == "file"]
    assert art["hashes"] == [{"alg": "SHA-256", "content": ART_SHA}]


def test_drifted_lock(alice: tuple[RepoHandle, Path]) -> None:
    repo, lock = alice
    repo.force_tag("v1", repo.commit({"evil.py": "x = 1\n"}))
    sarif, _ = _reports(lock)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "lock-drift" and result["level"] == "error"
    assert result["properties"]["severity"] == "critical"
    assert _rule(sarif, result)["properties"]["security-severity"] >= 9.0
    assert result["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "hub.lock"},
        "region": {"startLine": _line_of(lock, "alice/model:v1")},
    }
    # The same drift found again (another run) keeps its fingerprint: one GitHub alert, not two.
    again, _ = _reports(lock)
    assert again["runs"][0]["results"][0]["partialFingerprints"] == result["partialFingerprints"]


def test_tampered_cache(alice: tuple[RepoHandle, Path], hub_dir: Path) -> None:
    _, lock = alice
    blob = hub_dir / "artifacts" / "sha256" / ART_SHA
    blob.chmod(0o644)
    blob.write_bytes(b"swapped weights")
    sarif, _ = _reports(lock, offline=True)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "hash-mismatch"
    assert _rule(sarif, result)["properties"]["security-severity"] >= 9.0
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == _line_of(lock, ART_URL)


def test_no_lock(hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SECUREHUB_LOCK", raising=False)
    sarif, bom = _reports(None, offline=True)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "lock-invalid"
    (location,) = result["locations"]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "hub.lock"
    assert "no hub.lock could be read" in location["message"]["text"]
    assert bom["components"] == []


def test_several_specs_on_one_commit(
    repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    repo.tag("v1.0")
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "hub.lock"
    _lock(["alice/model:v1", "alice/model:v1.0", "alice/model:main"], lock, hub_dir)
    _, bom = _reports(lock, offline=True)
    (lib,) = [c for c in bom["components"] if c["type"] == "library"]
    assert sorted(p["value"] for p in lib["properties"] if p["name"] == "securehub:spec") == [
        "alice/model:main",
        "alice/model:v1",
        "alice/model:v1.0",
    ]
    models = sorted(c["name"] for c in bom["components"] if c["type"] == "machine-learning-model")
    assert models == ["alice/model:main#resnet", "alice/model:v1#resnet", "alice/model:v1.0#resnet"]


def test_non_github_remote(
    repo_factory: RepoFactory, git_server: GitServer, github_url: str, hub_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    repo = repo_factory.make_repo("bob/tools", {"hubconf.py": HUBCONF})
    repo.tag("v2")
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "hub.lock"
    remote = git_server.url_for("bob/tools")
    _lock([f"git+{remote}@v2"], lock, hub_dir)
    _, bom = _reports(lock, offline=True)
    (lib,) = [c for c in bom["components"] if c["type"] == "library"]
    purl = PackageURL.from_string(lib["purl"])
    commit = Lockfile.load(lock).repos[f"git+{remote}@v2"].commit
    # Not github.com: no pkg:github (even for a github-style spec served by SECUREHUB_GITHUB_URL).
    assert (purl.type, purl.name, purl.version) == ("generic", "tools", commit)
    assert purl.qualifiers == {"vcs_url": f"git+{remote}@{commit}"}
    assert lib["externalReferences"] == [{"type": "vcs", "url": remote}]


def test_cli_sarif_and_cyclonedx_files_validate(alice: tuple[RepoHandle, Path], tmp_path: Path) -> None:
    repo, lock = alice
    repo.force_tag("v1", repo.commit({"evil.py": "x = 1\n"}))
    for fmt, name in (("sarif", "securehub.sarif"), ("cyclonedx", "ml-bom.json")):
        proc = subprocess.run(
            [sys.executable, "-m", "securehub", "audit", "--format", fmt, "--output", name, "--exit-zero"],
            capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        text = (tmp_path / name).read_text()
        assert (sarif_errors(json.loads(text)) if fmt == "sarif" else cyclonedx_errors(text)) == []


def test_unparseable_lock_points_at_the_line_the_parser_names(
    hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lock = tmp_path / "hub.lock"
    lock.write_text('{\n  "version": 1,\n  "repos": {\n    "a/b:v1": [\n')
    sarif, bom = _reports(lock, offline=True)
    (result,) = sarif["runs"][0]["results"]
    assert result["ruleId"] == "lock-invalid"
    line = int(re.search(r" line (\d+) column", result["message"]["text"]).group(1))  # type: ignore[union-attr]
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": line}
    assert bom["components"] == []
