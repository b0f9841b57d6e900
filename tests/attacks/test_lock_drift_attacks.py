"""Attacks on a pinned hub.lock that ``securehub lock --check`` must catch (SPEC sections 4 and 10).

Each test is named after the attack: an upstream that re-points or deletes a released tag, a
tampered cache, a lock edited to send git elsewhere, a signed lock whose pin was changed. In every
case ``--check`` exits 1 with the documented ``error[<code>]:`` line and writes nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests._servers import GitServer, RepoHandle
from tests.integration.test_lock_cli import REPO, Cli, cli, peeled, repo, snapshot

__all__ = ["cli", "repo"]  # fixtures, re-exported for pytest


def _lock_v1(cli: Cli) -> tuple[bytes, dict[str, bytes]]:
    assert cli("lock", f"{REPO}:v1").code == 0
    return cli.lock_path.read_bytes(), snapshot(cli.cwd)


def _assert_one_critical(errors: list[str], code: str = "lock-drift") -> None:
    """Exactly one ``error[<code>]: critical: ...`` line."""
    assert len(errors) == 1
    assert errors[0].startswith(f"error[{code}]: critical: ")


def test_tag_force_pushed_after_locking_is_critical_drift(cli: Cli, repo: RepoHandle) -> None:
    before, files = _lock_v1(cli)
    old = peeled(repo, "v1")
    new = repo.commit({"pkg/net.py": "import os; os.system('id')\n"})
    repo.force_tag("v1", new, annotated=True)

    r = cli("lock", "--check")

    assert r.code == 1
    _assert_one_critical(r.errors)
    assert old in r.errors[0] and new in r.errors[0]
    assert cli.lock_path.read_bytes() == before
    assert cli.entry(f"{REPO}:v1")["commit"] == old
    assert snapshot(cli.cwd) == files


def test_tag_repointed_to_fork_commit_is_critical_drift(cli: Cli, repo: RepoHandle) -> None:
    """GitHub serves fork commits through the parent's URL; a tag moved onto one is still drift."""
    before, _ = _lock_v1(cli)
    fork = repo.fork_commit({"evil.py": "import os\n"})
    repo.force_tag("v1", fork)

    r = cli("lock", "--check", f"{REPO}:v1")

    assert r.code == 1
    _assert_one_critical(r.errors)
    assert fork in r.errors[0]
    assert cli.lock_path.read_bytes() == before


def test_tag_deleted_upstream_is_critical_drift(cli: Cli, repo: RepoHandle) -> None:
    before, files = _lock_v1(cli)
    repo.delete_ref("refs/tags/v1")

    r = cli("lock", "--check")

    assert r.code == 1
    _assert_one_critical(r.errors)
    assert "no longer exists" in r.errors[0]
    assert snapshot(cli.cwd) == files
    assert cli.lock_path.read_bytes() == before


def test_tampered_cached_tree_is_hash_mismatch(cli: Cli, repo: RepoHandle) -> None:
    before, files = _lock_v1(cli)
    digest = cli.entry(f"{REPO}:v1")["tree_sha256"]
    victim = cli.hub / "trees" / digest / "hubconf.py"
    os.chmod(victim, 0o644)  # we are root; the cache's read-only bits only stop accidents
    victim.write_text("import os; os.system('id')\n")

    r = cli("lock", "--check")

    assert r.code == 1
    assert r.codes() == ["hash-mismatch"]
    assert cli.lock_path.read_bytes() == before
    assert snapshot(cli.cwd) == files
    assert victim.read_text() == "import os; os.system('id')\n"  # reported, never silently repaired

    verify = cli("cache", "verify")
    assert verify.code == 1
    assert verify.codes() == ["hash-mismatch"]
    assert digest in verify.errors[0]


def test_lock_remote_redirected_to_another_host_is_drift(
    cli: Cli, repo: RepoHandle, other_git_server: GitServer
) -> None:
    """An edited ``remote`` would make git fetch the pinned commit from an attacker's host."""
    _lock_v1(cli)
    doc = json.loads(cli.lock_path.read_bytes())
    doc["repos"][f"{REPO}:v1"]["remote"] = other_git_server.url_for(REPO)
    edited = (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode()
    cli.lock_path.write_bytes(edited)
    other_git_server.clear_log()

    r = cli("lock", "--check")

    assert r.code == 1
    assert r.codes() == ["lock-drift"]
    assert other_git_server.url_for(REPO) in r.errors[0]
    assert other_git_server.requests == []
    assert cli.lock_path.read_bytes() == edited


def test_signed_lock_with_swapped_commit_is_signature_invalid(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    assert cli("keygen", "k").code == 0
    assert cli("sign", "--key", "k.key").code == 0
    pub = (cli.cwd / "k.pub").read_text().strip()
    policy = tmp_path / "signed.yaml"
    policy.write_text(f"version: 1\nextends: strict\nsignatures:\n  trusted_keys: [{json.dumps(pub)}]\n")
    assert cli("lock", "--check", "--policy", str(policy)).code == 0
    commit = cli.entry(f"{REPO}:v1")["commit"]
    flipped = ("0" if commit[0] != "0" else "1") + commit[1:]
    tampered = cli.lock_path.read_text().replace(commit, flipped, 1)
    cli.lock_path.write_text(tampered)
    cli.server.clear_log()

    r = cli("lock", "--check", "--policy", str(policy))

    assert r.code == 1
    assert r.codes() == ["signature-invalid"]
    assert cli.server.requests == []  # refused before anything in the lock was believed
    assert cli.lock_path.read_text() == tampered


def test_forged_tree_digest_caught_on_cold_cache(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    """A lock whose ``tree_sha256`` was edited must fail ``--check`` on a fresh CI runner too.

    With nothing cached, the check fetches the pinned commit and compares; the bad digest admits
    nothing into the cache.
    """
    _lock_v1(cli)
    doc = json.loads(cli.lock_path.read_bytes())
    doc["repos"][f"{REPO}:v1"]["tree_sha256"] = "0" * 64
    forged = (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode()
    cli.lock_path.write_bytes(forged)
    cold = tmp_path / "cold-hub"
    cold.mkdir()

    r = cli("lock", "--check", env={"SECUREHUB_DIR": str(cold)})

    assert r.code == 1
    _assert_one_critical(r.errors, "hash-mismatch")
    assert "0" * 64 in r.errors[0]
    assert cli.lock_path.read_bytes() == forged
    assert list((cold / "trees").iterdir()) == []


def test_clean_lock_checks_on_cold_cache(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    _lock_v1(cli)
    cold = tmp_path / "cold-hub"
    cold.mkdir()

    r = cli("lock", "--check", env={"SECUREHUB_DIR": str(cold)})

    assert (r.code, r.errors) == (0, [])
    assert [p.name for p in (cold / "trees").iterdir()] == [cli.entry(f"{REPO}:v1")["tree_sha256"]]
