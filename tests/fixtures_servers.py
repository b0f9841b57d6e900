"""pytest fixtures for the loopback test servers. Loaded from tests/conftest.py via ``pytest_plugins``.

- ``git_server`` (session): smart-HTTP git server on 127.0.0.1 serving a temp root of bare repos.
- ``other_git_server`` (session): the same root served from 127.0.0.2 - "another host".
- ``repo_factory`` (function): makes repos on ``git_server``; clears both git servers' request logs
  on setup and deletes its repos on teardown.
- ``artifact_server`` / ``other_artifact_server`` (function): artifact servers on 127.0.0.1 / 127.0.0.2.
- ``hub_dir`` (function): a fresh hub dir as ``SECUREHUB_DIR``; clears ``GITHUB_TOKEN``,
  every ``SECUREHUB_*`` variable and any ``set_dir()`` override.
- ``github_url`` (function): ``SECUREHUB_GITHUB_URL`` pointing at ``git_server``; returns the URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._servers import ArtifactServer, GitServer, RepoFactory


@pytest.fixture(scope="session")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = GitServer(tmp_path_factory.mktemp("git-root"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def other_git_server(git_server: GitServer) -> Iterator[GitServer]:
    server = GitServer(git_server.root, host="127.0.0.2")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def repo_factory(git_server: GitServer) -> Iterator[RepoFactory]:
    factory = RepoFactory(git_server)
    git_server.clear_log()
    yield factory
    factory.cleanup()


@pytest.fixture
def artifact_server() -> Iterator[ArtifactServer]:
    server = ArtifactServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def other_artifact_server() -> Iterator[ArtifactServer]:
    server = ArtifactServer(host="127.0.0.2")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import securehub._util.hubdir as hubdir_mod

    for name in list(os.environ):
        if name.startswith("SECUREHUB_") or name == "GITHUB_TOKEN":
            monkeypatch.delenv(name)
    monkeypatch.setattr(hubdir_mod, "_override", None)
    d = tmp_path / "hub"
    d.mkdir()
    monkeypatch.setenv("SECUREHUB_DIR", str(d))
    return d


@pytest.fixture
def github_url(hub_dir: Path, git_server: GitServer, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", git_server.base_url)
    return git_server.base_url
