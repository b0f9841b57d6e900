"""A hubconf's own torch.hub.load goes through the parent's resolver, lock and policy (SPEC section 6),
end to end: real git server, real sandboxes (outer and inner), real reconstruction."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

import securehub
from securehub.pipeline.lock import lock_repos

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


def _strict_unpinned(tmp_path: Path) -> str:
    """Strict, except unpinned outputs load (lock.outputs: verify): these tests are about nested repos
    and artifacts; output pinning of nested loads is covered by tests/integration/test_output_pinning.py."""
    path = tmp_path / "strict-outputs-verify.yaml"
    path.write_text("version: 1\nextends: strict\nlock:\n  outputs: verify\n")
    return str(path)


def test_nested_load_under_strict_uses_both_locked_repos(repos: Path, tmp_path: Path) -> None:
    lock = tmp_path / "hub.lock"
    lock_repos(["acme/outer:v1", "acme/inner:v1"], policy="strict", lock=lock)
    model = securehub.load(
        "acme/outer:v1", "wrapped", out=5, policy=_strict_unpinned(tmp_path), lock=lock, verbose=False
    )
    x = torch.rand(2, 4)
    assert torch.equal(model(x), _expected(5)(x))
    lines = [json.loads(line) for line in repos.read_text().splitlines()]
    loads = [r for r in lines if r["action"] == "load"]
    assert {r["spec"] for r in loads} == {"acme/outer:v1", "acme/inner:v1"}
    assert all(r["outcome"] == "ok" for r in loads)
    spec_keys = {"time", "action", "spec", "ref", "commit", "tree_sha256", "entrypoint", "args_sha256", "artifacts",
                 "policy", "isolation", "strategy", "outcome", "code"}  # fmt: skip
    assert all(set(r) == spec_keys for r in lines)
    inner = next(r for r in loads if r["spec"] == "acme/inner:v1")
    assert inner["isolation"]["level"] == "full"
    assert inner["commit"] == json.loads(lock.read_text())["repos"]["acme/inner:v1"]["commit"]


def test_nested_load_of_unlocked_repo_is_not_locked_under_strict(repos: Path, tmp_path: Path, git_server) -> None:
    lock = tmp_path / "hub.lock"
    lock_repos(["acme/outer:v1"], policy="strict", lock=lock)
    before = lock.read_bytes()
    git_server.clear_log()
    with pytest.raises(securehub.SecureHubError) as info:
        securehub.load("acme/outer:v1", "wrapped", policy=_strict_unpinned(tmp_path), lock=lock, verbose=False)
    assert info.value.code == "not-locked"
    assert "acme/inner" in str(info.value)
    # Refused before any request for the inner repo reached the git server.
    assert not [r for r in git_server.requests if "inner" in r.path]
    assert lock.read_bytes() == before


def test_run_with_nested_load_is_never_served_from_the_result_cache(
    github_url: str, repo_factory, artifact_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_dir: Path
) -> None:
    """The result key does not cover other repos' trees and artifacts: such runs are not cached, so
    every load re-resolves, re-verifies and audits the nested repo."""
    from safetensors.torch import save

    torch.manual_seed(11)
    artifact_server.put(
        "/head.safetensors", save({k: v.contiguous() for k, v in torch.nn.Linear(3, 2).state_dict().items()})
    )
    inner = repo_factory.make_repo("acme/inner2", files={"hubconf.py": INNER})
    inner.tag("v1", commit=inner.head_commit())
    outer_src = textwrap.dedent(
        f'''
        import torch
        from torch import nn

        def stacked():
            """Inner linear plus a locked head."""
            head = nn.Linear(3, 2)
            head.load_state_dict(torch.hub.load_state_dict_from_url("{artifact_server.base_url}/head.safetensors"))
            return nn.Sequential(torch.hub.load("acme/inner2:v1", "lin"), head)
        '''
    )
    outer = repo_factory.make_repo("acme/outer2", files={"hubconf.py": outer_src})
    outer.tag("v1", commit=outer.head_commit())
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(audit))
    lock = tmp_path / "hub.lock"
    lock_repos(["acme/inner2:v1"], policy="strict", lock=lock)
    # The head's URL points straight at the loopback artifact server: lock -e may record a
    # repository-chosen loopback URL only when the policy names 127.0.0.1 literally (SSRF rule).
    named = tmp_path / "strict-named-loopback.yaml"
    # lock.outputs: verify -- the nested lin() load during `lock -e` is not pinned itself.
    named.write_text("version: 1\nextends: strict\nartifacts:\n  hosts: ['*', '127.0.0.1']\nlock:\n  outputs: verify\n")
    lock_repos(["acme/outer2:v1"], entrypoints=["stacked"], policy=str(named), lock=lock)
    for _ in range(2):
        securehub.load("acme/outer2:v1", "stacked", policy=_strict_unpinned(tmp_path), lock=lock, verbose=False)
    inner_loads = [
        r for r in map(json.loads, audit.read_text().splitlines())
        if r["action"] == "load" and r["spec"] == "acme/inner2:v1" and r["outcome"] == "ok"
    ]  # fmt: skip
    assert len(inner_loads) >= 2  # the nested load ran (and was audited) on both loads
    assert not any((hub_dir / "results").iterdir()) if (hub_dir / "results").exists() else True


INNER_OWN_CLASS = textwrap.dedent(
    """
    import torch
    from torch import nn

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.act1 = nn.ReLU()

        def forward(self, x):
            return self.act1(self.conv(x))

    def backbone():
        return Backbone().eval()
    """
)

OUTER_TAKES_APART = textwrap.dedent(
    '''
    import torch
    from torch import nn

    def head():
        """MiDaS_small's pattern: take the nested-loaded backbone apart."""
        b = torch.hub.load("acme/own-backbone:v1", "backbone")
        return nn.Sequential(b.conv, b.act1, nn.Conv2d(4, 1, 1))
    '''
)


def test_an_inner_model_that_cannot_be_rebuilt_is_reconstruct_refused_naming_the_nested_load(
    repos: Path, repo_factory, tmp_path: Path
) -> None:
    """Not the outer entrypoint's ``entrypoint-error``; the remedy is for the inner entrypoint (real repo: MiDaS)."""
    inner = repo_factory.make_repo("acme/own-backbone", files={"hubconf.py": INNER_OWN_CLASS})
    inner.tag("v1", commit=inner.head_commit())
    outer = repo_factory.make_repo("acme/takes-apart", files={"hubconf.py": OUTER_TAKES_APART})
    outer.tag("v1", commit=outer.head_commit())

    with pytest.raises(securehub.SecureHubError) as info:
        securehub.load("acme/takes-apart:v1", "head", verbose=False)

    assert info.value.code == "reconstruct-refused"
    message = info.value.message
    assert "nested torch.hub.load('acme/own-backbone:v1', 'backbone')" in message
    assert "securehub lock acme/own-backbone:v1 -e backbone --example-input" in message
    outer_line = json.loads(repos.read_text().splitlines()[-1])
    assert (outer_line["entrypoint"], outer_line["code"]) == ("head", "reconstruct-refused")
