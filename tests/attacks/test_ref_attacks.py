"""Attacks on ref resolution and on the git invocation, each named after the attack.

Every test asserts the error code and that nothing happened (no request, no canary file).
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

import securehub.resolve.git as git_mod
from securehub.errors import NetworkError, OfflineError, RefNotAllowed, RepoNotAllowed
from securehub.resolve import parse_spec, resolve
from tests._servers import ArtifactServer, GitServer, RepoFactory

HUBCONF = "dependencies = []\n"
TOKEN = "ghp_" + "T0k3n" * 7 + "x"


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


# --- impostor commits ---------------------------------------------------------------------------


def test_impostor_fork_commit_by_sha_refused(repo_factory: RepoFactory, github_url: str, tmp_path: Path) -> None:
    """A fork's commit is served through the parent's URL (GitHub's refs/pull/N/head): never loadable."""
    repo = repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF})
    evil = repo.fork_commit({"hubconf.py": "import os; os.system('id')\n"})
    # Control: the server really hands the fork commit out by SHA to a plain git client.
    clone = tmp_path / "control"
    subprocess.run(["git", "init", "-q", str(clone)], check=True, capture_output=True)
    fetched = subprocess.run(
        ["git", "-C", str(clone), "fetch", "-q", repo.url, evil], capture_output=True, text=True, check=False
    )
    assert fetched.returncode == 0, fetched.stderr

    for ref in (evil, evil[:12], evil[:7], "tags/" + evil):
        with pytest.raises(RefNotAllowed) as info:
            resolve(parse_spec(f"victim/model:{ref}"))
        assert info.value.code == "ref-not-allowed"


@pytest.mark.parametrize("ref", ["pull/1/head", "refs/pull/1/head", "pull/1/merge", "refs/heads/main", "HEAD"])
def test_impostor_fork_ref_refused_before_network(
    repo_factory: RepoFactory, github_url: str, git_server: GitServer, ref: str
) -> None:
    repo = repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF})
    repo.fork_commit({"hubconf.py": "evil = True\n"})
    git_server.clear_log()
    with pytest.raises(RefNotAllowed) as info:
        resolve(parse_spec(f"victim/model:{ref}"))
    assert info.value.code == "ref-not-allowed"
    assert git_server.connections == 0


def test_short_sha_prefix_ambiguity_refused(repo_factory: RepoFactory, github_url: str) -> None:
    """An abbreviated SHA could name a different (colliding) object later: refused outright."""
    repo = repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF})
    with pytest.raises(RefNotAllowed):
        resolve(parse_spec(f"victim/model:{repo.head_commit()[:4]}"))


# --- argument / transport injection -------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "victim/model:--upload-pack=touch {canary}",
        "git+ext::sh -c 'touch {canary}'",
        "git+ext::sh%20-c%20touch%20{canary}",
        "git+fd::0",
        "git+ssh://-oProxyCommand=touch%20{canary}/x/y.git",
        "git+https://h/x.git@--upload-pack=touch%20{canary}",
    ],
)
def test_option_and_transport_injection_refused(
    hub_dir: Path, github_url: str, git_server: GitServer, tmp_path: Path, spec: str
) -> None:
    canary = tmp_path / "canary"
    git_server.clear_log()
    with pytest.raises((RepoNotAllowed, RefNotAllowed)):
        resolve(parse_spec(spec.format(canary=canary)))
    assert not canary.exists()
    assert git_server.connections == 0


# --- credentials --------------------------------------------------------------------------------


def test_token_sent_to_github_host_only(
    repo_factory: RepoFactory,
    github_url: str,
    git_server: GitServer,
    other_git_server: GitServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Token exfiltration: GITHUB_TOKEN goes to the configured GitHub host, never to another host."""
    repo = repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    git_server.clear_log()
    other_git_server.clear_log()

    resolve(parse_spec("victim/model:v1"))
    auth = {r.header("authorization") for r in git_server.requests}
    assert auth == {_basic(TOKEN)}

    # Same repos, another host (127.0.0.2): resolves fine, but without the token.
    other = f"git+{other_git_server.base_url}/victim/model.git@v1"
    assert resolve(parse_spec(other)).commit == repo.head_commit()
    assert other_git_server.requests
    assert all(r.header("authorization") is None for r in other_git_server.requests)


def test_securehub_token_preferred_and_never_on_command_line(
    repo_factory: RepoFactory, github_url: str, git_server: GitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token on git's command line is visible to every local user in ps: it goes via env only."""
    repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF}).tag("v1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_other_token_000000000000")
    monkeypatch.setenv("SECUREHUB_GITHUB_TOKEN", TOKEN)
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        seen.append(list(cmd))
        return real_run(cmd, **kw)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(git_mod.subprocess, "run", spy)
    git_server.clear_log()
    resolve(parse_spec("victim/model:v1"))
    assert seen
    for cmd in seen:
        joined = " ".join(cmd)
        assert TOKEN not in joined and _basic(TOKEN).split()[1] not in joined
    assert {r.header("authorization") for r in git_server.requests} == {_basic(TOKEN)}


