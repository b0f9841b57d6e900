"""Transport attacks on artifact downloads (notes/threats.md "Transport"), one test per attack.

Each test asserts the error code and that nothing happened: no blob cached, no temp file left,
and where it matters, no connection made to the host the attacker pointed at.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from securehub.config.lockfile import ArtifactEntry
from securehub.errors import ArtifactNotAllowed, HashMismatch, NetworkError
from securehub.fetch import _http
from securehub.store.cache import Cache
from tests._artifact_helpers import (  # *_fixture: pytest fixtures, registered by name
    blobs,
    clean_download_env_fixture,  # noqa: F401
    fetch,
    hub_cache_fixture,  # noqa: F401
    other_server_fixture,  # noqa: F401
    server_fixture,  # noqa: F401
    tmp_entries,
)
from tests._servers import ArtifactServer

DATA = os.urandom(100_000)
LOCKED = ArtifactEntry(hashlib.sha256(DATA).hexdigest(), len(DATA))
SECRET = "Bearer s3cret-token"


@pytest.fixture
def resolved_hosts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host name the process tries to resolve (a refused URL must not even reach DNS)."""
    seen: list[str] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(host.decode() if isinstance(host, bytes) else str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    return seen


def nothing_cached(hub_cache: Cache) -> bool:
    return blobs(hub_cache) == [] and tmp_entries(hub_cache) == []


# ------------------------------------------------------------------ integrity


def test_cache_poisoning_tampered_blob_is_refused_not_redownloaded(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/resnet.pth", DATA)
    path = fetch(url, hub_cache, expected=LOCKED).path
    path.chmod(0o644)
    path.write_bytes(b"evil" + DATA[4:])  # same size, other content
    server.clear_log()
    with pytest.raises(HashMismatch) as exc:
        fetch(url, hub_cache, expected=LOCKED)
    assert exc.value.code == "hash-mismatch"
    assert server.connections == 0  # not silently re-downloaded
    assert path.read_bytes().startswith(b"evil")  # left in place for inspection


def test_content_swapped_on_server_after_locking(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/resnet.pth", b"X" * len(DATA))  # same size, other bytes
    with pytest.raises(HashMismatch) as exc:
        fetch(url, hub_cache, expected=LOCKED)
    assert exc.value.code == "hash-mismatch"
    assert LOCKED.sha256 in str(exc.value)
    assert nothing_cached(hub_cache)


def test_content_swapped_to_shorter_file(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/resnet.pth", DATA[:-1])
    with pytest.raises(HashMismatch):
        fetch(url, hub_cache, expected=LOCKED)
    assert nothing_cached(hub_cache)


def test_endless_data_attack_stops_at_locked_size(server: ArtifactServer, hub_cache: Cache) -> None:
    # The body never ends: returning at all proves the reader stopped at locked size + 1 byte.
    url = server.set_endless("/resnet.pth")
    with pytest.raises(HashMismatch) as exc:
        fetch(url, hub_cache, expected=LOCKED)
    assert exc.value.code == "hash-mismatch"
    assert "more bytes than the locked size" in str(exc.value)
    assert nothing_cached(hub_cache)


def test_endless_data_reader_reads_at_most_cap_plus_one(server: ArtifactServer) -> None:
    url = server.set_endless("/resnet.pth")
    with _http.open_body(
        url,
        hosts=["127.0.0.1"],
        exempt_hosts=(),
        auth_headers_for=None,
        connect_timeout_s=5,
        read_timeout_s=5,
    ) as body:
        assert sum(len(c) for c in body.chunks(100_000)) == 100_001


def test_endless_data_attack_unlocked_stops_at_max_bytes(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.set_endless("/resnet.pth")
    with pytest.raises(ArtifactNotAllowed) as exc:
        fetch(url, hub_cache, max_bytes=50_000)
    assert exc.value.code == "artifact-not-allowed"
    assert "max_bytes" in str(exc.value)
    assert nothing_cached(hub_cache)


def test_oversized_content_length_refused_before_reading_body(server: ArtifactServer, hub_cache: Cache) -> None:
    # The server declares the full length, then stalls: reading any body would hit the read timeout
    # (network). Refusal on the header alone is artifact-not-allowed.
    url = server.put("/big.pth", DATA)
    server.set_stall("/big.pth", after_bytes=0)
    with pytest.raises(ArtifactNotAllowed) as exc:
        fetch(url, hub_cache, max_bytes=len(DATA) - 1, read_timeout_s=30)
    assert "Content-Length" in str(exc.value)
    assert nothing_cached(hub_cache)


def test_content_length_over_locked_size_refused_before_reading_body(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/big.pth", DATA + b"extra")
    server.set_stall("/big.pth", after_bytes=0)
    with pytest.raises(HashMismatch) as exc:
        fetch(url, hub_cache, expected=LOCKED, read_timeout_s=30)
    assert "more bytes than the locked size" in str(exc.value)
    assert nothing_cached(hub_cache)


def test_truncated_download_is_not_cached(server: ArtifactServer, hub_cache: Cache) -> None:
    url = server.put("/resnet.pth", DATA[:1000])
    server.set_headers("/resnet.pth", {"Content-Length": str(len(DATA))})  # lies, then goes quiet
    with pytest.raises(NetworkError):
        fetch(url, hub_cache, expected=LOCKED, read_timeout_s=0.5)
    assert nothing_cached(hub_cache)


# ------------------------------------------------------------------ redirects and hosts


def test_redirect_to_host_outside_allowlist(
    server: ArtifactServer, other_server: ArtifactServer, hub_cache: Cache
) -> None:
    target = other_server.put("/resnet.pth", DATA)
    url = server.add_redirect("/resnet.pth", target, 302)
    with pytest.raises(ArtifactNotAllowed) as exc:
        fetch(url, hub_cache, hosts=["127.0.0.1"])
    assert exc.value.code == "artifact-not-allowed"
    assert "127.0.0.2" in str(exc.value)
    assert other_server.connections == 0
    assert nothing_cached(hub_cache)


def test_redirect_to_localhost_alias_is_another_host(server: ArtifactServer, hub_cache: Cache) -> None:
    server.put("/real.pth", DATA)
    url = server.add_redirect("/resnet.pth", f"http://localhost:{server.port}/real.pth")
    with pytest.raises(ArtifactNotAllowed):
        fetch(url, hub_cache, hosts=["127.0.0.1"])
    assert [r.path for r in server.requests] == ["/resnet.pth"]
    assert nothing_cached(hub_cache)


def test_redirect_from_mirror_to_unlisted_host(
    server: ArtifactServer, other_server: ArtifactServer, hub_cache: Cache
) -> None:
    # The mirror's own host is trusted as configured; where it redirects to is not.
    other_server.put("/resnet.pth", DATA)
    server.add_redirect("/m/resnet.pth", other_server.url("/resnet.pth"))
    mirrors = {"https://download.example.invalid/": server.url("/m/")}
    with pytest.raises(ArtifactNotAllowed):
        fetch("https://download.example.invalid/resnet.pth", hub_cache, mirrors=mirrors, hosts=["*.invalid"])
    assert other_server.connections == 0
    assert nothing_cached(hub_cache)


def test_https_to_http_downgrade_refused_before_dns(
    server: ArtifactServer, hub_cache: Cache, resolved_hosts: list[str]
) -> None:
    # Served over a (loopback) mirror standing in for an https origin; the redirect downgrades to
    # plain http on a public name. Refusal must come before any DNS lookup or connection.
    server.add_redirect("/m/resnet.pth", "http://example.invalid/x", 302)
    mirrors = {"https://download.example.invalid/": server.url("/m/")}
    with pytest.raises(ArtifactNotAllowed) as exc:
        fetch("https://download.example.invalid/resnet.pth", hub_cache, mirrors=mirrors, hosts=["*"])
    assert "http://" in str(exc.value) and "example.invalid" in str(exc.value)
    assert "example.invalid" not in resolved_hosts
    assert nothing_cached(hub_cache)


@pytest.mark.parametrize(
    "location", ["ftp://127.0.0.1/x", "file:///etc/passwd", "data:application/octet-stream;base64,AAAA"]
)
def test_redirect_to_other_scheme_refused(server: ArtifactServer, hub_cache: Cache, location: str) -> None:
    url = server.add_redirect("/resnet.pth", location, 301)
    with pytest.raises(ArtifactNotAllowed):
        fetch(url, hub_cache)
    assert nothing_cached(hub_cache)


@pytest.mark.parametrize(
    "url", ["http://example.invalid/resnet.pth", "http://10.0.0.1/resnet.pth", "http://127.0.0.1.nip.io/x"]
)
def test_plain_http_to_non_loopback_refused_without_connecting(
    hub_cache: Cache, resolved_hosts: list[str], url: str
) -> None:
    with pytest.raises(ArtifactNotAllowed) as exc:
        fetch(url, hub_cache, hosts=["*"])
    assert exc.value.code == "artifact-not-allowed"
    assert resolved_hosts == []
    assert nothing_cached(hub_cache)


def test_plain_http_mirror_to_non_loopback_refused(hub_cache: Cache, resolved_hosts: list[str]) -> None:
    mirrors = {"https://download.example.invalid/": "http://mirror.example.invalid/"}
    with pytest.raises(ArtifactNotAllowed):
        fetch("https://download.example.invalid/resnet.pth", hub_cache, mirrors=mirrors, hosts=["*"])
    assert resolved_hosts == []


def test_redirect_loop_is_capped(server: ArtifactServer, hub_cache: Cache) -> None:
    server.add_redirect("/a", "/b", 302)
    url = server.add_redirect("/b", "/a", 307)
    with pytest.raises(NetworkError) as exc:
        fetch(url, hub_cache)
    assert exc.value.code == "network" and "redirect" in str(exc.value)
    assert len(server.requests) == _http.MAX_REDIRECTS + 1
    assert nothing_cached(hub_cache)


def test_redirect_within_cap_is_followed(server: ArtifactServer, hub_cache: Cache) -> None:
    server.put("/final.pth", DATA)
    for i in range(_http.MAX_REDIRECTS):
        server.add_redirect(f"/hop{i}", f"/hop{i + 1}" if i + 1 < _http.MAX_REDIRECTS else "/final.pth")
    assert fetch(server.url("/hop0"), hub_cache, expected=LOCKED).sha256 == LOCKED.sha256


# ------------------------------------------------------------------ credentials


def _auth(url: str) -> dict[str, str]:
    return {"Authorization": SECRET, "Cookie": "session=s3cret"}


def test_credentials_do_not_follow_cross_host_redirect(
    server: ArtifactServer, other_server: ArtifactServer, hub_cache: Cache
) -> None:
    other_server.put("/resnet.pth", DATA)
    url = server.add_redirect("/resnet.pth", other_server.url("/resnet.pth"))
    res = fetch(url, hub_cache, expected=LOCKED, hosts=["127.0.0.*"], auth_headers_for=_auth)
    assert res.sha256 == LOCKED.sha256
    (first,) = server.requests
    assert first.header("authorization") == SECRET  # the original host gets them
    (second,) = other_server.requests
    assert second.header("authorization") is None
    assert second.header("cookie") is None
    assert "s3cret" not in repr(second.headers)


def test_credentials_kept_on_same_origin_redirect(server: ArtifactServer, hub_cache: Cache) -> None:
    server.put("/real.pth", DATA)
    url = server.add_redirect("/resnet.pth", "/real.pth")
    fetch(url, hub_cache, expected=LOCKED, auth_headers_for=_auth)
    assert [r.header("authorization") for r in server.requests] == [SECRET, SECRET]


def test_netrc_credentials_never_attached(
    server: ArtifactServer,
    other_server: ArtifactServer,
    hub_cache: Cache,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.2 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    other_server.put("/resnet.pth", DATA)
    url = server.add_redirect("/resnet.pth", other_server.url("/resnet.pth"))
    fetch(url, hub_cache, expected=LOCKED, hosts=["127.0.0.*"])
    (second,) = other_server.requests
    assert second.header("authorization") is None


def test_credentials_in_url_refused(server: ArtifactServer, hub_cache: Cache) -> None:
    url = f"http://alice:s3cret@127.0.0.1:{server.port}/resnet.pth"
    with pytest.raises(ArtifactNotAllowed) as exc:
        fetch(url, hub_cache)
    assert "s3cret" not in str(exc.value)
    assert server.connections == 0
