"""Ref syntax rules (SPEC section 3) and the resolver's decisions, with an injected ls-remote."""

from __future__ import annotations

import pytest

from securehub._util.text import clean
from securehub.errors import RefAmbiguous, RefNotAllowed, RefNotFound
from securehub.resolve.git import RemoteRefs, parse_ls_remote, sanitize_git_output
from securehub.resolve.refs import check_ref_syntax, looks_like_commit_id
from securehub.resolve.resolver import resolve
from securehub.resolve.spec import RepoSpec

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40
SHA_D = "d" * 40


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("main", ("main", None)),
        ("v1.2.3", ("v1.2.3", None)),
        ("release/1.0", ("release/1.0", None)),
        ("heads/main", ("main", "heads")),
        ("tags/v1", ("v1", "tags")),
        ("feature-x_y", ("feature-x_y", None)),
        ("résumé", ("résumé", None)),
        ("cafe", ("cafe", None)),  # hex-looking: syntactically fine, decided after ls-remote
        ("a" * 40, ("a" * 40, None)),
        ("v1@2", ("v1@2", None)),
    ],
)
def test_accepted_ref_syntax(ref: str, expected: tuple[str, str | None]) -> None:
    assert check_ref_syntax(ref) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "pull/1/head",
        "pull/12/merge",
        "merge-requests/3/head",
        "refs/heads/main",
        "refs/tags/v1",
        "refs/pull/1/head",
        "HEAD",
        "FETCH_HEAD",
        "@",
        "main@{1}",
        "@{-1}",
        "@{upstream}",
        "a..b",
        "main~1",
        "main^",
        "v1^{}",
        "main:hubconf.py",
        "a\\b",
        "has space",
        "tab\there",
        "new\nline",
        "nul\0byte",
        "bell\x07",
        "del\x7f",
        "bidi\u202eoverride",
        "zero\u200bwidth",
        "nbsp\u00a0x",
        "-main",
        "--upload-pack=evil",
        "v1.lock",
        "a/b.lock/c",
        "a//b",
        "/main",
        "main/",
        "main.",
        ".hidden",
        "a/.hidden",
        "glob*",
        "what?",
        "br[ack]et",
        "heads/",
        "tags/",
        "heads/HEAD",
        "tags/refs/heads/x",
        "heads/-x",
        "tags/pull/1/head",
        "x" * 256,
    ],
)
def test_refused_ref_syntax(ref: str) -> None:
    with pytest.raises(RefNotAllowed) as info:
        check_ref_syntax(ref)
    assert info.value.code == "ref-not-allowed"
    assert "expected a branch or tag name" in info.value.message


@pytest.mark.parametrize(
    ("name", "is_sha"),
    [
        ("abcd", True),
        ("ABC123", True),
        ("abc", False),
        ("a" * 64, True),
        ("a" * 65, False),
        ("v1234", False),
        ("1234", True),
        ("g123", False),
    ],
)
def test_looks_like_commit_id(name: str, is_sha: bool) -> None:
    assert looks_like_commit_id(name) is is_sha


# --- resolver decisions with a fake remote -----------------------------------------------------

REFS = RemoteRefs(
    heads={"main": SHA_A, "dev": SHA_B, "both": SHA_A, "cafe": SHA_D},
    tags={"v1": SHA_C, "both": SHA_B, "rc-1": SHA_D, "1234": SHA_A},
    head_symref="main",
)


def _spec(ref: str | None) -> RepoSpec:
    key = "o/r" if ref is None else f"o/r:{ref}"
    return RepoSpec(key=key, kind="github", remote="https://example.invalid/o/r.git", ref=ref, name="o/r")


class _FakeRemote:
    def __init__(self, refs: RemoteRefs = REFS) -> None:
        self.refs = refs
        self.calls: list[str] = []

    def __call__(self, remote: str) -> RemoteRefs:
        self.calls.append(remote)
        return self.refs


@pytest.mark.parametrize(
    ("ref", "ref_type", "bare", "commit"),
    [
        ("main", "branch", "main", SHA_A),
        ("v1", "tag", "v1", SHA_C),
        ("heads/both", "branch", "both", SHA_A),
        ("tags/both", "tag", "both", SHA_B),
        ("cafe", "branch", "cafe", SHA_D),  # hex-looking but a real branch name
        ("1234", "tag", "1234", SHA_A),  # hex-looking but a real tag name
        (None, "branch", "main", SHA_A),
    ],
)
def test_resolve_exact_refs(ref: str | None, ref_type: str, bare: str, commit: str) -> None:
    resolved = resolve(_spec(ref), ls_remote=_FakeRemote())
    assert (resolved.ref, resolved.ref_type, resolved.commit) == (bare, ref_type, commit)


def test_ambiguous_name_refused() -> None:
    with pytest.raises(RefAmbiguous) as info:
        resolve(_spec("both"), ls_remote=_FakeRemote())
    assert info.value.code == "ref-ambiguous"
    assert "heads/both" in info.value.message and "tags/both" in info.value.message


@pytest.mark.parametrize("ref", ["nope", "heads/v1", "tags/main"])
def test_missing_ref_not_found(ref: str) -> None:
    with pytest.raises(RefNotFound) as info:
        resolve(_spec(ref), ls_remote=_FakeRemote())
    assert info.value.code == "ref-not-found"


@pytest.mark.parametrize("ref", ["deadbeef", SHA_C, "abcd", "tags/" + "e" * 12])
def test_commit_id_not_a_ref_refused(ref: str) -> None:
    with pytest.raises(RefNotAllowed) as info:
        resolve(_spec(ref), ls_remote=_FakeRemote())
    assert info.value.code == "ref-not-allowed"
    assert "commit id" in info.value.message


