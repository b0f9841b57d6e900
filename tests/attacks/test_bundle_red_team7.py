"""Red team 7: bundles (``securehub cache import``) against truncation, forged lock signatures, a cache
someone already tampered with (symlinked entries aimed at the user's files), and a hub.lock that pins
one tree at two commits.

The bundle and lock come from ``test_bundle_tampering``'s machine A (real loopback git and artifact
servers); machine B imports with ``SECUREHUB_OFFLINE=1``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from securehub.errors import SecureHubError
from securehub.pipeline.bundle import import_bundle
from tests._hub_helpers import NEEDS_FULL_SANDBOX, write_policy
from tests._lock_helpers import keypair
from tests._servers import GitServer, RepoFactory
from tests.attacks import test_bundle_tampering as tampering
from tests.attacks.test_bundle_tampering import Exported

# Machine A's export (module-scoped) and machine B's fresh copy, shared with test_bundle_tampering.
_origin = tampering._origin
ex = tampering.ex

pytestmark = NEEDS_FULL_SANDBOX


def _snapshot(hub: Path) -> dict[str, tuple[int, bytes | str]]:
    """Every entry under ``hub`` with its mode and content (a link's target), except lock files."""
    out: dict[str, tuple[int, bytes | str]] = {}
    for p in sorted(hub.rglob("*")):
        rel = str(p.relative_to(hub))
        if rel.startswith("locks"):
            continue  # filelock's bookkeeping, not content
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = (st.st_mode, os.readlink(p))
        elif stat.S_ISREG(st.st_mode):
            out[rel] = (st.st_mode, p.read_bytes())
        else:
            out[rel] = (st.st_mode, "")
    return out


def _victim(tmp_path: Path) -> Path:
    """A directory of the user's, outside the hub dir, with a file and a subdirectory."""
    victim = tmp_path / "victim"
    (victim / "project").mkdir(parents=True)
    (victim / "project" / "notes.txt").write_text("precious\n")
    (victim / "file.bin").write_bytes(b"precious")
    victim.chmod(0o755)
    return victim


@pytest.mark.parametrize("keep", [0.5, 600 / 1e9, 511 / 1e9, 1000 / 1e9])
def test_truncated_bundle_is_hash_mismatch(ex: Exported, keep: float) -> None:
    """Cut mid-header, mid-manifest, mid-blob: refused, nothing imported (cut only the end-of-archive
    zero blocks and every member is still whole and verified: that one imports)."""
    data = ex.bundle.read_bytes()
    ex.bundle.write_bytes(data[: int(len(data) * keep) if keep >= 0.5 else int(keep * 1e9)])
    with pytest.raises(SecureHubError) as info:
        import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert info.value.code == "hash-mismatch", info.value
    assert not (ex.fresh / "trees").exists() or not any((ex.fresh / "trees").iterdir())
    assert not ex.git.requests and not ex.artifacts.requests


def test_tampered_bundle_into_a_tampered_cache_leaves_it_byte_identical(ex: Exported) -> None:
    """The cache already holds a tampered blob and tree; a truncated bundle must not touch either."""
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    art = ex.fresh / "artifacts" / "sha256" / hashlib.sha256(ex.blob).hexdigest()
    art.chmod(0o644)
    art.write_bytes(b"tampered")
    (tree,) = (ex.fresh / "trees").iterdir()
    tree.chmod(0o755)
    (tree / "planted.py").write_text("import os\n")
    before = _snapshot(ex.fresh)
    data = ex.bundle.read_bytes()
    ex.bundle.write_bytes(data[: len(data) // 2])
    with pytest.raises(SecureHubError) as info:
        import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert info.value.code == "hash-mismatch"
    assert _snapshot(ex.fresh) == before
    # The intact bundle repairs both (verified against hub.lock, like force_reload).
    ex.bundle.write_bytes(data)
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert art.read_bytes() == ex.blob
    assert ex.cli("cache", "verify").returncode == 0


def test_bundle_import_over_a_symlinked_tree_entry_never_chmods_its_target(ex: Exported, tmp_path: Path) -> None:
    """trees/<digest> replaced by a symlink to the user's directory: the import replaced the "bad copy"
    after Path.chmod(0o700) -- which follows the link and changed the user's directory's mode."""
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    (tree,) = (ex.fresh / "trees").iterdir()
    victim = _victim(tmp_path)
    tree.chmod(0o755)
    shutil.rmtree(tree)
    tree.symlink_to(victim)
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o755, oct(victim.stat().st_mode)
    assert (victim / "project" / "notes.txt").read_text() == "precious\n"
    assert tree.is_dir() and not tree.is_symlink()  # the link was moved aside, the verified tree installed
    loaded = ex.cli("load", "acme/bundled:v1", "weighted", "--policy", "strict", "--lock", str(ex.lock))
    assert loaded.returncode == 0, loaded.stderr


def test_bundle_import_over_a_symlinked_artifact_never_writes_its_target(ex: Exported, tmp_path: Path) -> None:
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    art = ex.fresh / "artifacts" / "sha256" / hashlib.sha256(ex.blob).hexdigest()
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"secret")
    outside.chmod(0o600)
    art.unlink()
    art.symlink_to(outside)
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert outside.read_bytes() == b"secret" and stat.S_IMODE(outside.stat().st_mode) == 0o600
    assert not art.is_symlink() and art.read_bytes() == ex.blob


def test_bundle_import_with_a_lock_signed_by_an_untrusted_key(ex: Exported, tmp_path: Path) -> None:
    trusted, pub = keypair(tmp_path, "trusted")
    attacker, _ = keypair(tmp_path, "attacker")
    policy = write_policy(tmp_path / "signed.yaml", "strict", signatures={"trusted_keys": [pub]})
    assert ex.cli("sign", "--lock", str(ex.lock), "--key", str(attacker)).returncode == 0
    signed_by_attacker = ex.lock.read_bytes()
    r = ex.cli("cache", "import", str(ex.bundle), "--lock", str(ex.lock), "--policy", str(policy))
    assert r.returncode == 1 and r.stderr.startswith("error[signature-invalid]: "), r.stderr
    assert ex.lock.read_bytes() == signed_by_attacker
    assert not ex.fresh.exists() or not any((ex.fresh / "trees").iterdir())
    assert ex.cli("sign", "--lock", str(ex.lock), "--key", str(trusted)).returncode == 0
    r = ex.cli("cache", "import", str(ex.bundle), "--lock", str(ex.lock), "--policy", str(policy))
    assert r.returncode == 0, r.stderr


def test_bundle_of_a_lock_pinning_one_tree_at_two_commits_loads_both_offline(
    git_server: GitServer, tmp_path: Path
) -> None:
    """Two tags around an empty commit: one tree, two commits. The bundle held the tree once under the
    last entry's commit and import indexed only that one: `cache import` said "imported", then an
    offline load of the other tag failed with `offline` (SPEC: loads then work offline)."""
    factory = RepoFactory(git_server)
    try:
        repo = factory.make_repo("acme/retagged", {"hubconf.py": "dependencies = []\n\n\ndef m():\n    return None\n"})
        repo.tag("v1")
        repo.commit({}, message="empty: same tree")
        repo.tag("v1.0.1")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_") and k != "GITHUB_TOKEN"}
        env.update(SECUREHUB_GITHUB_URL=git_server.base_url, SECUREHUB_AUDIT_LOG=str(tmp_path / "audit.jsonl"))

        def cli(hub: str, *args: str, offline: bool = False) -> subprocess.CompletedProcess[str]:
            e = {**env, "SECUREHUB_DIR": str(tmp_path / hub), **({"SECUREHUB_OFFLINE": "1"} if offline else {})}
            return subprocess.run(
                [sys.executable, "-m", "securehub", *args], cwd=tmp_path, env=e, capture_output=True, text=True,
                timeout=300, check=False,
            )  # fmt: skip

        assert cli("a", "lock", "acme/retagged:v1", "acme/retagged:v1.0.1", "--policy", "strict").returncode == 0
        lock = (tmp_path / "hub.lock").read_bytes()
        assert cli("a", "cache", "export", str(tmp_path / "b.bundle")).returncode == 0
        git_server.clear_log()
        r = cli("b", "cache", "import", str(tmp_path / "b.bundle"), "--policy", "strict", offline=True)
        assert r.returncode == 0, r.stderr
        for spec in ("acme/retagged:v1", "acme/retagged:v1.0.1"):
            r = cli("b", "list", spec, "--policy", "strict", offline=True)
            assert r.returncode == 0, f"{spec}: {r.stderr}"
            assert r.stdout.split() == ["m"]
        assert not git_server.requests
        assert (tmp_path / "hub.lock").read_bytes() == lock
    finally:
        factory.cleanup()
