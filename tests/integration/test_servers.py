"""The test fixtures themselves: git smart-HTTP server, repo factory, artifact server."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests._servers import ArtifactServer, Exec, GitServer, RepoFactory, Symlink, clean_git_env


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=clean_git_env(), capture_output=True, text=True, check=False)


# --- git server + repo factory ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["0", "2"])
def test_clone_over_smart_http(repo_factory: RepoFactory, git_server: GitServer, tmp_path: Path, version: str) -> None:
    repo = repo_factory.make_repo(
        "srv/clone", {"hubconf.py": "x = 1\n", "bin/tool": Exec("#!/bin/sh\n"), "link": Symlink("hubconf.py")}
    )
    for i in range(150):  # enough wants to make git gzip its upload-pack request
        repo.branch(f"feature/branch-number-{i:04d}")
    proc = _git("-c", f"protocol.version={version}", "clone", "-q", "--mirror", repo.url, str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert _git("--git-dir", str(tmp_path / "c"), "rev-parse", "refs/heads/main").stdout.strip() == repo.head_commit()
    posts = [r for r in git_server.requests_for("srv/clone") if r.method == "POST"]
    assert posts
    if version == "2":
        assert all(r.header("git-protocol") == "version=2" for r in posts)
    assert any(r.header("content-encoding") == "gzip" for r in posts)


def test_fetch_by_sha_works_for_reachable_commits(repo_factory: RepoFactory, tmp_path: Path) -> None:
    repo = repo_factory.make_repo("srv/bysha", {"a": "1"})
    fork = repo.fork_commit({"a": "2"})
    _git("init", "-q", str(tmp_path / "w"))
    for sha in (repo.head_commit(), fork):
        proc = _git("-C", str(tmp_path / "w"), "fetch", "-q", repo.url, sha)
        assert proc.returncode == 0, proc.stderr
    assert "refs/pull/1/head" in repo.refs()
    assert fork not in {v for k, v in repo.refs().items() if k.startswith(("refs/heads/", "refs/tags/"))}


def test_modes_symlinks_and_deterministic_shas(repo_factory: RepoFactory) -> None:
    files = {"hubconf.py": "x\n", "run.sh": Exec("#!/bin/sh\n"), "sub/link": Symlink("../hubconf.py")}
    first = repo_factory.make_repo("srv/modes", files).head_commit()
    repo = repo_factory.make_repo("srv/modes", files)  # wiped and rebuilt: same SHA
    assert repo.head_commit() == first
    listing = repo.git("ls-tree", "-r", "HEAD")
    assert "100755 blob" in listing and "\trun.sh" in listing
    assert "120000 blob" in listing and "\tsub/link" in listing
    assert repo.git("cat-file", "-p", "HEAD:sub/link") == "../hubconf.py"


def test_commit_update_delete_replace(repo_factory: RepoFactory) -> None:
    repo = repo_factory.make_repo("srv/edit", {"a": "1", "b": "2"})
    repo.commit({"a": None, "c": "3"})
    assert repo.git("ls-tree", "--name-only", "HEAD").split() == ["b", "c"]
    repo.commit({"z": "9"}, replace=True)
    assert repo.git("ls-tree", "--name-only", "HEAD").split() == ["z"]


def test_tags_branches_head(repo_factory: RepoFactory) -> None:
    repo = repo_factory.make_repo("srv/refs", {"a": "1"})
    c1 = repo.head_commit()
    tag_obj = repo.tag("v1", annotated=True)
    assert tag_obj != c1 and repo.git("rev-parse", "v1^{commit}") == c1
    c2 = repo.commit({"a": "2"})
    repo.force_tag("v1", c2)
    assert repo.git("rev-parse", "v1^{commit}") == c2
    repo.branch("dev", c1)
    repo.set_head("dev")
    assert repo.git("symbolic-ref", "HEAD") == "refs/heads/dev"


def test_raw_tree_with_unsafe_names(repo_factory: RepoFactory) -> None:
    repo = repo_factory.make_repo("srv/raw", {"hubconf.py": "x\n"})
    sha = repo.commit_raw_tree(
        [
            ("../escape.py", "100644", "x"),
            ("a/.git/config", "100644", "y"),
            ("a\\b", "100644", "z"),
            ("hubconf.py", "120000", "/etc/passwd"),
        ],
        branch="raw",
        tag="raw-tag",
    )
    top = repo.git("cat-file", "-p", f"{sha}^{{tree}}")
    assert "\t..\n" in top + "\n"
    assert "120000 blob" in top
    assert repo.refs()["refs/tags/raw-tag"] == sha


def test_server_logs_connections_and_requests(git_server: GitServer) -> None:
    git_server.clear_log()
    assert git_server.connections == 0
    with socket.create_connection(("127.0.0.1", git_server.port)):
        pass
    conn = http.client.HTTPConnection("127.0.0.1", git_server.port)
    conn.request("GET", "/none/such.git/info/refs?service=git-upload-pack", headers={"X-Probe": "1"})
    assert conn.getresponse().status == 404
    conn.close()
    assert git_server.connections >= 2
    assert git_server.requests[-1].header("x-probe") == "1"


# --- artifact server ----------------------------------------------------------------------------


def _get(server: ArtifactServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def test_artifact_get_range_and_swap(artifact_server: ArtifactServer) -> None:
    data = bytes(range(256)) * 4
    url = artifact_server.put("/w/model.bin", data)
    assert url == f"{artifact_server.base_url}/w/model.bin"
    assert _get(artifact_server, "/w/model.bin")[2] == data
    status, headers, body = _get(artifact_server, "/w/model.bin", {"Range": "bytes=10-19"})
    assert (status, body, headers["content-range"]) == (206, data[10:20], f"bytes 10-19/{len(data)}")
    assert _get(artifact_server, "/w/model.bin", {"Range": "bytes=1000-"})[2] == data[1000:]
    assert _get(artifact_server, "/w/model.bin", {"Range": "bytes=-5"})[2] == data[-5:]
    assert _get(artifact_server, "/w/model.bin", {"Range": "bytes=5000-"})[0] == 416
    artifact_server.put("/w/model.bin", b"swapped")
    assert _get(artifact_server, "/w/model.bin")[2] == b"swapped"
    assert _get(artifact_server, "/missing")[0] == 404


def test_artifact_redirect_and_header_log(
    artifact_server: ArtifactServer, other_artifact_server: ArtifactServer
) -> None:
    target = other_artifact_server.put("/real.bin", b"real")
    artifact_server.add_redirect("/start.bin", target, code=301)
    status, headers, _ = _get(artifact_server, "/start.bin", {"Authorization": "Bearer secret"})
    assert (status, headers["location"]) == (301, target)
    assert artifact_server.requests_for("/start.bin")[0].header("authorization") == "Bearer secret"
    assert other_artifact_server.requests == []
    assert other_artifact_server.host == "127.0.0.2"


def test_artifact_endless_and_stall(artifact_server: ArtifactServer) -> None:
    artifact_server.set_endless("/endless")
    conn = http.client.HTTPConnection("127.0.0.1", artifact_server.port, timeout=10)
    conn.request("GET", "/endless")
    resp = conn.getresponse()
    assert resp.getheader("Content-Length") is None
    assert len(resp.read(1_000_000)) == 1_000_000  # far more than anything was put()
    conn.close()

    artifact_server.put("/slow", b"x" * 100)
    artifact_server.set_stall("/slow", after_bytes=10)
    conn = http.client.HTTPConnection("127.0.0.1", artifact_server.port, timeout=0.5)
    conn.request("GET", "/slow")
    resp = conn.getresponse()
    assert resp.getheader("Content-Length") == "100"
    assert resp.read(10) == b"x" * 10
    with pytest.raises(TimeoutError):
        resp.read(1)
    conn.close()


def test_fixture_env_cleanup(hub_dir: Path, github_url: str, git_server: GitServer) -> None:
    assert os.environ["SECUREHUB_DIR"] == str(hub_dir)
    assert os.environ["SECUREHUB_GITHUB_URL"] == github_url == git_server.base_url
    assert "GITHUB_TOKEN" not in os.environ
