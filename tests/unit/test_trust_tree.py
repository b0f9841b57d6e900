"""``securehub.trust.tree``: repo, remote, ref, lock mode and tree digest decisions, as table tests (no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from securehub.config.lockfile import RepoEntry
from securehub.config.policy import Policy
from securehub.errors import HashMismatch, LockDrift, NotLocked, RefNotAllowed, RepoNotAllowed, SecureHubError
from securehub.trust.tree import (
    check_file_remote_named,
    check_locked_ref_allowed,
    check_locked_tree_digest,
    check_remote_matches,
    check_repo_allowed,
    check_resolved_ref_allowed,
    check_unlocked_allowed,
    explicit_repo_hosts,
)

REMOTE = "https://github.com/acme/net.git"
A, B = "a" * 64, "b" * 64


@dataclass(frozen=True)
class Spec:
    """A spec's identity as the decisions read it (the shape of ``RepoSpec``)."""

    kind: str
    key: str
    name: str
    remote: str


GITHUB = Spec("github", "acme/net:v1", "acme/net", REMOTE)
LOCAL = Spec("local", "/src/net", "/src/net", "/src/net")


def policy(**sections: Any) -> Policy:
    return Policy.from_dict({"version": 1, **sections})


def entry(ref: str = "v1", ref_type: str = "tag", remote: str = REMOTE) -> RepoEntry:
    return RepoEntry(remote=remote, ref=ref, ref_type=ref_type, commit="c" * 40, tree_sha256=A)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "pol", "refused"),
    [
        (GITHUB, policy(repos={"allow": ["acme/*"]}), None),
        (GITHUB, policy(repos={"allow": ["other/*"]}), "'acme/net' is not allowed by the policy"),
        (GITHUB, policy(repos={"allow": ["*"], "deny": ["acme/net"]}), "repos.deny: ['acme/net']"),
        (LOCAL, policy(repos={"local": True}), None),
        (LOCAL, policy(repos={"local": False}), "refuses local sources (repos.local: false)"),
    ],
)
def test_repo_allowed(spec: Spec, pol: Policy, refused: str | None) -> None:
    if refused is None:
        check_repo_allowed(spec, pol)
        return
    with pytest.raises(RepoNotAllowed, match=re.escape(refused)) as err:
        check_repo_allowed(spec, pol)
    assert err.value.code == "repo-not-allowed"


@pytest.mark.parametrize(
    ("allow", "hosts"),
    [
        (["*"], set()),
        (["git.corp"], {"git.corp"}),
        (["GIT.Corp."], {"git.corp"}),
        (["https://git.corp/*", "git+ssh://[::1]/x"], {"git.corp", "::1"}),
        (["https://*.corp/*", "acme/*", "https://[bad/"], set()),
    ],
)
def test_explicit_repo_hosts(allow: list[str], hosts: set[str]) -> None:
    assert explicit_repo_hosts(policy(repos={"allow": allow})) == hosts


@pytest.mark.parametrize(("remote", "drift"), [(REMOTE, False), ("https://git.example/acme/net.git", True)])
def test_remote_matches_the_lock(remote: str, drift: bool) -> None:
    if not drift:
        check_remote_matches(GITHUB, entry(remote=remote))
        return
    with pytest.raises(LockDrift, match="hub.lock pins the remote 'https://git.example/acme/net.git'") as err:
        check_remote_matches(GITHUB, entry(remote=remote))
    assert err.value.code == "lock-drift"


@pytest.mark.parametrize(
    ("refs", "pinned", "allowed"),
    [
        ({"allow": "tags"}, entry("v1", "tag"), True),
        ({"allow": "tags"}, entry("main", "branch"), False),
        ({"allow": "tags", "tag_pattern": "v*"}, entry("release-1", "tag"), False),
        ({"allow": "any"}, entry("main", "branch"), True),
    ],
)
def test_locked_ref_allowed(refs: dict[str, str], pinned: RepoEntry, allowed: bool) -> None:
    pol = policy(refs=refs)
    if allowed:
        check_locked_ref_allowed("acme/net", pinned, pol)
        return
    with pytest.raises(RefNotAllowed, match=f"acme/net: hub.lock pins the {pinned.ref_type} '{pinned.ref}'") as err:
        check_locked_ref_allowed("acme/net", pinned, pol)
    assert err.value.code == "ref-not-allowed"


