"""Attacks on ref classification: refs that must be refused with the right code (findings 7c, 7d).

- A tag pointing at a tree or a blob names no revision: ``ref-not-found`` (it used to surface as
  ``network``, from git failing to peel it), with nothing cached and no lock written.
- Whitespace or a control character in the ref is ``ref-not-allowed`` (SPEC section 3), not
  ``repo-not-allowed``, through ``securehub.load`` and the CLI, before any network access.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._servers import GitServer, RepoFactory

HUBCONF = "from torch import nn\n\ndependencies = ['torch']\n\n\ndef m():\n    return nn.Linear(1, 1)\n"


EMPTY_LOCK = '{\n  "artifacts": {},\n  "repos": {},\n  "version": 1\n}\n'


def _cache_listing(hub: Path) -> list[str]:
    """Every file the cache keeps (not its inter-process lock files or the audit log)."""
    return sorted(
        str(p.relative_to(hub))
        for p in hub.rglob("*")
        if p.is_file() and p.name != "audit.jsonl" and p.relative_to(hub).parts[0] != "locks"
    )


# --------------------------------------------------------------------------- 7c


@pytest.mark.parametrize("target", ["tree", "blob"])
@pytest.mark.parametrize("annotated", [True, False], ids=["annotated", "lightweight"])
def test_tag_pointing_at_a_tree_or_blob_is_ref_not_found(
    repo_factory: RepoFactory,
    github_url: str,
    hub_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    annotated: bool,
) -> None:
    monkeypatch.chdir(tmp_path)
    repo = repo_factory.make_repo(f"victim/objs-{target}-{annotated}", {"hubconf.py": HUBCONF})
    sha = repo.git("rev-parse", "HEAD^{tree}" if target == "tree" else "HEAD:hubconf.py").strip()
    if annotated:
        repo.git("tag", "-a", "-m", "points at a " + target, "odd", sha)
    else:
        repo.git("tag", "odd", sha)
    spec = f"victim/objs-{target}-{annotated}:odd"
    lock = tmp_path / "hub.lock"
    lock.write_text(EMPTY_LOCK)  # lock.mode auto records only into an existing lock (SPEC 2)
    before = _cache_listing(hub_dir)

    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "m", policy="default", lock=lock, verbose=False)
    assert info.value.code == "ref-not-found", info.value.message
    assert f"as a {target}, not a commit" in info.value.message

    with pytest.raises(SecureHubError) as info:
        lock_repos([spec], policy="default", lock=lock)
    assert info.value.code == "ref-not-found", info.value.message

    assert lock.read_text() == EMPTY_LOCK, "a refused ref changed hub.lock"
    assert _cache_listing(hub_dir) == before, "something of the refused ref was cached"


# --------------------------------------------------------------------------- 7d

BAD_REFS = {
    "space": "v1 x",
    "tab": "v1\tx",
    "newline": "v1\n",
    "nul": "v\x001",
    "escape": "v1\x1b[31m",
    "del": "v1\x7f",
    "leading-space": " v1",
    "nbsp": "v1\u00a0",
}


@pytest.mark.parametrize("form", ["github", "git+http"])
@pytest.mark.parametrize("ref", list(BAD_REFS.values()), ids=list(BAD_REFS))
def test_ref_with_whitespace_or_control_character_is_ref_not_allowed(
    repo_factory: RepoFactory,
    github_url: str,
    git_server: GitServer,
    hub_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ref: str,
    form: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    repo = repo_factory.make_repo("victim/ws", {"hubconf.py": HUBCONF})
    repo.tag("v1", annotated=True)
    spec = f"victim/ws:{ref}" if form == "github" else f"git+{repo.url}@{ref}"
    git_server.clear_log()
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "m", policy="default", verbose=False)
    assert info.value.code == "ref-not-allowed", info.value.message
    assert git_server.connections == 0, "a refused ref reached the git server"
    assert _cache_listing(hub_dir) == []


@pytest.mark.parametrize("ref", [r for name, r in BAD_REFS.items() if name != "nul"])  # argv cannot hold NUL
def test_cli_ref_with_whitespace_or_control_character_is_ref_not_allowed(
    github_url: str,
    git_server: GitServer,
    hub_dir: Path,
    tmp_path: Path,
    ref: str,
) -> None:
    git_server.clear_log()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_")}
    env.update(SECUREHUB_DIR=str(hub_dir), SECUREHUB_GITHUB_URL=github_url)
    proc = subprocess.run(
        [sys.executable, "-m", "securehub", "load", f"victim/ws:{ref}", "m", "--policy", "default"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "error[ref-not-allowed]" in proc.stderr
    assert git_server.connections == 0
    assert not (tmp_path / "hub.lock").exists()
