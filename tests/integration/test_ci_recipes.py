"""docs/ci.md's recipes, run as written against the local git server.

Every fenced block tagged ``ci-recipe=<name>`` is extracted and run with
``bash -eu`` (each line a command, the first failure stops the block, as a CI
step does) in a project directory holding a real ``hub.lock``. The CI YAML
itself is not run; instead every ``securehub`` command in it must be one of
the tested recipe lines, so the YAML cannot drift from what is tested.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, Lockfile
from securehub.pipeline.lock import lock_repos
from securehub.store.cache import Cache
from tests._report_schemas import cyclonedx_errors, sarif_errors
from tests._servers import GitServer, RepoFactory, RepoHandle

CI_MD = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
HUBCONF = "dependencies = []\n\ndef resnet():\n    return None\n"
SPEC = "alice/model:v1"
ART_URL = "https://download.example.org/models/resnet.safetensors"  # no hash prefix: export checks prefixes
ART_DATA = b"weights for the recipes\n"
ART_SHA = hashlib.sha256(ART_DATA).hexdigest()

_FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    return [(m.group("info").strip(), m.group("body")) for m in _FENCE.finditer(CI_MD.read_text(encoding="utf-8"))]


def _recipes() -> dict[str, str]:
    out: dict[str, str] = {}
    for info, body in _blocks():
        match = re.fullmatch(r"sh ci-recipe=([a-z-]+)", info)
        if match:
            assert match.group(1) not in out, f"duplicate recipe {match.group(1)}"
            out[match.group(1)] = body
    return out


RECIPES = _recipes()


@dataclass(frozen=True)
class Project:
    dir: Path
    repo: RepoHandle
    server: GitServer
    env: dict[str, str]

    def run(self, recipe: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run one recipe as a CI step would: bash, stop at the first failing command."""
        return subprocess.run(
            ["bash", "-eu", "-c", RECIPES[recipe]],
            cwd=self.dir,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    @property
    def lock(self) -> Path:
        return self.dir / "hub.lock"


@pytest.fixture
def project(repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path) -> Project:
    """A checkout with a committed hub.lock: alice/model:v1 (tree cached) + entrypoint resnet + one artifact."""
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    work = tmp_path / "checkout"
    work.mkdir()
    lock = work / "hub.lock"
    lock_repos([SPEC], policy="default", lock=lock)
    doc = Lockfile.load(lock).with_artifact(ART_URL, ArtifactEntry(ART_SHA, len(ART_DATA)))
    doc.with_entrypoint(SPEC, "resnet", EntrypointEntry(artifacts=(ART_URL,))).save(lock)
    cache = Cache(hub_dir)
    tmp = cache.tmp_dir() / "upload"
    tmp.write_bytes(ART_DATA)
    cache.put_artifact_from_temp(tmp, ART_SHA)
    env = {k: v for k, v in os.environ.items() if k not in ("SECUREHUB_LOCK", "SECUREHUB_POLICY", "SECUREHUB_OFFLINE")}
    # `securehub` as the recipes spell it: the console script of the interpreter running the tests.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return Project(work, repo, repo_factory.server, env)


def test_every_recipe_the_tests_run_is_in_docs() -> None:
    assert set(RECIPES) == {
        "lock-check",
        "audit-reports",
        "keygen",
        "sign",
        "verify-signed",
        "bundle-export",
        "bundle-import",
    }


def test_ci_yaml_uses_only_tested_commands() -> None:
    tested = {line.strip() for body in RECIPES.values() for line in body.splitlines()}
    yaml_blocks = [body for info, body in _blocks() if info == "yaml"]
    assert len(yaml_blocks) == 2  # GitHub Actions, GitLab CI
    commands = [
        m.group(1).split("#", 1)[0].strip()
        for body in yaml_blocks
        for m in re.finditer(r"^\s*(?:-\s+)?(?:run:\s+)?(securehub\s.*)$", body, re.M)
    ]
    assert len(commands) >= 10
    assert [c for c in commands if c not in tested] == []


def test_lock_check_recipe(project: Project) -> None:
    proc = project.run("lock-check")
    assert proc.returncode == 0, proc.stderr
    new = project.repo.commit({"evil.py": "x = 1\n"})
    project.repo.force_tag("v1", new)
    before = project.lock.read_bytes()
    proc = project.run("lock-check")
    assert proc.returncode == 1
    assert any(
        line.startswith("error[lock-drift]: critical:") for line in proc.stderr.splitlines() + proc.stdout.splitlines()
    )
    assert project.lock.read_bytes() == before  # --check writes nothing


def test_audit_reports_recipe(project: Project) -> None:
    proc = project.run("audit-reports")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit passed: no findings" in proc.stdout
    sarif = json.loads((project.dir / "securehub.sarif").read_text())
    assert sarif_errors(sarif) == [] and sarif["runs"][0]["results"] == []
    bom = (project.dir / "ml-bom.cdx.json").read_text()
    assert cyclonedx_errors(bom) == []

    # A re-pointed tag: the reports are still written (so CI can upload them), then the gate fails.
    project.repo.force_tag("v1", project.repo.commit({"evil.py": "x = 1\n"}))
    proc = project.run("audit-reports")
    assert proc.returncode == 1
    assert "error[lock-drift]: critical:" in proc.stdout
    sarif = json.loads((project.dir / "securehub.sarif").read_text())
    assert sarif_errors(sarif) == []
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["lock-drift"]
    assert (project.dir / "ml-bom.cdx.json").read_text() == bom  # same lock, byte-identical BOM


def test_signed_lock_recipes(project: Project) -> None:
    proc = project.run("keygen")
    assert proc.returncode == 0, proc.stderr
    assert (project.dir / "securehub-lock.key").exists() and (project.dir / "securehub-policy.yaml").exists()

    # Not signed yet: the policy refuses the lock.
    proc = project.run("verify-signed")
    assert proc.returncode == 1
    assert "error[signature-invalid]" in proc.stdout + proc.stderr

    key = (project.dir / "securehub-lock.key").read_text()
    (project.dir / "securehub-lock.key").unlink()  # the key lives only in the CI secret
    proc = project.run("sign", SECUREHUB_LOCK_SIGNING_KEY=key)
    assert proc.returncode == 0, proc.stderr
    assert Lockfile.load(project.lock).signature is not None
    proc = project.run("verify-signed")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # Edited after signing: refused again.
    text = project.lock.read_text().replace(f'"size": {len(ART_DATA)}', f'"size": {len(ART_DATA) + 1}')
    project.lock.write_text(text)
    proc = project.run("verify-signed")
    assert proc.returncode == 1
    assert "error[signature-invalid]" in proc.stdout + proc.stderr


def test_offline_bundle_recipes(project: Project, tmp_path: Path) -> None:
    proc = project.run("bundle-export")
    assert proc.returncode == 0, proc.stderr
    assert (project.dir / "securehub-bundle.tar").is_file()

    # The offline runner: an empty cache of its own, and nothing may reach the git server.
    offline_hub = tmp_path / "offline-hub"
    project.server.clear_log()
    proc = project.run("bundle-import", SECUREHUB_DIR=str(offline_hub))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "audit passed: no findings" in proc.stdout
    assert project.server.requests == []
    tree = Lockfile.load(project.lock).repos[SPEC].tree_sha256
    assert (offline_hub / "trees" / tree / "hubconf.py").read_text() == HUBCONF

    # A tampered bundle is refused and the fresh cache stays empty.
    bundle = project.dir / "securehub-bundle.tar"
    data = bundle.read_bytes()
    bundle.write_bytes(data.replace(ART_DATA, ART_DATA.upper()))
    other_hub = tmp_path / "other-hub"
    proc = project.run("bundle-import", SECUREHUB_DIR=str(other_hub))
    assert proc.returncode == 1
    assert "error[hash-mismatch]" in proc.stderr
    assert not (other_hub / "artifacts").exists() or not any((other_hub / "artifacts").rglob("*"))
