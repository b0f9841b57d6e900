"""Hostile artifact servers: stall, drip, hang up mid-body, lie about the length, fill the disk.

Each test names the attack, asserts the exact ``SecureHubError.code`` and that nothing was admitted:
no blob in the cache, no partial file left in its ``tmp/``, no destination file, hub.lock untouched.
Time bounds are pytest-timeout markers (a hang fails the test), never timed assertions.

The attack that needed a fix is the *drip*: before ``artifacts.download_timeout_s`` a server that
sends one byte a second answers every read well inside the per-read timeout, so a locked 100 kB
artifact held a load open for ~28 hours (and a 10 GiB unlocked one, for centuries).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import securehub
from securehub.config.lockfile import ArtifactEntry
from securehub.errors import HashMismatch, NetworkError, SecureHubError
from securehub.store.cache import Cache
from tests._artifact_helpers import (  # *_fixture: pytest fixtures, registered by name
    blobs,
    clean_download_env_fixture,  # noqa: F401
    fetch,
    hub_cache_fixture,  # noqa: F401
    server_fixture,  # noqa: F401
    tmp_entries,
)
from tests._hub_helpers import write_policy
from tests._servers import ArtifactServer

DATA = os.urandom(100_000)
LOCKED = ArtifactEntry(hashlib.sha256(DATA).hexdigest(), len(DATA))
REPO_ROOT = Path(__file__).resolve().parents[2]


def nothing_cached(hub_cache: Cache) -> bool:
    return blobs(hub_cache) == [] and tmp_entries(hub_cache) == []


# ------------------------------------------------------------------ slow servers: one deadline


@pytest.mark.timeout(30)
def test_drip_one_byte_a_second_fails_at_the_download_deadline(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/drip.pth", DATA)
    server.set_drip("/drip.pth", interval_s=0.2)  # every read returns within the 5 s read timeout
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache, expected=LOCKED, read_timeout_s=5.0, timeout_s=1.0)
    assert exc.value.code == "network"
    assert "download_timeout_s" in str(exc.value)
    assert nothing_cached(hub_cache)


@pytest.mark.timeout(30)
def test_drip_unlocked_download_is_bounded_too(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/drip.bin", DATA)
    server.set_drip("/drip.bin", interval_s=0.2)
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache, read_timeout_s=5.0, timeout_s=1.0)
    assert exc.value.code == "network"
    assert nothing_cached(hub_cache)


@pytest.mark.timeout(30)
def test_stall_mid_body_is_bounded_by_the_download_deadline(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/stall.pth", DATA)
    server.set_stall("/stall.pth", after_bytes=1000)
    with pytest.raises(NetworkError) as exc:
        # A per-read timeout longer than the test's own bound: only the overall deadline can end it.
        fetch(url, hub_cache, expected=LOCKED, read_timeout_s=600.0, timeout_s=1.0)
    assert exc.value.code == "network"
    assert nothing_cached(hub_cache)


@pytest.mark.timeout(60)
def test_drip_through_the_api_is_bounded_by_policy_download_timeout(
    server: ArtifactServer, hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: ``download_url_to_file`` under a policy with ``artifacts.download_timeout_s: 2``."""
    monkeypatch.chdir(tmp_path)  # no ./hub.lock is read or written
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(audit))
    policy = write_policy(tmp_path / "p.yaml", "default", artifacts={"download_timeout_s": 2})
    url = server.put("/api-drip.safetensors", DATA)
    server.set_drip("/api-drip.safetensors", interval_s=0.2)
    dst = tmp_path / "out.safetensors"
    with pytest.raises(SecureHubError) as exc:
        securehub.download_url_to_file(url, dst, progress=False, sha256=LOCKED.sha256, policy=str(policy))
    assert exc.value.code == "network"
    assert not dst.exists()
    assert not (tmp_path / "hub.lock").exists()
    assert nothing_cached(Cache(hub_dir))
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (record["outcome"], record["code"]) == ("error", "network")


def test_download_timeout_policy_key_is_strictly_validated() -> None:
    for bad in ("0", "-1", "true", '"10"', "1.5", "86401"):
        with pytest.raises(SecureHubError) as exc:
            securehub.Policy.from_yaml(f"version: 1\nartifacts:\n  download_timeout_s: {bad}\n", source="p.yaml")
        assert exc.value.code == "policy-invalid"
        assert "artifacts.download_timeout_s" in str(exc.value)
    for name in ("strict", "default", "permissive"):
        assert securehub.Policy.load(name).artifacts.download_timeout_s == 3600


