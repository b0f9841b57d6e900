"""Shared helpers for the artifact-download tests (parent downloader against loopback servers).

Fixtures here alias the shared ones in ``tests/fixtures_servers.py`` under the names the
download tests use. pytest registers a fixture under its ``name=``, so a test module makes
them available by importing the ``*_fixture`` functions (hence the ``noqa: F401`` there).

- ``clean_download_env`` (function, autouse where imported): no ``SECUREHUB_OFFLINE`` / ``SECUREHUB_MIRRORS``.
- ``server`` / ``other_server`` (function): ``artifact_server`` (127.0.0.1) / ``other_artifact_server`` (127.0.0.2).
- ``hub_cache`` (function): a :class:`Cache` on the fresh ``hub_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from securehub.fetch.artifacts import DownloadResult, download
from securehub.store.cache import Cache
from tests._servers import ArtifactServer


@pytest.fixture(autouse=True, name="clean_download_env")
def clean_download_env_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECUREHUB_OFFLINE", "SECUREHUB_MIRRORS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(name="server")
def server_fixture(artifact_server: ArtifactServer) -> ArtifactServer:
    """An artifact server on 127.0.0.1."""
    return artifact_server


@pytest.fixture(name="other_server")
def other_server_fixture(other_artifact_server: ArtifactServer) -> ArtifactServer:
    """Another host: an artifact server on 127.0.0.2."""
    return other_artifact_server


@pytest.fixture(name="hub_cache")
def hub_cache_fixture(hub_dir: Path) -> Cache:
    return Cache(hub_dir)


def fetch(url: str, hub_cache: Cache, **kw: Any) -> DownloadResult:
    """``download(url)`` into ``hub_cache`` with test defaults (loopback host allowed, no mirrors,
    no progress, online, 5 s read timeout); ``kw`` overrides any of them."""
    args: dict[str, Any] = {
        "expected": None,
        "hash_prefix": None,
        "hosts": ["127.0.0.1"],
        "max_bytes": 10 * 1024 * 1024,
        "mirrors": {},
        "store": hub_cache,
        "progress": False,
        "offline": False,
        "read_timeout_s": 5.0,
    }
    args.update(kw)
    return download(url, **args)


def blobs(hub_cache: Cache) -> list[Path]:
    """The blobs stored in the cache's artifacts/sha256/, sorted."""
    return sorted((hub_cache.dir / "artifacts" / "sha256").iterdir())


def tmp_entries(hub_cache: Cache) -> list[Path]:
    """Files left in the cache's tmp/ (partial downloads)."""
    return sorted(p for p in (hub_cache.dir / "tmp").rglob("*") if not p.is_dir())
