"""Mix-and-match (threats.md): weights locked for one entrypoint must not be pulled into another.

hub.lock records, per entrypoint, the artifacts it fetched when it was locked. A load of that
entrypoint may fetch only those, under every lock mode, even when the other URL is itself locked
(for another entrypoint) and already cached.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import securehub
from securehub.pipeline.lock import lock_repos


def _weights(seed: int) -> bytes:
    torch.manual_seed(seed)
    return save({k: v.contiguous() for k, v in torch.nn.Linear(4, 2).state_dict().items()})


@pytest.fixture
def setup(github_url: str, repo_factory, artifact_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    artifact_server.put("/a.safetensors", _weights(1))
    artifact_server.put("/b.safetensors", _weights(2))
    base = artifact_server.base_url
    hubconf = textwrap.dedent(
        f'''
        import torch
        from torch import nn

        A = "{base}/a.safetensors"
        B = "{base}/b.safetensors"

        def a(url=A):
            """Linear with weights A (or whatever URL the caller passes)."""
            m = nn.Linear(4, 2)
            m.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False))
            return m

        def b():
            """Linear with weights B."""
            m = nn.Linear(4, 2)
            m.load_state_dict(torch.hub.load_state_dict_from_url(B, progress=False))
            return m
        '''
    )
    repo = repo_factory.make_repo("acme/mix", files={"hubconf.py": hubconf})
    repo.tag("v1", commit=repo.head_commit())
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    lock = tmp_path / "hub.lock"
    # The hubconf fetches straight from the loopback artifact server: lock -e records such a
    # repository-chosen URL only when the policy names 127.0.0.1 literally (SSRF rule).
    named = tmp_path / "strict-named-loopback.yaml"
    named.write_text("version: 1\nextends: strict\nartifacts:\n  hosts: ['*', '127.0.0.1']\n")
    lock_repos(["acme/mix:v1"], entrypoints=["a", "b"], policy=str(named), lock=lock)
    return lock, f"{base}/a.safetensors", f"{base}/b.safetensors"


@pytest.mark.parametrize("policy", ["strict", "default", "permissive"])
def test_entrypoint_cannot_fetch_weights_locked_for_another(setup, policy: str, hub_dir: Path) -> None:
    lock, url_a, url_b = setup
    doc = json.loads(lock.read_text())
    assert doc["repos"]["acme/mix:v1"]["entrypoints"]["a"]["artifacts"] == [url_a]
    assert url_b in doc["artifacts"]  # B is locked (for b) and cached
    before = lock.read_bytes()
    results = sorted(p.name for p in (hub_dir / "results").iterdir()) if (hub_dir / "results").exists() else []

    with pytest.raises(securehub.SecureHubError) as info:
        securehub.load("acme/mix:v1", "a", url=url_b, policy=policy, lock=lock, verbose=False)

    assert info.value.code == "not-locked"
    assert url_b in str(info.value) and "'a'" in str(info.value)
    assert lock.read_bytes() == before
    after = sorted(p.name for p in (hub_dir / "results").iterdir()) if (hub_dir / "results").exists() else []
    assert after == results


def test_the_locked_combination_still_loads(setup) -> None:
    lock, _, _ = setup
    model = securehub.load("acme/mix:v1", "a", policy="strict", lock=lock, verbose=False)
    torch.manual_seed(1)
    expected = torch.nn.Linear(4, 2)
    x = torch.rand(3, 4)
    assert torch.equal(model(x), expected(x))