@pytest.mark.parametrize(
    ("mode", "lock_path", "refused"),
    [
        ("auto", None, None),
        ("optional", Path("hub.lock"), None),
        ("required", Path("/p/hub.lock"), "'acme/net' is not in hub.lock (/p/hub.lock)"),
        ("required", None, "'acme/net' is not in hub.lock (no hub.lock was found)"),
    ],
)
def test_unlocked_repo_under_each_lock_mode(mode: str, lock_path: Path | None, refused: str | None) -> None:
    pol = policy(lock={"mode": mode})
    if refused is None:
        check_unlocked_allowed("acme/net", pol, lock_path)
        return
    with pytest.raises(NotLocked) as err:
        check_unlocked_allowed("acme/net", pol, lock_path)
    assert err.value.code == "not-locked"
    assert err.value.message.startswith(refused)
    assert "`securehub lock acme/net`" in err.value.message


@pytest.mark.parametrize(
    ("allow", "admitted"),
    [
        (["file:///srv/net.git"], True),
        (["git+file:///srv/net.git"], True),
        (["*"], False),
        (["file:///srv/*"], False),
    ],
)
def test_file_remote_chosen_by_repo_must_be_named(allow: list[str], admitted: bool) -> None:
    spec = Spec("git", "git+file:///srv/net.git@v1", "file:///srv/net.git", "file:///srv/net.git")
    pol = policy(repos={"allow": allow})
    if admitted:
        check_file_remote_named(spec, pol)
        return
    with pytest.raises(RepoNotAllowed, match="a git repository on this machine that hub.lock does not pin"):
        check_file_remote_named(spec, pol)


@pytest.mark.parametrize(
    ("expected", "found", "fetched_from", "needle"),
    [
        (None, A, None, None),
        (A, A, ("r", "c"), None),
        (A, B, None, f"tree of the pinned commit: expected tree_sha256 {A} (from hub.lock), found {B}."),
        (A, B, ("https://h/x.git", "c" * 40), f"tree of https://h/x.git @ {'c' * 40}: expected tree_sha256 {A}"),
    ],
)
def test_locked_tree_digest(expected: str | None, found: str, fetched_from: tuple[str, str] | None,
                            needle: str | None) -> None:  # fmt: skip
    if needle is None:
        check_locked_tree_digest(expected, found, fetched_from=fetched_from)
        return
    with pytest.raises(HashMismatch) as err:
        check_locked_tree_digest(expected, found, fetched_from=fetched_from)
    assert err.value.message.startswith(needle)
    assert ("Nothing was cached" in err.value.message) == (fetched_from is not None)
    assert isinstance(err.value, SecureHubError) and err.value.code == "hash-mismatch"


@pytest.mark.parametrize(
    ("name", "ref_type", "allow", "pattern", "found"),
    [
        ("v1", "tag", "tags", "v*", None),
        ("main", "branch", "any", "*", None),
        ("v1", "tag", "any", "*", None),
        ("main", "branch", "tags", "*", "branch 'main'"),
        ("v1", "tag", "branches", "*", None),  # the message has no structured fields: checked below
        ("rel-1", "tag", "tags", "v*", "tag 'rel-1'"),
        ("rel-1", "tag", "any", "v*", "tag 'rel-1'"),  # the pattern applies whatever refs.allow says
    ],
)
def test_resolved_ref_allowed(name: str, ref_type: str, allow: str, pattern: str, found: str | None) -> None:
    refused = found is not None or (ref_type == "tag" and allow == "branches")
    if not refused:
        check_resolved_ref_allowed("acme/net", name, ref_type, allow, pattern)
        return
    with pytest.raises(RefNotAllowed) as err:
        check_resolved_ref_allowed("acme/net", name, ref_type, allow, pattern)
    assert err.value.code == "ref-not-allowed" and "of 'acme/net'" in err.value.message
    assert err.value.found == found
