"""Hostile git servers (smart HTTP, protocol v2): stall mid-pack, endless pack, endless ref advertisement.

Issue 13, item 4.

The attack that needed a fix: ``run_git`` ran git with ``subprocess.run(timeout=300)``, which on
timeout kills *git* only. git's helpers (``git-remote-http``, ``index-pack``) were left running,
still reading the stalled socket or still writing the endless pack into a deleted directory,
after the load had already failed; and 300 s could not be changed. Now every git call runs in its
own process group, SIGKILLed when the call ends; network calls are bounded by the policy key
``repos.git_timeout_s``; stdout is capped.

Time alone left git's memory (an endless ref advertisement, which ``ls-remote`` collects before
printing) and an endless pack's disk use growing until the timeout. Now every git process runs
under ``RLIMIT_AS`` (``repos.git_memory_mb``) and ``RLIMIT_FSIZE`` (the largest pack a tree within
``repos.max_tree_bytes``/``max_files`` can need): with a generous timeout, those bounds stop it.

Each test asserts the code (``network``), that the bound held (pytest-timeout markers, never
timed assertions), that no process of that git call is left (none has its working directory under
the test's private temp dir, none names the server in its command line), and that nothing was
admitted: no tree, no file under the cache's ``tmp/``, no hub.lock, one audit line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import securehub
from securehub.errors import NetworkError, SecureHubError
from securehub.resolve import git as _git
from securehub.resolve.git import ls_remote, network_timeout
from tests._hub_helpers import write_policy
from tests._servers import GitServer, RepoFactory

SHA = "1234567890abcdef1234567890abcdef12345678"
FLUSH, DELIM = b"0000", b"0001"


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def _blob_object(payload: bytes) -> bytes:
    """One undeltified blob in pack format: type/size header, then the zlib stream."""
    size = len(payload)
    first = (3 << 4) | (size & 0x0F)
    size >>= 4
    header = bytearray()
    while True:
        header.append(first | (0x80 if size else 0))
        if not size:
            break
        first, size = size & 0x7F, size >> 7
    return bytes(header) + zlib.compress(payload)


class _HostileHandler(BaseHTTPRequestHandler):
    server: _HostileServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _start(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()  # HTTP/1.0, no Content-Length: the body ends when the server closes

    def do_GET(self) -> None:
        self._start("application/x-git-upload-pack-advertisement")
        self.wfile.write(
            pkt(b"# service=git-upload-pack\n") + FLUSH + pkt(b"version 2\n") + pkt(b"agent=git/2.39\n")
            + pkt(b"ls-refs\n") + pkt(b"fetch=shallow\n") + pkt(b"object-format=sha1\n") + FLUSH
        )  # fmt: skip

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self._start("application/x-git-upload-pack-result")
        with contextlib.suppress(OSError):  # the client (killed git) hangs up: that is the point
            if b"command=ls-refs" in body:
                self._refs()
            else:
                self._pack()

    def _refs(self) -> None:
        if self.server.mode != "endless-refs":
            self.wfile.write(pkt(f"{SHA} refs/heads/main\n".encode()) + pkt(f"{SHA} refs/tags/v1\n".encode()) + FLUSH)
            return
        i = 0
        while not self.server.stopping.is_set():  # an endless ref advertisement
            self.wfile.write(b"".join(pkt(f"{SHA} refs/tags/t{i + k}\n".encode()) for k in range(1000)))
            i += 1000

    def _pack(self) -> None:
        self.wfile.write(pkt(b"shallow-info\n") + pkt(f"shallow {SHA}\n".encode()) + DELIM + pkt(b"packfile\n"))
        # A million objects announced (index-pack refuses absurd counts up front); at the pace below
        # that is ~1 GB over ~10 minutes: endless for a 3 s bound, gentle on a shared disk.
        self.wfile.write(pkt(b"\x01PACK" + (2).to_bytes(4, "big") + (1_000_000).to_bytes(4, "big")))
        sent = 0
        while not self.server.stopping.is_set():
            if self.server.mode == "stall-mid-pack" and sent >= 64:
                self.server.stopping.wait(600)  # stall: the connection stays open, nothing more comes
                return
            self.wfile.write(pkt(b"\x01" + _blob_object(os.urandom(1000))))
            self.wfile.flush()
            sent += 1
            time.sleep(0.0005)


class _HostileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _HostileHandler)
        self.mode = mode
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/evil.git"


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[_HostileServer]:
    server = _HostileServer(request.param)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.stopping.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """git runs in a private dir under ``tempfile.gettempdir()``: make that this test's own dir."""
    d = tmp_path / "gittmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _leftovers(private: Path, server: _HostileServer) -> list[int]:
    """Processes of this test's git calls still alive: cwd under ``private`` or the server in argv."""
    port = str(server.server_address[1]).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes()
            if cwd.startswith(str(private)) or b"127.0.0.1:" + port in cmdline:
                found.append(int(entry.name))
    return found


def _assert_no_leftovers(private: Path, server: _HostileServer) -> None:
    time.sleep(0.2)  # let the kernel finish tearing down the killed group
    left = _leftovers(private, server)
    for pid in left:  # never leak them into the rest of the session, even when the test fails
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], f"git processes outlived the call: {left}"


def _files(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if not p.is_dir()) if d.exists() else []


# ------------------------------------------------------------------ end to end: securehub.load