# ------------------------------------------------------------------ broken and lying bodies


@pytest.mark.timeout(30)
def test_connection_dropped_mid_body_fails_cleanly_and_a_retry_succeeds(
    server: ArtifactServer, hub_cache: Cache
) -> None:
    url = server.put("/drop.pth", DATA)
    server.set_drop("/drop.pth", after_bytes=30_000)
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache, expected=LOCKED, timeout_s=20.0)
    assert exc.value.code == "network"
    assert nothing_cached(hub_cache)

    server.put("/drop.pth", DATA)  # the server recovers: the next attempt downloads afresh
    result = fetch(url, hub_cache, expected=LOCKED, timeout_s=20.0)
    assert (result.sha256, result.size, result.from_cache) == (LOCKED.sha256, LOCKED.size, False)
    assert blobs(hub_cache) == [result.path]
    assert tmp_entries(hub_cache) == []


@pytest.mark.timeout(30)
def test_content_length_shorter_than_the_body_is_a_hash_mismatch(server: ArtifactServer, hub_cache: Cache) -> None:
    """The server declares 1000 bytes and sends 100 kB: only the declared bytes count, and they don't match."""
    url = server.put("/short-cl.pth", DATA)
    server.set_headers("/short-cl.pth", {"Content-Length": "1000"})
    with pytest.raises(HashMismatch) as exc:
        fetch(url, hub_cache, expected=LOCKED, timeout_s=20.0)
    assert exc.value.code == "hash-mismatch"
    assert nothing_cached(hub_cache)


@pytest.mark.timeout(30)
def test_content_length_longer_than_the_body_then_hang_up_is_network(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/long-cl.pth", DATA[:1000])
    server.set_headers("/long-cl.pth", {"Content-Length": str(len(DATA)), "Connection": "close"})
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache, expected=LOCKED, timeout_s=20.0)
    assert exc.value.code == "network"
    assert nothing_cached(hub_cache)


@pytest.mark.timeout(30)
def test_self_redirect_loop_is_network_after_the_hop_cap(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.add_redirect("/loop.pth", "/loop.pth", code=307)
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache, expected=LOCKED, timeout_s=20.0)
    assert exc.value.code == "network"
    assert "redirect loop" in str(exc.value)
    assert len(server.requests_for("/loop.pth")) == 6  # the first request and 5 hops, then stop
    assert nothing_cached(hub_cache)


# ------------------------------------------------------------------ disk full

# Runs in its own mount namespace (unshare -m) with SECUREHUB_DIR on a 1 MiB tmpfs, so the real
# download hits ENOSPC. Everything is checked inside, before the namespace (and the tmpfs) is gone.
_DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import securehub
    hub, url, sha, dst = sys.argv[1:5]
    try:
        securehub.download_url_to_file(url, dst, progress=False, sha256=sha, policy="default")
        outcome = {"code": None}
    except securehub.SecureHubError as exc:
        outcome = {"code": exc.code, "message": str(exc)}
    root = Path(hub)
    outcome["tmp"] = sorted(str(p) for p in (root / "tmp").rglob("*") if not p.is_dir())
    blobs = root / "artifacts" / "sha256"
    outcome["blobs"] = sorted(p.name for p in blobs.iterdir()) if blobs.exists() else []
    outcome["dst"] = os.path.exists(dst)
    print(json.dumps(outcome))
    """
)


@pytest.mark.timeout(120)
def test_disk_full_during_download_is_a_clean_network_error(server: ArtifactServer, tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024)
    url = server.put("/big.safetensors", big)
    hub = tmp_path / "hub"
    hub.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    env.update(
        SECUREHUB_DIR=str(hub),
        SECUREHUB_AUDIT_LOG=str(tmp_path / "audit.jsonl"),
        PYTHONPATH=str(REPO_ROOT),
    )
    script = (
        f'mount -t tmpfs -o size=1m securehub-full "{hub}" && cd "{tmp_path}" && '
        f'exec "{sys.executable}" -c "$0" "{hub}" "{url}" "{hashlib.sha256(big).hexdigest()}" "{tmp_path / "dst"}"'
    )
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, _DISK_FULL_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=100,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["code"] == "network", outcome
    assert "No space left on device" in outcome["message"]
    assert (outcome["tmp"], outcome["blobs"], outcome["dst"]) == ([], [], False)
    assert list(hub.iterdir()) == []  # the tmpfs is gone with the namespace; the real dir was never written
