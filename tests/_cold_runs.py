"""Shared by the concurrency and crash suites: seeded checkpoints, a lock made elsewhere, a cold hub dir.

Each test of those suites starts from a cold hub dir, with a copy of a lock that pinned the
repo using a throwaway hub dir, and starts loaders as subprocesses that inherit its environment.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from securehub.config.lockfile import Lockfile
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import HubEnv

REPO_ROOT = Path(__file__).resolve().parents[1]


def linear_checkpoint(env: HubEnv, stem: str, seed: int) -> tuple[str, str, list[list[float]]]:
    """Serve a seeded ``nn.Linear(4, 2)`` checkpoint; returns (public URL, server path, weight)."""
    torch.manual_seed(seed)
    layer = nn.Linear(4, 2)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    data = buf.getvalue()
    path = f"w/{stem}-{hashlib.sha256(data).hexdigest()[:10]}.pth"
    return env.put(path, data), "/" + path, layer.weight.tolist()


def locked_template(env: HubEnv, specs: Sequence[str], entrypoints: Sequence[str]) -> bytes:
    """hub.lock bytes pinning ``specs`` (and ``entrypoints``), made with a throwaway hub dir so the
    tests using it start from a cold cache."""
    template = env.root / "template.lock"
    Lockfile.empty().save(template)
    mp = pytest.MonkeyPatch()
    mp.setenv("SECUREHUB_DIR", str(env.root / "locking-hub"))
    try:
        lock_repos(list(specs), entrypoints=list(entrypoints), lock=template, policy="default")
    finally:
        mp.undo()
    return template.read_bytes()


@dataclass
class ColdRun:
    """One test's cold hub dir, lock and audit log; ``env`` is what its subprocesses run with."""

    hub: Path
    lock: Path
    audit: Path
    env: dict[str, str]


def cold_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: bytes) -> ColdRun:
    """A cold hub dir, a copy of ``template`` as hub.lock and an audit log under ``tmp_path``,
    set in this process's environment (and cwd) and in the one returned for subprocesses."""
    hub = tmp_path / "hub"
    hub.mkdir()
    lock = tmp_path / "hub.lock"
    lock.write_bytes(template)
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("SECUREHUB_DIR", str(hub))
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(audit))
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return ColdRun(hub, lock, audit, env)
