"""Mirrors (policy + SECUREHUB_MIRRORS), offline switch, and the pure URL rules of the downloader."""

from __future__ import annotations

import json

import pytest

from securehub._util.net import is_loopback_host
from securehub.errors import ArtifactNotAllowed, PolicyInvalid
from securehub.fetch.artifacts import apply_mirror, offline_from_env, parse_mirrors
from securehub.trust.artifact import check_url

PT = "https://download.pytorch.org/"


def test_policy_mirrors_alone() -> None:
    assert parse_mirrors({PT: "http://127.0.0.1:8000/"}, None) == {PT: "http://127.0.0.1:8000/"}
    assert parse_mirrors({}, "") == {}
    assert parse_mirrors({}, "   ") == {}


def test_env_mirrors_merge_and_override_policy() -> None:
    env = json.dumps({PT: "https://env-mirror.example/", "https://other/": "https://m2.example/"})
    merged = parse_mirrors({PT: "https://policy-mirror.example/", "https://keep/": "https://k.example/"}, env)
    assert merged == {
        PT: "https://env-mirror.example/",
        "https://keep/": "https://k.example/",
        "https://other/": "https://m2.example/",
    }


@pytest.mark.parametrize(
    "env",
    [
        "{not json",
        "[]",
        '"https://x/"',
        json.dumps({PT: 5}),
        json.dumps({PT: None}),
        json.dumps({PT: ["https://m/"]}),
        json.dumps({"": "https://m/"}),
        json.dumps({PT: "ftp://mirror.example/"}),
        json.dumps({PT: "/srv/mirror/"}),
    ],
)
def test_invalid_env_mirrors_name_the_variable(env: str) -> None:
    with pytest.raises(PolicyInvalid) as exc:
        parse_mirrors({}, env)
    assert exc.value.code == "policy-invalid"
    assert "SECUREHUB_MIRRORS" in str(exc.value)


def test_invalid_policy_mirror_names_the_key() -> None:
    with pytest.raises(PolicyInvalid) as exc:
        parse_mirrors({PT: "file:///srv/mirror/"}, None)
    assert "artifacts.mirrors" in str(exc.value)


def test_longest_prefix_wins() -> None:
    mirrors = {
        "https://download.pytorch.org/": "https://short.example/",
        "https://download.pytorch.org/models/": "https://long.example/m/",
    }
    assert apply_mirror("https://download.pytorch.org/models/r.pth", mirrors) == "https://long.example/m/r.pth"
    assert apply_mirror("https://download.pytorch.org/other/r.pth", mirrors) == "https://short.example/other/r.pth"


@pytest.mark.parametrize(
    "url",
    [
        "HTTPS://DOWNLOAD.PYTORCH.ORG/models/R.pth",
        "https://Download.PyTorch.org./models/R.pth",
        "https://download.pytorch.org:443/models/R.pth",
        "https://download.pytorch.org:/models/R.pth",
    ],
)
def test_another_spelling_of_the_mirrored_origin_goes_to_the_mirror(url: str) -> None:
    """Red team 14: an upper-case host, a trailing dot or an explicit default port name the same origin; the
    mirror did not match them, so the request went to the origin (an air-gapped setup's egress). The path's
    case is kept."""
    assert apply_mirror(url, {PT: "https://m.example/pt/"}) == "https://m.example/pt/models/R.pth"
    assert apply_mirror(url, {"HTTPS://download.pytorch.org.:443/": "https://m.example/pt/"}) == (
        "https://m.example/pt/models/R.pth"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://download.pytorch.org:8443/models/r.pth",
        "http://download.pytorch.org/models/r.pth",
        "https://download.pytorch.org.evil.example/models/r.pth",
        "https://user@download.pytorch.org/models/r.pth",
    ],
)
def test_another_origin_is_not_mirrored(url: str) -> None:
    assert apply_mirror(url, {PT: "https://m.example/pt/"}) == url


def test_no_matching_prefix_leaves_url_alone() -> None:
    assert apply_mirror("https://example.org/r.pth", {PT: "https://m/"}) == "https://example.org/r.pth"
    assert apply_mirror("https://example.org/r.pth", {}) == "https://example.org/r.pth"


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_offline_from_env(monkeypatch: pytest.MonkeyPatch, value: str, offline: bool) -> None:
    monkeypatch.setenv("SECUREHUB_OFFLINE", value)
    assert offline_from_env() is offline


def test_offline_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECUREHUB_OFFLINE", raising=False)
    assert offline_from_env() is False


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("[::1]", True),
        ("128.0.0.1", False),
        ("localhost.example.com", False),
        ("127.0.0.1.nip.io", False),  # decided on the text, never by DNS
        ("example.invalid", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org/model.pth",
        "http://127.0.0.1:8000/model.pth",
        "http://localhost/model.pth",
        "http://[::1]:9/model.pth",
        # red team 14: plain ASCII host spellings stay admitted (an IDN in its xn-- form, '_', a trailing dot)
        "https://xn--wights-4ya.example.com/model.pth",
        "https://my_bucket.s3.amazonaws.com/model.pth",
        "https://Example.ORG./model.pth",
    ],
)
def test_allowed_urls(url: str) -> None:
    check_url(url, hosts=["*"], role="artifact URL")


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/model.pth",
        "ftp://example.org/model.pth",
        "file:///etc/passwd",
        "data:application/octet-stream;base64,AAAA",
        "//example.org/model.pth",
        "https:///nohost",
        "https://user:s3cret@example.org/model.pth",
        "https://s3cret@example.org/model.pth",
        "https://s3cret@example.org:notaport/model.pth",
        # red team 14: hosts that read as another host, or are not DNS names at all
        "https://w\u0435ights.example.com/model.pth",
        "https://\uff57eights.example.com/model.pth",
        "https://weights\u3002example.com/model.pth",
        "https://weights%2eexample.com/model.pth",
        "https://s3cret@w\u0435ights.example.com/model.pth",
        "https://-weights.example.com/model.pth",
        "https://weights..example.com/model.pth",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(ArtifactNotAllowed) as exc:
        check_url(url, hosts=["*"], role="artifact URL")
    assert exc.value.code == "artifact-not-allowed"
    assert "s3cret" not in str(exc.value)  # never echo credentials


def test_host_allowlist_globs() -> None:
    hosts = ["download.pytorch.org", "*.example.com"]
    check_url("https://DOWNLOAD.pytorch.org./x", hosts=hosts, role="artifact URL")
    check_url("https://a.b.example.com:8443/x", hosts=hosts, role="artifact URL")
    for url in ("https://example.com/x", "https://evil.org/x", "https://download.pytorch.org.evil.org/x"):
        with pytest.raises(ArtifactNotAllowed):
            check_url(url, hosts=hosts, role="artifact URL")


def test_exempt_host_skips_allowlist_not_scheme() -> None:
    exempt = {"mirror.internal"}
    check_url("https://mirror.internal/x", hosts=["a.org"], exempt_hosts=exempt, role="r")
    with pytest.raises(ArtifactNotAllowed):
        check_url("http://mirror.internal/x", hosts=["a.org"], exempt_hosts=exempt, role="r")
    check_url("https://anything.org/x", hosts=None, role="mirror URL")
