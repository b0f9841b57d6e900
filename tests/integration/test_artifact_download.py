"""The parent's artifact downloader against a real loopback HTTP server (SPEC sections 5 and 9)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from securehub.config.lockfile import ArtifactEntry
from securehub.errors import ArtifactNotAllowed, HashMismatch, NetworkError, OfflineError
from securehub.fetch.artifacts import effective_mirrors, parse_mirrors
from securehub.store.cache import Cache
from tests._artifact_helpers import (  # *_fixture: pytest fixtures, registered by name
    blobs,
    clean_download_env_fixture,  # noqa: F401
    fetch,
    hub_cache_fixture,  # noqa: F401
    other_server_fixture,  # noqa: F401
    server_fixture,  # noqa: F401
    tmp_entries,
)
from tests._servers import ArtifactServer

DATA = os.urandom(200_000)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
LOCKED = ArtifactEntry(DATA_SHA, len(DATA))
REPO_ROOT = Path(__file__).resolve().parents[2]


def test_unlocked_download_records_digest_and_size(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/models/resnet.pth", DATA)
    res = fetch(url, hub_cache)
    assert (res.sha256, res.size, res.url, res.fetched_from, res.from_cache) == (
        DATA_SHA,
        len(DATA),
        url,
        url,
        False,
    )
    assert res.path == hub_cache.dir / "artifacts" / "sha256" / DATA_SHA
    assert res.path.read_bytes() == DATA
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o444
    assert blobs(hub_cache) == [res.path]
    assert tmp_entries(hub_cache) == []


def test_locked_download_then_cached_reuse_needs_no_network(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/models/resnet.pth", DATA)
    first = fetch(url, hub_cache, expected=LOCKED)
    assert not first.from_cache
    server.clear_log()
    again = fetch(url, hub_cache, expected=LOCKED)
    assert again.from_cache and again.path == first.path and again.fetched_from is None
    assert server.requests == [] and server.connections == 0


def test_offline_serves_cached_and_refuses_uncached_without_connecting(
    server: ArtifactServer, hub_cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.put("/models/resnet.pth", DATA)
    other = server.put("/models/other.pth", b"other")
    fetch(url, hub_cache, expected=LOCKED)
    server.clear_log()
    assert fetch(url, hub_cache, expected=LOCKED, offline=True).from_cache
    with pytest.raises(OfflineError) as exc:
        fetch(other, hub_cache, expected=ArtifactEntry(hashlib.sha256(b"other").hexdigest(), 5), offline=True)
    assert exc.value.code == "offline"
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    with pytest.raises(OfflineError):
        fetch(other, hub_cache)
    assert fetch(url, hub_cache, expected=LOCKED).from_cache
    assert server.connections == 0
    assert blobs(hub_cache) == [hub_cache.dir / "artifacts" / "sha256" / DATA_SHA]


def test_policy_mirror_fetches_from_mirror_and_keeps_original_url(server: ArtifactServer, hub_cache: Cache) -> None:
    server.put("/pt/models/resnet.pth", DATA)
    original = "https://download.example.invalid/models/resnet.pth"
    mirrors = parse_mirrors({"https://download.example.invalid/": server.url("/pt/")}, None)
    # The mirror's own host (127.0.0.1) is exempt from artifacts.hosts; the original host is checked.
    res = fetch(original, hub_cache, expected=LOCKED, mirrors=mirrors, hosts=["download.example.invalid"])
    assert res.url == original
    assert res.fetched_from == server.url("/pt/models/resnet.pth")
    assert res.sha256 == DATA_SHA
    assert [r.path for r in server.requests] == ["/pt/models/resnet.pth"]


def test_original_host_still_checked_when_mirrored(server: ArtifactServer, hub_cache: Cache) -> None:
    server.put("/pt/models/resnet.pth", DATA)
    mirrors = {"https://download.example.invalid/": server.url("/pt/")}
    with pytest.raises(ArtifactNotAllowed):
        fetch("https://download.example.invalid/models/resnet.pth", hub_cache, mirrors=mirrors, hosts=["x.org"])
    assert server.connections == 0


def test_env_mirror_longest_prefix_wins(
    server: ArtifactServer,
    other_server: ArtifactServer,
    hub_cache: Cache,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.put("/long/resnet.pth", DATA)
    other_server.put("/short/models/resnet.pth", b"wrong mirror")
    env = json.dumps({"https://download.example.invalid/models/": server.url("/long/")})
    monkeypatch.setenv("SECUREHUB_MIRRORS", env)
    mirrors = parse_mirrors(
        {"https://download.example.invalid/": other_server.url("/short/")},
        os.environ["SECUREHUB_MIRRORS"],
    )
    res = fetch(
        "https://download.example.invalid/models/resnet.pth",
        hub_cache,
        mirrors=mirrors,
        expected=LOCKED,
        hosts=["*"],
    )
    assert res.fetched_from == server.url("/long/resnet.pth")
    assert other_server.connections == 0


def test_mirrored_content_is_checked_against_the_lock(server: ArtifactServer, hub_cache: Cache) -> None:
    server.put("/pt/resnet.pth", b"a mirror serving something else")
    mirrors = {"https://download.example.invalid/": server.url("/pt/")}
    with pytest.raises(HashMismatch):
        fetch(
            "https://download.example.invalid/resnet.pth",
            hub_cache,
            mirrors=mirrors,
            expected=LOCKED,
            hosts=["*"],
        )
    assert blobs(hub_cache) == []


def test_same_host_redirect_is_followed(server: ArtifactServer, hub_cache: Cache) -> None:
    target = server.put("/real/resnet.pth", DATA)
    url = server.add_redirect("/resnet.pth", "/real/resnet.pth", 302)
    res = fetch(url, hub_cache, expected=LOCKED)
    assert res.url == url and res.sha256 == DATA_SHA
    assert [r.path for r in server.requests] == ["/resnet.pth", "/real/resnet.pth"]
    assert target != url


def test_explicit_hash_prefix(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/resnet.pth", DATA)
    assert fetch(url, hub_cache, hash_prefix=DATA_SHA[:10].upper()).sha256 == DATA_SHA
    wrong = "0" * 8 if not DATA_SHA.startswith("0" * 8) else "f" * 8
    other = server.put("/other.pth", DATA + b"x")
    with pytest.raises(HashMismatch):
        fetch(other, hub_cache, hash_prefix=wrong)
    assert blobs(hub_cache) == [hub_cache.dir / "artifacts" / "sha256" / DATA_SHA]
    server.clear_log()
    with pytest.raises(ArtifactNotAllowed):
        fetch(other, hub_cache, hash_prefix="abc")  # refused before any connection
    assert server.connections == 0


def test_http_error_is_network_error_with_status(server: ArtifactServer, hub_cache: Cache) -> None:
    with pytest.raises(NetworkError) as exc:
        fetch(server.url("/missing.pth"), hub_cache)
    assert exc.value.code == "network" and "404" in str(exc.value)
    server.set_status("/broken.pth", 500)
    with pytest.raises(NetworkError) as exc:
        fetch(server.url("/broken.pth"), hub_cache)
    assert "500" in str(exc.value)
    assert blobs(hub_cache) == [] and tmp_entries(hub_cache) == []


def test_stalled_server_is_network_error(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/slow.pth", DATA)
    server.set_stall("/slow.pth", after_bytes=100)
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache, expected=LOCKED, read_timeout_s=0.5)
    assert "timeout" in str(exc.value)
    assert blobs(hub_cache) == [] and tmp_entries(hub_cache) == []


def test_connection_refused_is_network_error(hub_cache: Cache) -> None:
    with pytest.raises(NetworkError):
        fetch("http://127.0.0.1:9/x.pth", hub_cache)  # discard port: nothing listens


def test_progress_is_quiet_without_a_terminal(
    server: ArtifactServer, hub_cache: Cache, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.put("/resnet.pth", DATA)
    fetch(url, hub_cache, progress=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


_WORKER = """
import json, sys
from pathlib import Path
from securehub.store.cache import Cache
from securehub.fetch.artifacts import download
from securehub.config.lockfile import ArtifactEntry