def test_policy_tags_refuses_missing_ref_before_network() -> None:
    remote = _FakeRemote()
    with pytest.raises(RefNotAllowed) as info:
        resolve(_spec(None), refs_policy_allow="tags", ls_remote=remote)
    assert "refuses a missing ref" in info.value.message
    assert remote.calls == []


def test_policy_tags_refuses_heads_prefix_before_network() -> None:
    remote = _FakeRemote()
    with pytest.raises(RefNotAllowed):
        resolve(_spec("heads/main"), refs_policy_allow="tags", ls_remote=remote)
    assert remote.calls == []


def test_policy_tags_refuses_branch() -> None:
    with pytest.raises(RefNotAllowed) as info:
        resolve(_spec("main"), refs_policy_allow="tags", ls_remote=_FakeRemote())
    assert "accepts tags only" in info.value.message


def test_policy_branches_refuses_tag() -> None:
    with pytest.raises(RefNotAllowed) as info:
        resolve(_spec("v1"), refs_policy_allow="branches", ls_remote=_FakeRemote())
    assert "accepts branches only" in info.value.message


def test_tag_pattern() -> None:
    assert resolve(_spec("v1"), refs_policy_allow="tags", tag_pattern="v*", ls_remote=_FakeRemote()).commit == SHA_C
    with pytest.raises(RefNotAllowed) as info:
        resolve(_spec("rc-1"), refs_policy_allow="tags", tag_pattern="v*", ls_remote=_FakeRemote())
    assert "tag_pattern" in info.value.message


def test_default_branch_missing_head() -> None:
    with pytest.raises(RefNotFound):
        resolve(_spec(None), ls_remote=_FakeRemote(RemoteRefs(heads={"main": SHA_A}, tags={}, head_symref=None)))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        resolve(_spec("main"), refs_policy_allow="everything", ls_remote=_FakeRemote())
    local = RepoSpec(key="/x", kind="local", remote="/x", ref=None, name="/x")
    with pytest.raises(ValueError):
        resolve(local, ls_remote=_FakeRemote())


def test_resolve_refuses_bad_ref_in_handmade_spec_before_network() -> None:
    remote = _FakeRemote()
    with pytest.raises(RefNotAllowed):
        resolve(_spec("refs/pull/1/head"), ls_remote=remote)
    assert remote.calls == []


# --- ls-remote parsing and output sanitising ---------------------------------------------------


def test_parse_ls_remote_peels_and_filters() -> None:
    out = (
        "ref: refs/heads/dev\tHEAD\n"
        f"{SHA_B}\tHEAD\n"
        f"{SHA_A}\trefs/heads/main\n"
        f"{SHA_B}\trefs/heads/dev\n"
        f"{SHA_D}\trefs/pull/1/head\n"
        f"{SHA_C}\trefs/tags/v1\n"
        f"{SHA_A}\trefs/tags/v1^{{}}\n"
        f"{SHA_D}\trefs/tags/light\n"
        f"{SHA_D}\trefs/notes/commits\n"
    )
    refs = parse_ls_remote(out)
    assert refs.heads == {"main": SHA_A, "dev": SHA_B}
    assert refs.tags == {"v1": SHA_A, "light": SHA_D}
    assert refs.head_symref == "dev"


@pytest.mark.parametrize("line", ["garbage", "zzzz\trefs/heads/x", f"{SHA_A[:39]}\trefs/heads/x"])
def test_parse_ls_remote_malformed(line: str) -> None:
    from securehub.errors import NetworkError

    with pytest.raises(NetworkError):
        parse_ls_remote(line + "\n")


def test_sanitize_git_output_redacts_and_strips() -> None:
    token = "ghp_" + "A" * 36
    text = (
        f"fatal: unable to access 'https://user:{token}@github.com/o/r.git/': \x1b[31mred\x1b[0m\n"
        "Authorization: Basic eC1hY2Nlc3MtdG9rZW46c2VjcmV0\n"
        "my-own-secret in output\n"
    )
    out = sanitize_git_output(text + "x" * 5000, secrets=["my-own-secret"])
    assert token not in out and "user:" not in out
    assert "eC1hY2Nlc3MtdG9rZW46c2VjcmV0" not in out
    assert "my-own-secret" not in out
    assert "\x1b" not in out and "[31m" not in out  # the escape sequence goes whole, not just its ESC
    assert out.endswith(" ...[truncated]") and len(out) == 2000  # the one sanitiser's cap and marker


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("token ghp_AAAAA\x00AAAAAAAAAAAAAAAAAAAA here", "AAAAAAAAAAAA"),  # a control char splitting a token
        ("token ghp_AAAAA\x1b[0mAAAAAAAAAAAAAAAAAAAA here", "AAAAAAAAAAAA"),  # an escape splitting a token
        ("https://user:p\u200bass@host/x.git", "pass"),  # a zero-width char inside credentials
    ],
)
def test_sanitize_git_output_redacts_what_the_sanitiser_would_rejoin(text: str, leak: str) -> None:
    out = sanitize_git_output(text)
    assert leak not in out and "[REDACTED]" in out


def test_sanitize_git_output_is_the_one_sanitiser_plus_redaction_and_no_blank_lines() -> None:
    text = "line \u202eevil\u202c one\r\n\n\t\n  two\ttab \x07\n"
    assert (
        sanitize_git_output(text)
        == clean("line \u202eevil\u202c one\n  two\ttab \x07", reveal=False)
        == ("line evil one\n  two    tab")
    )
