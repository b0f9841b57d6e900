"""Shared helpers for the end-to-end API tests (tests/integration/test_api_*.py, test_lock_entrypoints.py,
tests/attacks/test_malicious_*.py).

Everything runs against the real loopback git server, a real artifact server, the real sandbox and
real torch. What is here:

- :class:`HubEnv` / :func:`hub_env_context` - a module-scoped environment (hub dir, git URL, mirror of
  ``https://weights.example.com/`` to the artifact server, audit log) so several tests can share
  repos, locks and cache; function-level ``monkeypatch`` still works on top of it.
- :func:`publish` - make a repo on the git server from ``{path: text}`` and tag it.
- :func:`write_policy` - a policy YAML extending a built-in with overrides.
- :class:`Snapshot` - the state a refused load must leave unchanged (trees/, artifacts/, hub.lock).
- :class:`TcpListener` / :class:`UdpListener` - loopback listeners that count what reaches them.
- :data:`NEEDS_FULL_SANDBOX` - skip marker when the machine cannot give full isolation.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from securehub.errors import SecureHubError
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.spawn import check_available
from tests._servers import ArtifactServer, GitServer, RepoFactory, RepoHandle

__all__ = [
    "MIRRORED",
    "NEEDS_FULL_SANDBOX",
    "HubEnv",
    "Snapshot",
    "TcpListener",
    "UdpListener",
    "audit_records",
    "error_of",
    "hub_env_context",
    "publish",
    "write_policy",
]

MIRRORED = "https://weights.example.com/"

NEEDS_FULL_SANDBOX = pytest.mark.skipif(
    check_available(SandboxConfig()).level != "full",
    reason="full sandbox isolation is not available on this machine",
)


@dataclass
class HubEnv:
    """One test module's world: servers, a hub dir and the env pointing securehub at them."""

    root: Path
    hub: Path
    audit_log: Path
    git: GitServer
    artifacts: ArtifactServer
    factory: RepoFactory

    def weights_url(self, path: str) -> str:
        """The public (mirrored) URL the hubconf uses for ``path`` on the artifact server."""
        return MIRRORED + path.lstrip("/")

    def put(self, path: str, data: bytes) -> str:
        """Serve ``data`` at ``path``; returns the public (mirrored) URL."""
        self.artifacts.put("/" + path.lstrip("/"), data)
        return self.weights_url(path)

    def spec(self, repo: RepoHandle, tag: str = "v1") -> str:
        return f"{repo.full_name}:{tag}"

    def unique(self, stem: str) -> str:
        """A repo name no other test uses (the git server is shared by the whole session)."""
        return f"e2e/{stem}-{uuid.uuid4().hex[:8]}"

    def clear_logs(self) -> None:
        self.git.clear_log()
        self.artifacts.clear_log()


@contextlib.contextmanager
def hub_env_context(root: Path, git: GitServer) -> Iterator[HubEnv]:
    """Set up a :class:`HubEnv` under ``root`` for the duration of the block (env restored after)."""
    import securehub._util.hubdir as hubdir_mod

    artifacts = ArtifactServer()
    artifacts.start()
    factory = RepoFactory(git)
    mp = pytest.MonkeyPatch()
    try:
        for name in list(os.environ):
            if name.startswith("SECUREHUB_") or name in ("GITHUB_TOKEN", "SECUREHUB_GITHUB_TOKEN"):
                mp.delenv(name)
        mp.setattr(hubdir_mod, "_override", None)
        mp.chdir(root)  # no ./hub.lock from elsewhere is picked up (or written by lock.mode: auto)
        hub = root / "hub"
        hub.mkdir()
        audit = root / "audit.jsonl"
        mp.setenv("SECUREHUB_DIR", str(hub))
        mp.setenv("SECUREHUB_GITHUB_URL", git.base_url)
        mp.setenv("SECUREHUB_AUDIT_LOG", str(audit))
        mp.setenv("SECUREHUB_MIRRORS", json.dumps({MIRRORED: artifacts.base_url + "/"}))
        yield HubEnv(root, hub, audit, git, artifacts, factory)
    finally:
        mp.undo()
        factory.cleanup()
        artifacts.stop()