url, root, sha, size = sys.argv[1:5]
res = download(url, expected=ArtifactEntry(sha, int(size)), hash_prefix=None, hosts=["127.0.0.1"],
               max_bytes=1 << 30, mirrors={}, store=Cache(Path(root)), progress=False, offline=False)
print(json.dumps({"path": str(res.path), "from_cache": res.from_cache}))
"""


def _worker(url: str, hub_cache: Cache, expected: ArtifactEntry) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, url, str(hub_cache.dir), expected.sha256, str(expected.size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env=env,
    )


def test_concurrent_downloads_in_8_processes_leave_one_blob(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/models/resnet.pth", DATA)
    procs = [_worker(url, hub_cache, LOCKED) for _ in range(8)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    assert {r["path"] for r in results} == {str(hub_cache.dir / "artifacts" / "sha256" / DATA_SHA)}
    assert sum(not r["from_cache"] for r in results) == 1
    assert len(server.requests_for("/models/resnet.pth")) == 1  # the per-digest lock serialised them
    assert blobs(hub_cache) == [hub_cache.dir / "artifacts" / "sha256" / DATA_SHA]
    assert tmp_entries(hub_cache) == []


def test_killed_download_leaves_nothing_trusted(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/models/resnet.pth", DATA)
    server.set_stall("/models/resnet.pth", after_bytes=150_000)
    proc = _worker(url, hub_cache, LOCKED)
    try:
        deadline = time.monotonic() + 60
        while not tmp_entries(hub_cache):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the worker never started downloading"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert blobs(hub_cache) == []  # nothing was admitted
    junk = tmp_entries(hub_cache)
    assert len(junk) == 1  # only a partial file in tmp/, which nothing trusts
    # A later load re-downloads from scratch and succeeds; prune clears the dead process's junk.
    server.put("/models/resnet.pth", DATA)
    res = fetch(url, hub_cache, expected=LOCKED)
    assert not res.from_cache and res.path.read_bytes() == DATA
    assert tmp_entries(hub_cache) == junk
    old = time.time() - 7200
    os.utime(junk[0], (old, old))
    hub_cache.prune()
    assert tmp_entries(hub_cache) == []
    assert blobs(hub_cache) == [res.path]


class _FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(server: ArtifactServer, hub_cache: Cache, monkeypatch: pytest.MonkeyPatch) -> None:
    url = server.put("/resnet.pth", DATA)
    term = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    fetch(url, hub_cache, progress=True)
    assert "resnet.pth:" in term.getvalue() and "B/s" in term.getvalue()
    quiet = _FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    fetch(server.put("/other.pth", DATA + b"1"), hub_cache, progress=False)
    assert quiet.getvalue() == ""


def test_prefix_contradicting_the_lock_refused_before_connecting(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/resnet.pth", DATA)
    wrong = "0" * 8 if not DATA_SHA.startswith("0" * 8) else "f" * 8
    with pytest.raises(HashMismatch):
        fetch(url, hub_cache, expected=LOCKED, hash_prefix=wrong)
    assert server.connections == 0


def test_effective_mirrors_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREHUB_MIRRORS", json.dumps({"https://a/": "https://b/"}))
    assert effective_mirrors({"https://c/": "https://d/"}) == {
        "https://a/": "https://b/",
        "https://c/": "https://d/",
    }