def test_redirect_does_not_carry_token_to_other_host(
    hub_dir: Path,
    repo_factory: RepoFactory,
    artifact_server: ArtifactServer,
    other_git_server: GitServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The 'GitHub' host answers with a redirect to another host: git must not follow it."""
    repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF}).tag("v1")
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", artifact_server.base_url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    target = f"{other_git_server.base_url}/victim/model.git/info/refs?service=git-upload-pack"
    artifact_server.add_redirect("/victim/model.git/info/refs", target, code=302)
    other_git_server.clear_log()
    with pytest.raises(NetworkError) as info:
        resolve(parse_spec("victim/model:v1"))
    assert info.value.code == "network"
    assert TOKEN not in info.value.message
    assert other_git_server.connections == 0
    assert artifact_server.requests[0].header("authorization") == _basic(TOKEN)


def test_credentials_in_url_refused(hub_dir: Path, git_server: GitServer) -> None:
    git_server.clear_log()
    with pytest.raises(RepoNotAllowed):
        parse_spec(f"git+http://user:{TOKEN}@127.0.0.1:{git_server.port}/victim/model.git@v1")
    assert git_server.connections == 0


# --- offline ------------------------------------------------------------------------------------


def test_offline_makes_no_connection(
    repo_factory: RepoFactory, github_url: str, git_server: GitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF}).tag("v1")
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    git_server.clear_log()
    for spec in ("victim/model:v1", f"git+{git_server.base_url}/victim/model.git@v1"):
        with pytest.raises(OfflineError) as info:
            resolve(parse_spec(spec))
        assert info.value.code == "offline"
    assert git_server.connections == 0
    assert git_server.requests == []


# --- hostile configuration ----------------------------------------------------------------------


def _hostile_config(canary: Path) -> str:
    return (
        "[http]\n\textraHeader = X-Evil: from-user-config\n"
        f"[core]\n\tsshCommand = touch {canary}-ssh; true\n\tfsmonitor = touch {canary}-fsmonitor; true\n"
        f"\taskPass = touch {canary}-askpass; true\n"
        f"[credential]\n\thelper = !touch {canary}-credential; true\n"
        "[protocol]\n\tallow = always\n"
    )


def test_malicious_user_gitconfig_ignored(
    repo_factory: RepoFactory,
    github_url: str,
    git_server: GitServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """~/.gitconfig, $XDG_CONFIG_HOME/git/config and GIT_* env that would run commands or add headers."""
    repo = repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    canary = tmp_path / "canary"
    (home / ".gitconfig").write_text(_hostile_config(canary))
    (home / ".config" / "git" / "config").write_text("[http]\n\textraHeader = X-Evil-Xdg: 1\n")
    env_attack = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_SSH_COMMAND": f"touch {canary}-envssh; true",
        "GIT_CONFIG_PARAMETERS": "'http.extraheader'='X-Evil-Env: 1'",
        "GIT_ASKPASS": f"{tmp_path}/askpass",
    }

    # Control: a plain git with this environment does send the hostile header and runs sshCommand.
    control_env = {**os.environ, **env_attack}
    control_env.pop("GIT_CONFIG_NOSYSTEM", None)
    subprocess.run(["git", "ls-remote", repo.url], env=control_env, capture_output=True, check=True)
    assert any(r.header("x-evil") for r in git_server.requests)
    subprocess.run(["git", "ls-remote", "ssh://127.0.0.1:1/x.git"], env=control_env, capture_output=True, check=False)
    assert Path(f"{canary}-envssh").exists()
    Path(f"{canary}-envssh").unlink()

    for key, value in env_attack.items():
        monkeypatch.setenv(key, value)
    git_server.clear_log()
    assert resolve(parse_spec("victim/model:v1")).commit == repo.head_commit()
    assert git_server.requests
    for rec in git_server.requests:
        assert not {"x-evil", "x-evil-xdg", "x-evil-env"} & set(rec.headers)
    with pytest.raises(NetworkError):
        resolve(parse_spec("git+ssh://127.0.0.1:1/x.git@v1"))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("canary")) == []


def test_malicious_repo_in_working_directory_ignored(
    repo_factory: RepoFactory,
    github_url: str,
    git_server: GitServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Running securehub inside a hostile checkout: its .git/config must not reach our git."""
    repo = repo_factory.make_repo("victim/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    work = tmp_path / "hostile-checkout"
    subprocess.run(["git", "init", "-q", str(work)], check=True, capture_output=True)
    with (work / ".git" / "config").open("a") as fh:
        fh.write("[http]\n\textraHeader = X-Evil-Repo: 1\n")
    subprocess.run(["git", "ls-remote", repo.url], cwd=work, capture_output=True, check=True)
    assert any(r.header("x-evil-repo") for r in git_server.requests)  # control

    monkeypatch.chdir(work)
    git_server.clear_log()
    assert resolve(parse_spec("victim/model:v1")).commit == repo.head_commit()
    assert git_server.requests
    assert all(r.header("x-evil-repo") is None for r in git_server.requests)
