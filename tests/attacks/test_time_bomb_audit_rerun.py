"""Drift of behaviour caught by ``securehub audit --rerun`` (SPEC sections 4 and 10, issue 11 item 5).

A *time-bomb* hubconf returns other weights once ``time.time()`` passes a date written into its
pinned tree. Refs, tree and artifacts never change, so a plain ``audit`` passes; ``audit --rerun``
runs the pinned entrypoint again in the real sandbox and reports ``output-mismatch`` (critical),
also when the child forges its own serializer. The audit writes nothing: hub.lock byte-identical,
no result cached, one audit-log line.

Also: ``--offline --rerun`` never touches the network (an uncached pinned tree is an ``offline``
finding, nothing runs), and a lock whose signature fails is never re-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from securehub._util.digest import args_sha256
from securehub.audit.report import run_audit
from securehub.config.lockfile import EntrypointEntry, Lockfile, OutputPin, RepoEntry
from securehub.resolve.spec import parse_spec
from securehub.verify.signature import generate_keypair, read_public_key_file
from tests._hub_helpers import NEEDS_FULL_SANDBOX
from tests._servers import GitServer, RepoFactory
from tests.attacks.test_output_pinning_attacks import FORGED_SERIALIZER, TIME_BOMB, armed_before_the_date, wait_for
from tests.integration.test_lock_cli import Cli, Result, cli  # noqa: F401 - the fixture is used by name

# Lock (two sandbox runs per bomb) and one clean --rerun (one run per bomb) must finish before the date:
# a fast machine takes ~12 s; a slower one retries with the longer margin.
_MARGINS_S = (25.0, 120.0)
#: the two bombs, published as two repos and locked together so that the test waits for one date
BOMBS = {"weights-after-date": ("e2e/bomb", TIME_BOMB), "forged-serializer": ("e2e/forged", FORGED_SERIALIZER)}


def _findings(stdout: str) -> list[dict[str, object]]:
    doc = json.loads(stdout)
    assert doc["schema"] == "securehub-audit/1"
    findings = doc["findings"]
    assert isinstance(findings, list)
    return findings


def _results_empty(hub: Path) -> bool:
    results = hub / "results"
    return not results.exists() or not any(results.iterdir())


@NEEDS_FULL_SANDBOX
def test_time_bomb_hubconfs_are_output_mismatch_in_audit_rerun(
    cli: Cli,  # noqa: F811 - pytest fixture by name
    repo_factory: RepoFactory,
) -> None:
    # Both bombs (other weights after the date; the child forging its own serializer) share one date.
    def arm(date: float, attempt: int) -> tuple[dict[str, str], Result]:
        cli.lock_path.unlink(missing_ok=True)  # a retry's lock holds only its own bombs
        specs = {}
        for kind, (name, source) in BOMBS.items():
            repo = repo_factory.make_repo(f"{name}{attempt}", {"hubconf.py": source.replace("@T@", repr(date))})
            repo.tag("v1", annotated=True)
            specs[kind] = f"{name}{attempt}:v1"
        assert cli("lock", *specs.values(), "-e", "net").code == 0
        return specs, cli("audit", "--rerun", "--format", "json")

    (specs, clean), bomb = armed_before_the_date(arm, _MARGINS_S)
    assert clean.code == 0 and _findings(clean.out) == [], clean.out  # the honest re-runs reproduce the pins
    locked = Lockfile.load(cli.lock_path)
    pins = {kind: locked.repos[spec].entrypoints["net"].outputs[args_sha256((), {})] for kind, spec in specs.items()}
    before = cli.lock_path.read_bytes()
    logged = len(cli.audit_records())
    wait_for(bomb)

    plain = cli("audit", "--format", "json")
    r = cli("audit", "--rerun", "--format", "json")

    assert plain.code == 0, plain.out  # refs, trees and artifacts are all still what the lock pins
    assert (json.loads(plain.out)["rerun"], json.loads(r.out)["rerun"]) == (False, True)
    assert r.code == 1
    findings = {str(f["repo_key"]): f for f in _findings(r.out)}
    assert {(f["code"], f["severity"]) for f in findings.values()} == {("output-mismatch", "critical")}
    assert set(findings) == set(specs.values())  # each bomb found, neither hidden behind the other
    for kind, spec in specs.items():
        message = str(findings[spec]["message"])
        assert f"state_sha256 {pins[kind].state_sha256}, found " in message, kind
        assert f"securehub lock {spec} -e net --upgrade" in message, kind
    assert cli.lock_path.read_bytes() == before  # nothing locked or re-pinned
    assert _results_empty(cli.hub)  # nothing cached as a result
    records = cli.audit_records()[logged:]
    assert [(rec["action"], rec["code"]) for rec in records] == [("audit", None), ("audit", "output-mismatch")]


@pytest.fixture(scope="module")
def forged_pin_lock(
    tmp_path_factory: pytest.TempPathFactory, git_server: GitServer
) -> Iterator[tuple[str, bytes, str]]:
    """``e2e/honest:v1`` published once, ``lock -e net`` run once (two sandbox runs), then its pinned state
    digest rewritten (the lock is unsigned); yields (spec, the forged lock's bytes, the honest state digest)."""
    factory = RepoFactory(git_server)
    repo = factory.make_repo("e2e/honest", {"hubconf.py": TIME_BOMB.replace("@T@", "4102444800.0")})
    repo.tag("v1", annotated=True)
    spec = "e2e/honest:v1"
    root = tmp_path_factory.mktemp("honest")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        "SECUREHUB_GITHUB_URL": git_server.base_url,
        "SECUREHUB_DIR": str(root / "hub"),
        "SECUREHUB_AUDIT_LOG": str(root / "audit.jsonl"),
    }  # fmt: skip (the cli fixture's environment)
    lock = subprocess.run(
        [sys.executable, "-m", "securehub", "lock", spec, "-e", "net"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert lock.returncode == 0, lock.stderr
    locked = Lockfile.load(root / "hub.lock")
    ep = locked.repos[spec].entrypoints["net"]
    digest = args_sha256((), {})
    old = ep.outputs[digest]
    forged = OutputPin("0" * 64, old.config_sha256, old.program_sha256)
    entry = EntrypointEntry(ep.artifacts, ep.example_inputs, ep.args, {digest: forged})
    locked.with_entrypoint(spec, "net", entry).save(root / "hub.lock")
    yield spec, (root / "hub.lock").read_bytes(), old.state_sha256
    factory.cleanup()


@pytest.mark.parametrize("fmt", ["text", "sarif", "cyclonedx"])
@NEEDS_FULL_SANDBOX
def test_time_bomb_rerun_finding_in_every_report_format(
    cli: Cli,  # noqa: F811 - pytest fixture by name
    forged_pin_lock: tuple[str, bytes, str],
    fmt: str,
) -> None:
    # The honest trigger: an entrypoint that is reproducible (its date is far away), and a pinned
    # state digest rewritten after locking (the lock is unsigned). Only the report plumbing is under
    # test here: every format carries the re-run's output-mismatch. Each case re-runs in its own hub.
    _, lock_bytes, honest_state = forged_pin_lock
    cli.lock_path.write_bytes(lock_bytes)

    r = cli("audit", "--rerun", "--format", fmt)

    assert r.code == 1  # the exit code carries the finding in every format
    assert _results_empty(cli.hub)
    if fmt == "cyclonedx":  # a BOM carries no findings by design (cyclonedx.py): only the exit code
        assert "machine-learning-model" in r.out
        return
    assert "output-mismatch" in r.out
    assert honest_state in r.out  # what the pinned code produces now, named in the finding
    if fmt == "text":
        assert "outputs:   pinned entrypoints re-run in the sandbox and compared with hub.lock" in r.out
    assert _results_empty(cli.hub)


def _pinned_lock(key: str) -> Lockfile:
    """A lock pinning ``key`` (remote as the resolver derives it) with one entrypoint output pinned."""
    pin = OutputPin("1" * 64, "2" * 64, None)
    entry = RepoEntry(
        remote=parse_spec(key).remote, ref="v1", ref_type="tag", commit="a" * 40, tree_sha256="b" * 64,
        entrypoints={"net": EntrypointEntry(outputs={args_sha256((), {}): pin})},
    )  # fmt: skip
    return Lockfile(repos={key: entry})


def test_offline_rerun_of_uncached_tree_is_offline_finding_and_runs_nothing(
    github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    key = "e2e/absent:v1"
    report = run_audit(policy="default", lock=_pinned_lock(key), offline=True, rerun=True)

    assert [(f.code, f.severity, f.repo_key) for f in report.findings] == [("offline", "error", key)]
    assert "--rerun expected the pinned tree" in report.findings[0].message
    assert not (hub_dir / "trees").exists() or not any((hub_dir / "trees").iterdir())  # nothing fetched
    assert _results_empty(hub_dir)


def test_badly_signed_lock_is_never_rerun(github_url: str, hub_dir: Path, tmp_path: Path) -> None:
    _, pub = generate_keypair(tmp_path / "k")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"version: 1\nextends: default\nsignatures:\n  trusted_keys: [{json.dumps(read_public_key_file(pub))}]\n"
    )
    key = "e2e/unsigned:v1"

    report = run_audit(policy=str(policy), lock=_pinned_lock(key), offline=True, rerun=True)

    # Only the signature finding: the unverified lock's pins do not decide what code runs.
    assert [f.code for f in report.findings] == ["signature-invalid"]


def test_unpinned_sibling_does_not_stop_rerun_of_pinned_entrypoint(
    github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    # Under lock.outputs: required an unpinned sibling is a not-locked finding; the pinned entrypoint
    # must still be re-run (here: offline with nothing cached, so the re-run's own offline finding
    # proves it was attempted), never skipped as if the not-locked finding covered it.
    policy = tmp_path / "required.yaml"
    policy.write_text("version: 1\nextends: default\nlock:\n  outputs: required\n")
    key = "e2e/siblings:v1"
    lock = _pinned_lock(key)
    entry = lock.repos[key]
    lock = lock.with_entrypoint(key, "other", EntrypointEntry())

    report = run_audit(policy=str(policy), lock=lock, offline=True, rerun=True)

    assert sorted((f.code, f.repo_key) for f in report.findings) == [("not-locked", key), ("offline", key)]
    assert entry.entrypoints["net"].outputs  # the pinned one is what the offline finding is about
    assert "'net'" in next(f.message for f in report.findings if f.code == "offline")


def test_output_pinned_for_unrecorded_arguments_is_reported_not_silently_skipped(
    github_url: str, hub_dir: Path, tmp_path: Path
) -> None:
    # A lock.mode: auto load pinned net(width=5): hub.lock keys that output by args_sha256 only, so
    # --rerun cannot replay it. It must say so (a finding, so the audit fails), not pass silently.
    key = "e2e/auto-pinned:v1"
    lock = _pinned_lock(key)
    other = args_sha256((), {"width": 5})
    ep = lock.repos[key].entrypoints["net"]
    only_other = EntrypointEntry(outputs={other: ep.outputs[args_sha256((), {})]})
    lock = lock.with_entrypoint(key, "net", only_other)

    report = run_audit(policy="default", lock=lock, offline=True, rerun=True)

    # Nothing pinned for the recorded (default) arguments: nothing to run, so no offline finding either.
    assert [(f.code, f.severity, f.repo_key) for f in report.findings] == [("not-locked", "warning", key)]
    message = report.findings[0].message
    assert f"args_sha256 {other}" in message and "pinned but not re-run" in message
    assert f"securehub lock {key} -e net --upgrade`, with one `--arg` per argument" in message
    assert not (hub_dir / "trees").exists() or not any((hub_dir / "trees").iterdir())
    assert _results_empty(hub_dir)