@pytest.mark.timeout(90)
@pytest.mark.parametrize("hostile", ["stall-mid-pack", "endless-pack", "endless-refs"], indirect=True)
def test_hostile_git_server_load_fails_with_network_at_the_policy_bound(
    hostile: _HostileServer, private_tmp: Path, hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # lock.mode auto would write ./hub.lock
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(audit))
    policy = write_policy(tmp_path / "p.yaml", "default", repos={"git_timeout_s": 3})
    message = _refused_cleanly(hostile, policy, private_tmp, hub_dir, tmp_path, audit)
    assert "within 3 s" in message and "repos.git_timeout_s" in message


def _refused_cleanly(
    hostile: _HostileServer, policy: Path, private_tmp: Path, hub_dir: Path, tmp_path: Path, audit: Path
) -> str:
    """Load from ``hostile``: ``network``, no git process left, nothing admitted, one audit line."""
    with pytest.raises(SecureHubError) as info:
        securehub.load(f"git+{hostile.url}@v1", "net", policy=str(policy), verbose=False)
    assert info.value.code == "network", f"{info.value.code}: {info.value}"
    _assert_no_leftovers(private_tmp, hostile)
    assert _files(hub_dir / "trees") == [] and _files(hub_dir / "tmp") == []
    assert not (tmp_path / "hub.lock").exists()
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (record["outcome"], record["code"]) == ("error", "network")
    return str(info.value)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("hostile", "repos", "bound"),
    [
        # ~2 MB of pack allowed for a 1 MiB tree of at most 10 files: index-pack dies of SIGXFSZ.
        ("endless-pack", {"max_tree_bytes": 1 << 20, "max_files": 10}, "repos.max_tree_bytes"),
        # ls-remote keeps every advertised ref in memory before printing one: malloc fails.
        ("endless-refs", {"git_memory_mb": 64}, "repos.git_memory_mb"),
    ],
    indirect=["hostile"],
)
def test_git_memory_and_disk_are_bounded_before_the_timeout(
    hostile: _HostileServer,
    repos: dict[str, int],
    bound: str,
    private_tmp: Path,
    hub_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a timeout far beyond the test's own (pytest-timeout), only the rlimits can stop git."""
    monkeypatch.chdir(tmp_path)
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(audit))
    policy = write_policy(tmp_path / "p.yaml", "default", repos={"git_timeout_s": 3600, **repos})
    message = _refused_cleanly(hostile, policy, private_tmp, hub_dir, tmp_path, audit)
    assert bound in message, message
    assert "did not finish within" not in message


# ------------------------------------------------------------------ the runner, directly


@pytest.mark.timeout(60)
@pytest.mark.parametrize("hostile", ["endless-pack"], indirect=True)
def test_endless_pack_index_pack_is_killed_with_git(hostile: _HostileServer, private_tmp: Path, tmp_path: Path) -> None:
    """The process group, without the pipeline: the helpers die with git, the work dir stops growing."""
    from securehub.fetch.gitfetch import fetch_commit

    work = tmp_path / "work"
    work.mkdir()
    with network_timeout(2), pytest.raises(NetworkError) as info:
        fetch_commit(hostile.url, SHA, work)
    assert info.value.code == "network"
    _assert_no_leftovers(private_tmp, hostile)
    size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
    time.sleep(1.0)
    assert sum(p.stat().st_size for p in work.rglob("*") if p.is_file()) == size, "something still writes"


def test_ref_advertisement_over_the_output_cap_is_network(
    git_server: GitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = RepoFactory(git_server).make_repo(f"hostile/refs-{os.getpid()}", {"hubconf.py": "x = 1\n"})
    for i in range(40):
        repo.tag(f"t{i}")
    monkeypatch.setattr(_git, "MAX_OUTPUT_BYTES", 1000)  # 40 tags print ~2.5 kB
    with pytest.raises(NetworkError) as info:
        ls_remote(repo.url)
    assert "wrote more than 1000 bytes on stdout" in str(info.value)


def test_network_timeout_rejects_a_non_positive_bound() -> None:
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError), network_timeout(bad):
            pass


def test_git_memory_policy_key_is_strictly_validated() -> None:
    for bad in ("0", "63", "-1", "true", '"4096"', "1.5"):
        with pytest.raises(SecureHubError) as exc:
            securehub.Policy.from_yaml(f"version: 1\nrepos:\n  git_memory_mb: {bad}\n", source="p.yaml")
        assert exc.value.code == "policy-invalid"
        assert "repos.git_memory_mb" in str(exc.value)
    for name in ("strict", "default", "permissive"):
        assert securehub.Policy.load(name).repos.git_memory_mb == 4096


def test_every_git_process_runs_under_the_limits() -> None:
    """What a process git starts (here an alias's shell) reads in /proc: the limits, soft and hard."""
    with _git.git_limits(128, 5 * 1024 * 1024):
        out = _git.run_git(["-c", "alias.limits=!cat /proc/self/limits", "limits"], timeout_s=30).stdout
    rows = {line[:26].strip(): line[26:].split()[:2] for line in out.splitlines()[1:]}
    assert rows["Max address space"] == [str(128 * 1024 * 1024)] * 2, rows
    assert rows["Max file size"] == [str(5 * 1024 * 1024)] * 2, rows
    assert rows["Max core file size"] == ["0", "0"], rows


def test_runner_feeds_a_large_stdin_while_reading_the_output() -> None:
    """The bounded read loop also writes ``input_bytes`` (non-blocking): no deadlock on a full pipe."""
    import hashlib

    data = b"x" * (3 << 20)
    result = _git.run_git(["hash-object", "--stdin"], input_bytes=data, timeout_s=30)
    assert result.stdout.strip() == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324