def publish(
    env: HubEnv, stem: str, files: Mapping[str, str | bytes], *, tag: str = "v1", name: str | None = None
) -> RepoHandle:
    """Create a repo with ``files`` on the git server and an annotated ``tag`` on its commit."""
    repo = env.factory.make_repo(name or env.unique(stem), dict(files))
    repo.tag(tag, annotated=True)
    return repo


def write_policy(path: Path, extends: str = "strict", **sections: Mapping[str, Any]) -> Path:
    """Write a policy file ``extends: <extends>`` with ``sections`` overriding keys; returns ``path``."""
    doc: dict[str, Any] = {"version": 1, "extends": extends}
    doc.update({k: dict(v) for k, v in sections.items()})
    path.write_text(yaml.safe_dump(doc, sort_keys=True))
    return path


def audit_records(env: HubEnv) -> list[dict[str, Any]]:
    if not env.audit_log.exists():
        return []
    return [json.loads(line) for line in env.audit_log.read_text().splitlines()]


def error_of(excinfo: pytest.ExceptionInfo[SecureHubError]) -> tuple[str, str]:
    """``(code, message)`` of a caught securehub error."""
    return excinfo.value.code, str(excinfo.value)


def refused(call: Callable[[], object]) -> tuple[str, str]:
    """``(code, message)`` of the securehub error ``call()`` raises (the test fails if it raises none)."""
    with pytest.raises(SecureHubError) as excinfo:
        call()
    return error_of(excinfo)


def _listing(directory: Path) -> frozenset[str]:
    """Every file and symlink under ``directory``, plus its direct entries (empty dirs don't count deeper)."""
    if not directory.exists():
        return frozenset()
    found = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() or p.is_symlink()}
    found |= {p.name for p in directory.iterdir() if p.name != "sha256"}
    return frozenset(found)


@dataclass(frozen=True)
class Snapshot:
    """What a refused operation must not change: the cache's trees/ and artifacts/, and hub.lock."""

    trees: frozenset[str]
    artifacts: frozenset[str]
    lock: bytes | None

    @classmethod
    def take(cls, hub: Path, lock: Path | None = None) -> Snapshot:
        data = lock.read_bytes() if lock is not None and lock.exists() else None
        return cls(_listing(hub / "trees"), _listing(hub / "artifacts"), data)

    def assert_unchanged(self, hub: Path, lock: Path | None = None) -> None:
        now = Snapshot.take(hub, lock)
        assert now.trees == self.trees, f"new under trees/: {sorted(now.trees - self.trees)}"
        assert now.artifacts == self.artifacts, f"new under artifacts/: {sorted(now.artifacts - self.artifacts)}"
        assert now.lock == self.lock, "hub.lock changed"


class _Listener:
    def __init__(self, kind: int) -> None:
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stream = kind == socket.SOCK_STREAM
        if self._stream:
            self.sock.listen()
        self.sock.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._stream:
                    conn, _ = self.sock.accept()
                    self.received.append(b"<connection>")
                    conn.close()
                else:
                    self.received.append(self.sock.recv(100))
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)
        self.sock.close()


class TcpListener(_Listener):
    """A loopback TCP listener standing in for an attacker's server; ``received`` lists connections."""

    def __init__(self) -> None:
        super().__init__(socket.SOCK_STREAM)


class UdpListener(_Listener):
    """A loopback UDP socket; ``received`` lists datagrams."""

    def __init__(self) -> None:
        super().__init__(socket.SOCK_DGRAM)


#: hubconf source defining ``_forge(edit)``: it runs in the child, so it can wrap the recorder the
#: child runtime uses and let ``edit(root)`` rewrite the config the child sends (a hostile child's
#: lie, which the parent must refuse). Concatenate it into a test's HUBCONF.
FORGE_DESCRIBE = """

def _forge(edit):
    import sys

    runtime = sys.modules["securehub.sandbox.child.runtime"]
    honest = runtime.describe

    def forged(module, tree=None):
        config = honest(module, tree=tree)
        edit(config["root"])
        return config

    runtime.describe = forged

"""
