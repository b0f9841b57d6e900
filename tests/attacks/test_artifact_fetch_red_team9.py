"""Red team 9, fetch side (leftovers of red team 7): hostile artifact servers and mirrors.

All were refused already; these are the regressions. Each asserts the exact code and that nothing was
cached; where it matters, that the bytes were never decoded or that the origin was never contacted.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import resource

import pytest

from securehub.config.lockfile import ArtifactEntry
from securehub.errors import HashMismatch, SecureHubError
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
#: 256 MiB of zeros, about 250 KiB on the wire.
BOMB = gzip.compress(b"\0" * (256 << 20), compresslevel=9)
HTML = b"<!doctype html><html><body><h1>404 Not Found</h1><p>nginx</p></body></html>\n" * 8


def nothing_cached(hub_cache: Cache) -> bool:
    return blobs(hub_cache) == [] and tmp_entries(hub_cache) == []


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_gzip_bomb_with_content_encoding_is_never_decoded(
    server: ArtifactServer, hub_cache: Cache, encoding: str
) -> None:
    server.put("/resnet.pth", BOMB)
    url = server._set("/resnet.pth", extra_headers={"Content-Encoding": encoding})
    peak = _peak_rss_mib()
    with pytest.raises(HashMismatch) as exc:
        fetch(url, hub_cache, expected=LOCKED)  # locked: the wire bytes are compared, not a decoding
    assert exc.value.code == "hash-mismatch", exc.value.message
    assert nothing_cached(hub_cache)
    # Unlocked, what is stored is exactly what was sent (Accept-Encoding: identity, read undecoded).
    got = fetch(url, hub_cache)
    assert got.path.read_bytes() == BOMB
    assert _peak_rss_mib() - peak < 128, "the parent decoded the bomb"
    assert all(r.headers.get("accept-encoding") == "identity" for r in server.requests), server.requests


@pytest.mark.parametrize(("status", "code"), [(200, "hash-mismatch"), (203, "network")])
def test_html_error_page_answered_with_success_is_refused(
    server: ArtifactServer, hub_cache: Cache, status: int, code: str
) -> None:
    server.put("/resnet.pth", HTML)
    url = server._set("/resnet.pth", extra_headers={"Content-Type": "text/html"}, status=status)
    with pytest.raises(SecureHubError) as exc:
        fetch(url, hub_cache, expected=LOCKED)
    assert exc.value.code == code, exc.value.message  # only 200 is a body; its bytes must be the lock's
    assert nothing_cached(hub_cache)


@pytest.mark.parametrize("served", [b"X" * len(DATA), DATA[:-1], DATA + b"!", HTML])
def test_mirror_serving_another_blob_than_the_lock_is_refused_without_falling_back(
    server: ArtifactServer, other_server: ArtifactServer, hub_cache: Cache, served: bytes
) -> None:
    other_server.put("/resnet.pth", DATA)  # the origin has the right bytes: it must not be asked either
    server.put("/m/resnet.pth", served)
    mirrors = {other_server.url("/"): server.url("/m/")}
    with pytest.raises(HashMismatch) as exc:
        fetch(other_server.url("/resnet.pth"), hub_cache, expected=LOCKED, mirrors=mirrors, hosts=["127.0.0.2"])
    assert exc.value.code == "hash-mismatch", exc.value.message
    assert other_server.connections == 0
    assert nothing_cached(hub_cache)
