"""``securehub audit`` end to end: real git server, real cache, the CLI as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from securehub.audit.report import run_audit
from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, Lockfile, RepoEntry
from securehub.errors import PolicyInvalid
from securehub.pipeline.lock import lock_repos
from securehub.store.cache import Cache
from securehub.verify.signature import generate_keypair, read_public_key_file, sign_lock
from tests._servers import GitServer, RepoFactory, RepoHandle

HUBCONF = "dependencies = []\n\ndef resnet():\n    return None\n"
SPEC = "alice/model:v1"
ART_DATA = b"not really a checkpoint, but bytes with a digest\n"
ART_SHA = hashlib.sha256(ART_DATA).hexdigest()
ART_URL = f"https://download.example.org/models/resnet-{ART_SHA[:8]}.safetensors"  # torch.hub's name-<prefix> form


@dataclass(frozen=True)
class Locked:
    repo: RepoHandle
    server: GitServer
    lock: Path
    hub: Path


def _cache_artifact(hub: Path, data: bytes) -> str:
    cache = Cache(hub)
    sha = hashlib.sha256(data).hexdigest()
    tmp = cache.tmp_dir() / "upload"
    tmp.write_bytes(data)
    cache.put_artifact_from_temp(tmp, sha)
    return sha


def _add_entrypoint(lock_path: Path, key: str, url: str, data: bytes) -> None:
    lock = Lockfile.load(lock_path)
    sha = hashlib.sha256(data).hexdigest()
    lock = lock.with_artifact(url, ArtifactEntry(sha, len(data)))
    lock = lock.with_entrypoint(key, "resnet", EntrypointEntry(artifacts=(url,)))
    lock.save(lock_path)


@pytest.fixture
def locked(repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path) -> Locked:
    """alice/model:v1 locked (tree cached) with entrypoint ``resnet`` fetching one cached artifact."""
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    lock = tmp_path / "hub.lock"
    lock_repos([SPEC], policy="default", lock=lock)
    _add_entrypoint(lock, SPEC, ART_URL, ART_DATA)
    _cache_artifact(hub_dir, ART_DATA)
    repo_factory.server.clear_log()
    return Locked(repo, repo_factory.server, lock, hub_dir)


def _audit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securehub", "audit", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=cwd,
        timeout=120,
        check=False,
    )


def _line_of(lock: Path, needle: str) -> int:
    lines = lock.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.lstrip().startswith(json.dumps(needle) + ":"))


def _cache_snapshot(hub: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for sub in ("trees", "artifacts", "index"):
        for p in sorted((hub / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(hub))] = p.read_bytes()
    return out


# --------------------------------------------------------------------------- clean audits


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "cyclonedx"])
def test_clean_audit_exits_0_in_every_format(locked: Locked, fmt: str) -> None:
    lock_before = locked.lock.read_bytes()
    cache_before = _cache_snapshot(locked.hub)
    proc = _audit("--lock", str(locked.lock), "--format", fmt)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    if fmt == "text":
        assert "audit passed: no findings" in proc.stdout
        assert "error[" not in proc.stdout
    else:
        doc = json.loads(proc.stdout)
        if fmt == "json":
            assert doc["schema"] == "securehub-audit/1"
            assert doc["findings"] == []
            assert [r["cached"] for r in doc["repos"]] == [True]
            assert [a["cached"] for a in doc["artifacts"]] == [True]
        elif fmt == "sarif":
            assert doc["runs"][0]["results"] == []
        else:
            assert [c["name"] for c in doc["components"] if c["type"] == "machine-learning-model"] == [f"{SPEC}#resnet"]
    # Nothing trusted was written: the lock and the cache are byte-identical.
    assert locked.lock.read_bytes() == lock_before
    assert _cache_snapshot(locked.hub) == cache_before


def test_audit_appends_one_audit_log_record(locked: Locked) -> None:
    log = locked.hub / "audit.jsonl"
    before = log.read_text().splitlines() if log.exists() else []
    report = run_audit(lock=locked.lock, offline=True)
    after = log.read_text().splitlines()
    assert len(after) == len(before) + 1
    record = json.loads(after[-1])
    assert record["action"] == "audit"
    assert record["outcome"] == "ok"
    assert record["code"] is None
    assert record["policy"]["sha256"] == report.policy_sha256


def test_output_writes_file_and_prints_nothing(locked: Locked, tmp_path: Path) -> None:
    out = tmp_path / "report.sarif"
    proc = _audit("--lock", str(locked.lock), "--format", "sarif", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert json.loads(out.read_text())["version"] == "2.1.0"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report.sarif.")] == []  # no temp left


# --------------------------------------------------------------------------- drift


def test_repointed_tag_is_critical_lock_drift(locked: Locked) -> None:
    new = locked.repo.commit({"evil.py": "import os\n"})
    locked.repo.force_tag("v1", new)
    proc = _audit("--lock", str(locked.lock))
    assert proc.returncode == 1
    drift = [line for line in proc.stdout.splitlines() if line.startswith("error[lock-drift]:")]
    assert len(drift) == 1
    assert drift[0].startswith("error[lock-drift]: critical:")
    assert new in drift[0]

    report = json.loads(_audit("--lock", str(locked.lock), "--format", "json").stdout)
    assert [(f["code"], f["severity"], f["repo_key"]) for f in report["findings"]] == [("lock-drift", "critical", SPEC)]


def test_offline_audit_of_repointed_tag_passes_without_network(locked: Locked) -> None:
    new = locked.repo.commit({"evil.py": "import os\n"})
    locked.repo.force_tag("v1", new)
    locked.server.clear_log()
    proc = _audit("--lock", str(locked.lock), "--offline", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["offline"] is True
    assert locked.server.requests == []  # no request reached the git server


def test_unreachable_remote_is_network_finding(github_url: str, hub_dir: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = f"git+http://127.0.0.1:{port}/alice/gone.git@v1"
    entry = RepoEntry(
        remote=f"http://127.0.0.1:{port}/alice/gone.git",
        ref="v1",
        ref_type="tag",
        commit="a" * 40,
        tree_sha256="b" * 64,
    )
    lock = tmp_path / "hub.lock"
    Lockfile.empty().with_repo(key, entry).save(lock)
    report = run_audit(lock=lock)
    assert [(f.code, f.severity, f.repo_key) for f in report.findings] == [("network", "error", key)]
    assert report.repos[0].cached is False


# --------------------------------------------------------------------------- cache tampering


def test_tampered_cached_tree_is_hash_mismatch(locked: Locked) -> None:
    entry = Lockfile.load(locked.lock).repos[SPEC]
    hubconf = locked.hub / "trees" / entry.tree_sha256 / "hubconf.py"
    hubconf.chmod(0o644)
    hubconf.write_text(HUBCONF + "import os; os.system('id')\n")
    proc = _audit("--lock", str(locked.lock), "--offline", "--format", "json")
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)["findings"]
    assert [(f["code"], f["severity"], f["repo_key"]) for f in findings] == [("hash-mismatch", "critical", SPEC)]
    assert findings[0]["lock_line"] == _line_of(locked.lock, SPEC)
    assert json.loads(proc.stdout)["repos"][0]["cached"] is False


def test_tampered_cached_artifact_is_hash_mismatch(locked: Locked) -> None:
    blob = locked.hub / "artifacts" / "sha256" / ART_SHA
    blob.chmod(0o644)
    blob.write_bytes(b"swapped weights")
    proc = _audit("--lock", str(locked.lock), "--offline", "--format", "json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert [(f["code"], f["severity"], f["artifact_url"]) for f in doc["findings"]] == [
        ("hash-mismatch", "critical", ART_URL)
    ]
    assert doc["findings"][0]["lock_line"] == _line_of(locked.lock, ART_URL)
    assert doc["artifacts"][0]["cached"] is False
    assert blob.read_bytes() == b"swapped weights"  # left in place for inspection, not repaired


def test_lock_size_disagreeing_with_cached_blob_is_hash_mismatch(locked: Locked) -> None:
    lock = Lockfile.load(locked.lock)
    lock.with_artifact(ART_URL, ArtifactEntry(ART_SHA, len(ART_DATA) + 1)).save(locked.lock)
    report = run_audit(lock=locked.lock, offline=True)
    assert [(f.code, f.artifact_url) for f in report.findings] == [("hash-mismatch", ART_URL)]
    assert "expected size" in report.findings[0].message


# --------------------------------------------------------------------------- lock vs policy


def test_branch_entry_under_strict_is_ref_not_allowed(
    repo_factory: RepoFactory, github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    lock = tmp_path / "hub.lock"
    lock_repos(["alice/model:main"], policy="default", lock=lock)
    proc = _audit("--lock", str(lock), "--policy", "strict", "--format", "json")
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)["findings"]
    # Reported once, although re-resolving under strict refuses the branch too.
    assert [(f["code"], f["repo_key"]) for f in findings] == [("ref-not-allowed", "alice/model:main")]
    assert findings[0]["lock_line"] == _line_of(lock, "alice/model:main")


def test_denied_repo_and_artifact_host(locked: Locked, tmp_path: Path) -> None:
    policy = tmp_path / "org.yaml"
    policy.write_text(
        "version: 1\nextends: default\nrepos:\n  deny: ['alice/*']\nartifacts:\n  hosts: ['models.corp.example']\n"
    )
    report = run_audit(policy=str(policy), lock=locked.lock, offline=True)
    assert [(f.code, f.repo_key, f.artifact_url) for f in report.findings] == [
        ("repo-not-allowed", SPEC, None),
        ("artifact-not-allowed", None, ART_URL),
    ]


def test_plain_http_artifact_on_public_host_is_not_allowed(locked: Locked) -> None:
    url = "http://download.example.org/models/plain.safetensors"
    _add_entrypoint(locked.lock, SPEC, url, b"plain")
    report = run_audit(lock=locked.lock, offline=True)
    assert [(f.code, f.artifact_url) for f in report.findings] == [("artifact-not-allowed", url)]
    assert "loopback" in report.findings[0].message


def test_locked_sha256_contradicting_the_file_name_hash_prefix_is_hash_mismatch(locked: Locked) -> None:
    """Every load of that URL is refused before downloading (hash-mismatch): the lock is unusable as written."""
    other = b"other bytes"
    wrong = "0" * 8 if not hashlib.sha256(other).hexdigest().startswith("0" * 8) else "1" * 8
    url = f"https://download.example.org/models/resnet-{wrong}.safetensors"
    _add_entrypoint(locked.lock, SPEC, url, other)
    before = locked.lock.read_bytes()
    proc = _audit("--lock", str(locked.lock), "--offline", "--format", "json")
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)["findings"]
    assert [(f["code"], f["severity"], f["artifact_url"]) for f in findings] == [("hash-mismatch", "critical", url)]
    assert findings[0]["lock_line"] == _line_of(locked.lock, url)
    assert wrong in findings[0]["message"] and hashlib.sha256(other).hexdigest() in findings[0]["message"]
    assert locked.lock.read_bytes() == before


@pytest.mark.parametrize("name", ["resnet.safetensors", "resnet-.safetensors", "resnet-v2.safetensors"])
def test_file_names_claiming_no_prefix_are_no_finding(locked: Locked, name: str) -> None:
    _add_entrypoint(locked.lock, SPEC, f"https://download.example.org/models/{name}", b"x")
    assert run_audit(lock=locked.lock, offline=True).findings == ()


def test_invalid_policy_exits_2(locked: Locked, tmp_path: Path) -> None:
    proc = _audit("--lock", str(locked.lock), "--policy", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error[policy-invalid]:")
    with pytest.raises(PolicyInvalid):
        run_audit(policy=str(tmp_path / "missing.yaml"), lock=locked.lock)


def test_unparseable_lock_is_lock_invalid_finding(hub_dir: Path, tmp_path: Path) -> None:
    lock = tmp_path / "hub.lock"
    lock.write_text('{"version": 1, "repos": {')
    proc = _audit("--lock", str(lock), "--format", "json")
    assert proc.returncode == 1
    assert [f["code"] for f in json.loads(proc.stdout)["findings"]] == ["lock-invalid"]


def test_missing_lock_is_lock_invalid_finding(hub_dir: Path, tmp_path: Path) -> None:
    report = run_audit(lock=None, offline=True)  # cwd has no hub.lock, SECUREHUB_LOCK unset
    assert [f.code for f in report.findings] == ["lock-invalid"]
    assert report.repos == ()


# --------------------------------------------------------------------------- signatures


def _trusting_policy(tmp_path: Path, pub: Path) -> Path:
    policy = tmp_path / "signed.yaml"
    policy.write_text(
        f"version: 1\nextends: default\nsignatures:\n  trusted_keys: [{json.dumps(read_public_key_file(pub))}]\n"
    )
    return policy


def test_signed_lock_with_trusted_key_passes(locked: Locked, tmp_path: Path) -> None:
    key, pub = generate_keypair(tmp_path / "ci")
    sign_lock(Lockfile.load(locked.lock), key).save(locked.lock)
    policy = _trusting_policy(tmp_path, pub)
    proc = _audit("--lock", str(locked.lock), "--policy", str(policy), "--format", "json", "--offline")
    assert proc.returncode == 0, proc.stdout
    doc = json.loads(proc.stdout)
    assert doc["signed_by"] == Lockfile.load(locked.lock).signature.keyid  # type: ignore[union-attr]


def test_tampered_signed_lock_is_signature_invalid_and_audit_continues(locked: Locked, tmp_path: Path) -> None:
    key, pub = generate_keypair(tmp_path / "ci")
    sign_lock(Lockfile.load(locked.lock), key).save(locked.lock)
    # Tamper: bump the artifact size by hand (the signature no longer covers the content).
    text = locked.lock.read_text().replace(f'"size": {len(ART_DATA)}', f'"size": {len(ART_DATA) + 5}')
    locked.lock.write_text(text)
    policy = _trusting_policy(tmp_path, pub)
    proc = _audit("--lock", str(locked.lock), "--policy", str(policy), "--format", "json", "--offline")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    assert doc["signed_by"] is None
    assert [(f["code"], f["severity"]) for f in doc["findings"]] == [
        ("signature-invalid", "critical"),
        ("hash-mismatch", "critical"),  # the rest of the audit still ran on the unverified content
    ]
    assert doc["findings"][0]["lock_line"] == _line_of(locked.lock, "signature")


def test_unsigned_lock_under_trusted_keys_is_signature_invalid(locked: Locked, tmp_path: Path) -> None:
    _, pub = generate_keypair(tmp_path / "ci")
    report = run_audit(policy=str(_trusting_policy(tmp_path, pub)), lock=locked.lock, offline=True)
    assert [f.code for f in report.findings] == ["signature-invalid"]
    assert [r.key for r in report.repos] == [SPEC]


# --------------------------------------------------------------------------- report formats


def test_sarif_rules_stable_and_region_points_at_repo_key(locked: Locked) -> None:
    new = locked.repo.commit({"evil.py": "x = 1\n"})
    locked.repo.force_tag("v1", new)
    first = json.loads(_audit("--lock", str(locked.lock), "--format", "sarif").stdout)
    second = json.loads(_audit("--lock", str(locked.lock), "--format", "sarif").stdout)
    assert first["runs"][0]["tool"]["driver"]["rules"] == second["runs"][0]["tool"]["driver"]["rules"]
    (result,) = first["runs"][0]["results"]
    assert result["ruleId"] == "lock-drift"
    assert result["level"] == "error"
    rules = first["runs"][0]["tool"]["driver"]["rules"]
    assert rules[result["ruleIndex"]]["id"] == "lock-drift"
    location = result["locations"][0]["physicalLocation"]
    assert location["region"]["startLine"] == _line_of(locked.lock, SPEC)
    assert result["partialFingerprints"] == second["runs"][0]["results"][0]["partialFingerprints"]


def test_sarif_uri_is_relative_to_working_directory(locked: Locked) -> None:
    new = locked.repo.commit({"evil.py": "x = 1\n"})
    locked.repo.force_tag("v1", new)
    proc = _audit("--lock", "hub.lock", "--format", "sarif", cwd=locked.lock.parent)
    (result,) = json.loads(proc.stdout)["runs"][0]["results"]
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "hub.lock"


def test_cyclonedx_one_model_per_entrypoint_with_hashes_and_deterministic(locked: Locked) -> None:
    second_url = "https://download.example.org/models/head.safetensors"
    second_data = b"second artifact"
    lock = Lockfile.load(locked.lock)
    lock = lock.with_artifact(second_url, ArtifactEntry(hashlib.sha256(second_data).hexdigest(), len(second_data)))
    lock = lock.with_entrypoint(SPEC, "detector", EntrypointEntry(artifacts=(ART_URL, second_url)))
    lock.save(locked.lock)
    first = _audit("--lock", str(locked.lock), "--format", "cyclonedx", "--offline").stdout
    again = _audit("--lock", str(locked.lock), "--format", "cyclonedx", "--offline").stdout
    assert first == again  # identical inputs, identical BOM (serial number included)
    bom = json.loads(first)
    models = {c["name"]: c for c in bom["components"] if c["type"] == "machine-learning-model"}
    assert sorted(models) == [f"{SPEC}#detector", f"{SPEC}#resnet"]
    # Each weight file is its own component with its one SHA-256; the model depends on them (a model
    # carrying several SHA-256 hashes would be ambiguous: one hash per algorithm per component).
    deps = {d["ref"]: set(d["dependsOn"]) for d in bom["dependencies"]}
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    detector_hashes = {
        h["content"] for ref in deps[models[f"{SPEC}#detector"]["bom-ref"]] for h in by_ref[ref].get("hashes", [])
    }
    assert detector_hashes == {ART_SHA, hashlib.sha256(second_data).hexdigest()}
    assert all("hashes" not in m for m in models.values())
    files = [c for c in bom["components"] if c["type"] == "file"]
    assert sorted(h["content"] for c in files for h in c["hashes"]) == sorted(
        [ART_SHA, hashlib.sha256(second_data).hexdigest()]
    )
    assert bom["serialNumber"].startswith("urn:uuid:")
    # A different lock gives a different serial number.
    Lockfile.load(locked.lock).with_entrypoint(SPEC, "other", EntrypointEntry()).save(locked.lock)
    changed = json.loads(_audit("--lock", str(locked.lock), "--format", "cyclonedx", "--offline").stdout)
    assert changed["serialNumber"] != bom["serialNumber"]


def test_terminal_escape_in_repo_key_and_ref_never_reaches_text_output(locked: Locked) -> None:
    # An 8-bit CSI (U+009B) in a repo key: hub.lock refuses every control, bidi and invisible character in
    # keys, remotes and URLs (before, the lock admitted it and the spec parser refused it later).
    original = locked.lock.read_text()
    assert f'"{SPEC}": {{' in original
    locked.lock.write_text(original.replace(f'"{SPEC}": {{', f'"{SPEC}\\u009b2J\\u009b31mOWNED": {{', 1))
    proc = _audit("--lock", str(locked.lock), "--offline")
    assert proc.returncode == 1
    assert "\x9b" not in proc.stdout and "\x1b" not in proc.stdout
    assert "error[lock-invalid]:" in proc.stdout
    assert "OWNED" in proc.stdout  # shown, but defanged
    locked.lock.write_text(original)

    raw = locked.lock.read_text().replace('"ref": "v1"', '"ref": "v1\\u001b]0;pwned\\u0007"', 1)
    locked.lock.write_text(raw)
    proc = _audit("--lock", str(locked.lock), "--offline")
    assert proc.returncode == 1
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "error[lock-invalid]:" in proc.stdout


def test_securehub_offline_env_makes_the_audit_offline(locked: Locked, monkeypatch: pytest.MonkeyPatch) -> None:
    new = locked.repo.commit({"evil.py": "x = 1\n"})
    locked.repo.force_tag("v1", new)
    locked.server.clear_log()
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    report = run_audit(lock=locked.lock)
    assert report.offline is True
    assert report.findings == ()
    assert locked.server.requests == []


def test_badly_signed_lock_object_is_still_audited(locked: Locked, tmp_path: Path) -> None:
    _, pub = generate_keypair(tmp_path / "ci")
    other_key, _ = generate_keypair(tmp_path / "other")
    signed_by_other = sign_lock(Lockfile.load(locked.lock), other_key)
    report = run_audit(policy=str(_trusting_policy(tmp_path, pub)), lock=signed_by_other, offline=True)
    assert [f.code for f in report.findings] == ["signature-invalid"]
    assert report.lock_path is None
    assert [r.key for r in report.repos] == [SPEC]
    assert [a.cached for a in report.artifacts] == [True]
