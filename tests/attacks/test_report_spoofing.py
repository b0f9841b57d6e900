"""Attacks on what CI tools read from ``securehub audit``: spoofed identities and BOMs made unusable.

A CycloneDX BOM is trusted by Dependency-Track to say *which* code and
weights a project uses. Three ways a lock could make it lie or fail:

* purl spoofing: code fetched from another host (``SECUREHUB_GITHUB_URL``
  pointing at a mirror or an attacker's server, a look-alike host) reported
  as ``pkg:github/owner/repo``, so vulnerability data and allow-lists for the
  real GitHub project are applied to code that did not come from it;
* purl collision: several specs pinning one commit emitted as several
  components with one purl, which a consumer merges, dropping the others;
* BOM invalidation: URL characters a lock accepts (brackets, ``<``, C1
  controls) copied raw into ``externalReferences[].url``, so the BOM fails the
  CycloneDX schema and the upload is rejected -- the inventory silently stops
  updating.

Each test runs a real audit (real git server, real cache), validates the
output against the official schema, and checks nothing was written to the
lock or the cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from packageurl import PackageURL

from securehub.audit.report import render_report, run_audit
from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, Lockfile
from securehub.pipeline.lock import lock_repos
from tests._report_schemas import cyclonedx_errors, sarif_errors
from tests._servers import GitServer, RepoFactory

HUBCONF = "dependencies = []\n\ndef resnet():\n    return None\n"


def _snapshot(hub: Path, lock: Path) -> dict[str, bytes]:
    files = {str(p): p.read_bytes() for sub in ("trees", "artifacts") for p in (hub / sub).rglob("*") if p.is_file()}
    return {**files, "lock": lock.read_bytes()}


def _bom(lock: Path) -> dict[str, Any]:
    report = run_audit(lock=lock, offline=True)
    text = render_report(report, "cyclonedx")
    assert cyclonedx_errors(text) == []
    assert sarif_errors(json.loads(render_report(report, "sarif"))) == []
    bom: dict[str, Any] = json.loads(text)
    return bom


def test_purl_spoofing_github_spec_served_by_another_host_is_not_pkg_github(
    repo_factory: RepoFactory, git_server: GitServer, github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    # `alice/model:v1` is a GitHub-style spec, but SECUREHUB_GITHUB_URL sends git to another host.
    repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF}).tag("v1")
    lock = tmp_path / "hub.lock"
    lock_repos(["alice/model:v1"], policy="default", lock=lock)
    before = _snapshot(hub_dir, lock)
    bom = _bom(lock)
    purls = [PackageURL.from_string(c["purl"]) for c in bom["components"] if "purl" in c]
    assert [p.type for p in purls] == ["generic"]
    entry = Lockfile.load(lock).repos["alice/model:v1"]
    assert purls[0].qualifiers == {"vcs_url": f"git+{git_server.url_for('alice/model')}@{entry.commit}"}
    assert _snapshot(hub_dir, lock) == before


def test_purl_collision_several_specs_on_one_commit_stay_distinguishable(
    repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    repo.tag("v1-audited")
    lock = tmp_path / "hub.lock"
    lock_repos(["alice/model:v1", "alice/model:v1-audited"], policy="default", lock=lock)
    doc = Lockfile.load(lock)
    for key in doc.repos:
        doc = doc.with_entrypoint(key, "resnet", EntrypointEntry())
    doc.save(lock)
    before = _snapshot(hub_dir, lock)
    bom = _bom(lock)
    purls = [c["purl"] for c in bom["components"] if "purl" in c]
    refs = [c["bom-ref"] for c in bom["components"]]
    assert len(purls) == len(set(purls)) == 1  # one commit, one code component...
    (lib,) = [c for c in bom["components"] if c["type"] == "library"]
    specs = sorted(p["value"] for p in lib["properties"] if p["name"] == "securehub:spec")
    assert specs == ["alice/model:v1", "alice/model:v1-audited"]  # ...naming every spec that pins it
    assert len(refs) == len(set(refs))
    assert sorted(c["name"] for c in bom["components"] if c["type"] == "machine-learning-model") == [
        "alice/model:v1#resnet",
        "alice/model:v1-audited#resnet",
    ]
    assert _snapshot(hub_dir, lock) == before


def test_bom_invalidation_by_hostile_artifact_url_is_defused(
    repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF}).tag("v1")
    lock = tmp_path / "hub.lock"
    lock_repos(["alice/model:v1"], policy="default", lock=lock)
    # Accepted by the lock parser (no whitespace, no control or hidden character), but not a valid IRI as is.
    url = "https://download.example.org/m/<weights>[1]{x}|31m^`.safetensors"
    data = b"weights"
    with pytest.raises(ValueError, match="absolute URL"):  # a C1 CSI in it never reaches hub.lock (has_hidden)
        Lockfile.load(lock).with_artifact(url.replace("|", "|\u009b"), ArtifactEntry("0" * 64, 1))
    doc = Lockfile.load(lock).with_artifact(url, ArtifactEntry(hashlib.sha256(data).hexdigest(), len(data)))
    doc.with_entrypoint("alice/model:v1", "resnet", EntrypointEntry(artifacts=(url,))).save(lock)
    before = _snapshot(hub_dir, lock)
    bom = _bom(lock)
    (art,) = [c for c in bom["components"] if c["type"] == "file"]
    (ref,) = art["externalReferences"]
    assert ref["type"] == "distribution"
    assert ref["url"] == ("https://download.example.org/m/%3Cweights%3E%5B1%5D%7Bx%7D%7C31m%5E%60.safetensors")
    assert PackageURL.from_string(art["purl"]).qualifiers["download_url"] == url  # the exact URL, recoverable
    assert _snapshot(hub_dir, lock) == before
