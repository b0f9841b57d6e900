"""``repo_or_dir`` parsing (SPEC section 2): accepted forms and refusals, no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from securehub.errors import RefNotAllowed, RepoNotAllowed
from securehub.resolve.spec import github_base_url, is_loopback_host, parse_spec


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECUREHUB_GITHUB_URL", raising=False)


def test_github_form_with_ref() -> None:
    spec = parse_spec("pytorch/vision:v0.10.0")
    assert spec.key == "pytorch/vision:v0.10.0"
    assert spec.kind == "github"
    assert spec.remote == "https://github.com/pytorch/vision.git"
    assert spec.ref == "v0.10.0"
    assert spec.name == "pytorch/vision"
    assert spec.local_path is None


def test_github_form_without_ref_and_prefixed_ref() -> None:
    assert parse_spec("owner/repo").ref is None
    assert parse_spec("owner/repo:tags/v1").ref == "tags/v1"
    assert parse_spec("o-1/re.po_x-y:release/1.0").ref == "release/1.0"


def test_github_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", "https://ghe.example.com/")
    assert parse_spec("o/r:v1").remote == "https://ghe.example.com/o/r.git"
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", "http://127.0.0.1:8080")
    assert parse_spec("o/r").remote == "http://127.0.0.1:8080/o/r.git"


@pytest.mark.parametrize(
    "value",
    [
        "http://github.example.com",
        "ftp://host",
        "https://user:pw@ghe.example.com",
        "https://token@ghe.example.com",
        "https://ghe.example.com?x=1",
        "ext::sh -c evil",
        "https://",
    ],
)
def test_github_base_url_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", value)
    with pytest.raises(RepoNotAllowed) as info:
        github_base_url()
    assert info.value.code == "repo-not-allowed"


@pytest.mark.parametrize(
    "spec",
    [
        "owner",
        "owner/",
        "/repo",
        "owner/repo/extra",
        "owner//repo",
        "-owner/repo",
        "owner/-repo",
        "owner/..",
        "owner/.",
        "owner/re..po",
        "own er/repo",
        "owner/repo name",
        "ow$ner/repo",
        "owner/repo.git",
        "o" * 40 + "/repo",
        "owner/" + "r" * 101,
        "https://github.com/owner/repo",
        "ssh://host/repo",
        "ext::sh -c touch% /tmp/pwned",
        "fd::3",
        "git@github.com:owner/repo.git",
        "owner/repo%0a",
        "",
    ],
)
def test_malformed_github_specs_refused(spec: str) -> None:
    with pytest.raises(RepoNotAllowed) as info:
        parse_spec(spec)
    assert info.value.code == "repo-not-allowed"
    assert "expected" in info.value.message


@pytest.mark.parametrize("spec", ["owner/repo:", "owner/repo:HEAD", "owner/repo:pull/1/head", "owner/repo:a:b"])
def test_bad_ref_in_spec_refused_at_parse(spec: str) -> None:
    with pytest.raises(RefNotAllowed):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("spec", "remote", "ref"),
    [
        (
            "git+https://gitlab.example.com/group/sub/repo.git@v1",
            "https://gitlab.example.com/group/sub/repo.git",
            "v1",
        ),
        ("git+https://gitlab.example.com/group/repo.git", "https://gitlab.example.com/group/repo.git", None),
        ("git+https://host:8443/r.git@release/2.0", "https://host:8443/r.git", "release/2.0"),
        ("git+ssh://git@github.com/owner/repo.git@v2", "ssh://git@github.com/owner/repo.git", "v2"),
        ("git+ssh://git@github.com/owner/repo.git", "ssh://git@github.com/owner/repo.git", None),
        ("git+ssh://host:2222/owner/repo.git@tags/x", "ssh://host:2222/owner/repo.git", "tags/x"),
        ("git+file:///srv/git/repo.git@main", "file:///srv/git/repo.git", "main"),
        ("git+file:///srv/git/repo.git", "file:///srv/git/repo.git", None),
        ("git+http://127.0.0.1:9000/o/r.git@v1", "http://127.0.0.1:9000/o/r.git", "v1"),
        ("git+http://127.8.9.10/o/r.git", "http://127.8.9.10/o/r.git", None),
        ("git+http://localhost:9000/o/r.git@v1", "http://localhost:9000/o/r.git", "v1"),
        ("git+http://[::1]:9000/o/r.git@v1", "http://[::1]:9000/o/r.git", "v1"),
    ],
)
def test_git_url_forms(spec: str, remote: str, ref: str | None) -> None:
    parsed = parse_spec(spec)
    assert parsed.kind == "git"
    assert parsed.key == spec
    assert parsed.remote == remote
    assert parsed.name == remote
    assert parsed.ref == ref


@pytest.mark.parametrize(
    "spec",
    [
        "git+http://example.com/o/r.git@v1",  # plain http to a non-loopback host
        "git+http://10.0.0.1/o/r.git",
        "git+http://localhost.example.com/o/r.git",
        "git+git://host/o/r.git",
        "git+ftp://host/o/r.git",
        "git+ext::sh -c touch /tmp/pwned",
        "git+ext::sh%20-c%20evil",
        "git+fd::3",
        "git+https://user:pass@host/o/r.git",
        "git+https://token@host/o/r.git",
        "git+ssh://git:password@host/o/r.git",
        "git+ssh://-oProxyCommand=touch%20pwned/o/r.git",
        "git+ssh://-oProxyCommand=x@host/o/r.git",
        "git+ssh://host/-o/r.git",
        "git+https://host",
        "git+https://host/",
        "git+https://host:notaport/o/r.git",
        "git+https://host/o/r.git?x=1",
        "git+https://host/o/r.git#frag",
        "git+file://otherhost/srv/repo.git",
        "git+file:relative/path",
        "git+https:/host/o/r.git",
        "git+https://host/o/r.git%0a@v1",
        "git+https://ho st/o/r.git",
        "git+https://host/o/r.git\n@v1",
    ],
)
def test_git_url_refusals(spec: str) -> None:
    with pytest.raises(RepoNotAllowed) as info:
        parse_spec(spec)
    assert info.value.code == "repo-not-allowed"


def test_git_url_bad_ref_refused() -> None:
    with pytest.raises(RefNotAllowed):
        parse_spec("git+https://host/o/r.git@refs/pull/1/head")
    with pytest.raises(RefNotAllowed):
        parse_spec("git+https://host/o/r.git@")


def test_local_source(tmp_path: Path) -> None:
    (tmp_path / "hubconf.py").write_text("dependencies = []\n")
    spec = parse_spec(str(tmp_path), source="local")
    assert spec.kind == "local"
    assert spec.local_path == tmp_path.resolve()
    assert spec.name == spec.key == spec.remote == str(tmp_path.resolve())
    assert spec.ref is None


def test_local_source_refusals(tmp_path: Path) -> None:
    with pytest.raises(RepoNotAllowed):
        parse_spec(str(tmp_path), source="local")  # no hubconf.py
    with pytest.raises(RepoNotAllowed):
        parse_spec(str(tmp_path / "missing"), source="local")


def test_programmer_misuse() -> None:
    with pytest.raises(ValueError):
        parse_spec("o/r", source="gitlab")
    with pytest.raises(TypeError):
        parse_spec(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback_host(host: str, expected: bool) -> None:
    assert is_loopback_host(host) is expected
