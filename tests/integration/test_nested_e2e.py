"""A hubconf's own torch.hub.load goes through the parent's resolver, lock and policy (SPEC section 6),
end to end: real git server, real sandboxes (outer and inner), real reconstruction."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

import securehub
from securehub.locking import lock_repos

INNER = textwrap.dedent(
    '''
    import torch
    from torch import nn

    def lin(out=3):
        """Inner linear."""
        torch.manual_seed(7)
        return nn.Linear(4, out)
    '''
)

OUTER = textwrap.dedent(
    '''
    import torch
    from torch import nn

    def wrapped(out=3):
        """Outer model that reuses another hub repo."""
        inner = torch.hub.load("acme/inner:v1", "lin", out=out)
        return nn.Sequential(inner, nn.ReLU())
    '''
)


@pytest.fixture
def repos(github_url: str, repo_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    inner = repo_factory.make_repo("acme/inner", files={"hubconf.py": INNER})
    inner.tag("v1", commit=inner.head_commit())
    outer = repo_factory.make_repo("acme/outer", files={"hubconf.py": OUTER})
    outer.tag("v1", commit=outer.head_commit())
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(audit))
    monkeypatch.chdir(tmp_path)
    return audit


def _expected(out: int) -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Sequential(torch.nn.Linear(4, out), torch.nn.ReLU())


def test_nested_load_under_strict_uses_both_locked_repos(repos: Path, tmp_path: Path) -> None:
    lock = tmp_path / "hub.lock"
    lock_repos(["acme/outer:v1", "acme/inner:v1"], policy="strict", lock=lock)
    model = securehub.load("acme/outer:v1", "wrapped", out=5, policy="strict", lock=lock, verbose=False)
    x = torch.rand(2, 4)
    assert torch.equal(model(x), _expected(5)(x))
    lines = [json.loads(line) for line in repos.read_text().splitlines()]
    loads = [r for r in lines if r["action"] == "load"]
    assert {r["spec"] for r in loads} == {"acme/outer:v1", "acme/inner:v1"}
    assert all(r["outcome"] == "ok" for r in loads)
    inner = next(r for r in loads if r["spec"] == "acme/inner:v1")
    assert inner["nested_depth"] == 1
    assert inner["commit"] == json.loads(lock.read_text())["repos"]["acme/inner:v1"]["commit"]


def test_nested_load_of_unlocked_repo_is_not_locked_under_strict(repos: Path, tmp_path: Path, git_server) -> None:
    lock = tmp_path / "hub.lock"
    lock_repos(["acme/outer:v1"], policy="strict", lock=lock)
    before = lock.read_bytes()
    git_server.clear_log()
    with pytest.raises(securehub.SecureHubError) as info:
        securehub.load("acme/outer:v1", "wrapped", policy="strict", lock=lock, verbose=False)
    assert info.value.code == "not-locked"
    assert "acme/inner" in str(info.value)
    # Refused before any request for the inner repo reached the git server.
    assert not [r for r in git_server.requests if "inner" in r.path]
    assert lock.read_bytes() == before
