"""The resolver end to end against the real git smart-HTTP server on 127.0.0.1."""

from __future__ import annotations

import pytest

from securehub.errors import NetworkError, RefAmbiguous, RefNotAllowed, RefNotFound
from securehub.resolve import parse_spec, resolve
from securehub.resolve.git import ls_remote
from tests._servers import GitServer, RepoFactory

HUBCONF = "dependencies = []\n\ndef model():\n    return None\n"


def test_branch_and_tag_resolve_to_commits(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    first = repo.head_commit()
    repo.tag("v1.0")
    second = repo.commit({"extra.py": "x = 1\n"})

    by_tag = resolve(parse_spec("alice/model:v1.0"))
    assert (by_tag.ref, by_tag.ref_type, by_tag.commit) == ("v1.0", "tag", first)
    by_branch = resolve(parse_spec("alice/model:main"))
    assert (by_branch.ref, by_branch.ref_type, by_branch.commit) == ("main", "branch", second)
    assert by_branch.spec.remote == f"{github_url}/alice/model.git"


def test_git_plus_http_loopback_and_file_url(repo_factory: RepoFactory, hub_dir: object) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    assert resolve(parse_spec(f"git+{repo.url}@v1")).commit == repo.head_commit()
    assert resolve(parse_spec(f"git+{repo.file_url}@v1")).commit == repo.head_commit()


def test_annotated_tag_peeled_to_commit(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    tag_object = repo.tag("v2.0", annotated=True)
    commit = repo.head_commit()
    assert tag_object != commit
    resolved = resolve(parse_spec("alice/model:v2.0"))
    assert resolved.commit == commit
    assert resolved.ref_type == "tag"


def test_default_branch_from_head(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    stable = repo.commit({"stable.txt": "yes\n"}, branch="stable")
    repo.set_head("stable")
    resolved = resolve(parse_spec("alice/model"))
    assert (resolved.ref, resolved.ref_type, resolved.commit) == ("stable", "branch", stable)


def test_missing_ref_refused_under_tags_only(repo_factory: RepoFactory, github_url: str) -> None:
    repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    with pytest.raises(RefNotAllowed) as info:
        resolve(parse_spec("alice/model"), refs_policy_allow="tags")
    assert "missing ref" in info.value.message
    assert repo_factory.server.requests == []  # refused before any network access


def test_ambiguous_branch_and_tag(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    tagged = repo.head_commit()
    repo.tag("release")
    branch_commit = repo.commit({"b.txt": "b\n"}, branch="release", parent=tagged)
    with pytest.raises(RefAmbiguous) as info:
        resolve(parse_spec("alice/model:release"))
    assert info.value.code == "ref-ambiguous"
    assert resolve(parse_spec("alice/model:heads/release")).commit == branch_commit
    as_tag = resolve(parse_spec("alice/model:tags/release"))
    assert (as_tag.ref, as_tag.ref_type, as_tag.commit) == ("release", "tag", tagged)


def test_ref_not_found(repo_factory: RepoFactory, github_url: str) -> None:
    repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    with pytest.raises(RefNotFound) as info:
        resolve(parse_spec("alice/model:v9"))
    assert info.value.code == "ref-not-found"


def test_hex_named_tag_is_accepted_but_commit_id_is_not(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    commit = repo.head_commit()
    repo.tag("2024")
    assert resolve(parse_spec("alice/model:2024")).commit == commit
    for ref in (commit, commit[:7]):
        with pytest.raises(RefNotAllowed) as info:
            resolve(parse_spec(f"alice/model:{ref}"))
        assert "commit id" in info.value.message


def test_tag_force_moved_resolves_to_new_commit(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    old = repo.head_commit()
    repo.tag("v1")
    assert resolve(parse_spec("alice/model:v1")).commit == old
    new = repo.commit({"hubconf.py": HUBCONF + "# moved\n"})
    repo.force_tag("v1", new)
    assert resolve(parse_spec("alice/model:v1")).commit == new  # the lock layer reports the drift


def test_policy_values(repo_factory: RepoFactory, github_url: str) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1")
    repo.tag("nightly-1")
    with pytest.raises(RefNotAllowed):
        resolve(parse_spec("alice/model:main"), refs_policy_allow="tags")
    with pytest.raises(RefNotAllowed):
        resolve(parse_spec("alice/model:v1"), refs_policy_allow="branches")
    with pytest.raises(RefNotAllowed):
        resolve(parse_spec("alice/model:nightly-1"), refs_policy_allow="tags", tag_pattern="v*")
    assert resolve(parse_spec("alice/model:v1"), refs_policy_allow="tags", tag_pattern="v*").ref == "v1"


def test_unknown_repo_is_network_error(repo_factory: RepoFactory, github_url: str) -> None:
    with pytest.raises(NetworkError) as info:
        resolve(parse_spec("nobody/nothing:v1"))
    assert info.value.code == "network"
    assert "exit code" in info.value.message


def test_ls_remote_lists_only_heads_and_tags(repo_factory: RepoFactory, git_server: GitServer) -> None:
    repo = repo_factory.make_repo("alice/model", {"hubconf.py": HUBCONF})
    repo.tag("v1", annotated=True)
    repo.fork_commit({"evil.py": "x\n"})
    refs = ls_remote(repo.url)
    assert dict(refs.heads) == {"main": repo.head_commit()}
    assert dict(refs.tags) == {"v1": repo.head_commit()}
    assert refs.head_symref == "main"


def test_empty_repo_has_nothing_to_resolve(repo_factory: RepoFactory, github_url: str) -> None:
    repo_factory.make_repo("alice/empty")
    for spec in ("alice/empty", "alice/empty:v1"):
        with pytest.raises(RefNotFound):
            resolve(parse_spec(spec))
