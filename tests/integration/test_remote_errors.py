"""Remotes that answer but can never serve a pinned commit get their own message and code (issue 12).

``network`` ("check the network") sent users the wrong way for a dumb-HTTP git server and for a
``git+file:///`` path that does not exist or is not a repository: neither is cured by a retry, so
both are ``repo-not-allowed`` with a message naming what is needed. Nothing is written or cached.
Real git, real loopback servers, the CLI as a subprocess.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._servers import ArtifactServer, RepoHandle, git
from tests.integration.test_lock_cli import Cli, cli, repo

__all__ = ["cli", "repo"]  # fixtures, re-exported for pytest


def _serve_dumb(repo: RepoHandle, server: ArtifactServer) -> str:
    """The bare repo as static files (git's dumb HTTP protocol): ``info/refs`` and every object file."""
    git("update-server-info", cwd=repo.path)
    for path in sorted(p for p in repo.path.rglob("*") if p.is_file()):
        server.put(f"/dumb/models.git/{path.relative_to(repo.path)}", path.read_bytes())
    return server.url("/dumb/models.git")


def _nothing_written(cli: Cli) -> None:
    assert not cli.lock_path.exists()
    assert cli.trees() == []


def test_dumb_http_git_server_is_named_not_a_network_problem(
    cli: Cli, repo: RepoHandle, artifact_server: ArtifactServer
) -> None:
    url = _serve_dumb(repo, artifact_server)
    r = cli("lock", f"git+{url}@v1")
    assert (r.code, r.codes()) == (1, ["repo-not-allowed"])
    assert "dumb HTTP" in r.errors[0] and "smart HTTP" in r.errors[0]
    assert "check the network" not in r.errors[0].lower()
    assert artifact_server.requests  # it did answer: the failure is the protocol, not the network
    _nothing_written(cli)


@pytest.mark.parametrize("kind", ["missing", "plain-dir", "file"])
def test_git_file_path_that_is_not_a_repository_says_so(cli: Cli, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "nope.git"
    if kind == "plain-dir":
        target.mkdir()
    elif kind == "file":
        target.write_text("not a repo\n")
    r = cli("lock", f"git+file://{target}@v1")
    assert (r.code, r.codes()) == (1, ["repo-not-allowed"])
    assert f"expected a local git repository at '{target}'" in r.errors[0]
    assert ("no such path" in r.errors[0]) == (kind == "missing")
    assert "check the network" not in r.errors[0].lower()
    _nothing_written(cli)


def test_unreachable_http_remote_is_still_network(cli: Cli) -> None:
    r = cli("lock", "git+http://127.0.0.1:9/nobody/none.git@v1")
    assert (r.code, r.codes()) == (1, ["network"])
    assert "git ls-remote failed" in r.errors[0]
    _nothing_written(cli)
