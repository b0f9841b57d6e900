"""The broker checks an entrypoint's locked, cached blobs ahead of the child's request (issue 11, cold path).

``ArtifactBroker.checking_ahead`` runs, on a second thread, the checks a plain
``load_state_dict_from_url(url)`` would trigger, so the sandbox child does not wait
for them. What must still hold: a blob changed after that check is never answered
from it (the request runs the whole path and reports ``hash-mismatch``); nothing is
downloaded before the child asks; a request with other parameters gets its own
checks; a check that failed is reported by the request it belongs to; no thread
outlives the block. Real artifact server and cache; no sandbox (the e2e load is in
test_result_cache.py and the bench).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from securehub.errors import SecureHubError
from securehub.pipeline.broker import ArtifactBroker
from securehub.pipeline.context import Context, load_context
from securehub.pipeline.lock import lock_repos
from securehub.sandbox.parent.handoff import Verified
from securehub.sandbox.wire.messages import FetchRequest
from tests._hub_helpers import HubEnv, hub_env_context
from tests._pickle_fixtures import torch_zip_bytes
from tests._servers import GitServer


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("broker-ahead"), git_server) as e:
        yield e


def _locked(env: HubEnv, name: str, tmp_path: Path, *, cached: bool = True) -> tuple[Context, str, Path]:
    """A context whose hub.lock pins a pickle checkpoint at ``name``; its blob cached unless ``cached=False``."""
    torch.manual_seed(zlib.crc32(name.encode()))  # distinct bytes per test: blobs are shared by digest
    url = env.put(f"/ahead/{name}.pth", torch_zip_bytes(torch.nn.Linear(4, 3).state_dict()))
    lock = tmp_path / "hub.lock"
    lock_repos([], urls={url: None}, lock=lock)
    ctx = load_context(None, lock)
    pin = ctx.lock.artifact(url)
    assert pin is not None
    blob = ctx.cache.artifact_path(pin.sha256)
    if not cached:
        blob.chmod(0o644)
        blob.unlink()
    env.clear_logs()
    return ctx, url, blob


def _request(url: str, *, check_hash: bool = False, file_name: str | None = None) -> FetchRequest:
    return FetchRequest(url=url, kind="load_state_dict", check_hash=check_hash, file_name=file_name)


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every blob the broker's cache re-verification hashes (store.cache.file_sha256), by thread name."""
    import securehub.store.cache as cache_mod

    seen: list[str] = []
    real = cache_mod.file_sha256

    def counting(path: str | Path) -> str:
        seen.append(threading.current_thread().name)
        return real(path)

    monkeypatch.setattr(cache_mod, "file_sha256", counting)
    return seen


def _checked_ahead(
    env: HubEnv, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Context, str, Path, list[str], ArtifactBroker]:
    """A locked, cached blob, a spy on its hashes, and a broker for the URL's entrypoint."""
    ctx, url, blob = _locked(env, name, tmp_path)
    hashes = _count_hashes(monkeypatch)
    return ctx, url, blob, hashes, ArtifactBroker(ctx, entrypoint_urls=frozenset({url}))


def _finish_ahead(broker: ArtifactBroker) -> None:
    for future in list(broker._ahead.values()):
        future.result()


def test_request_is_answered_from_the_check_ahead_without_hashing_again(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, url, blob, hashes, broker = _checked_ahead(env, "plain", tmp_path, monkeypatch)

    with broker.checking_ahead([url]):
        _finish_ahead(broker)
        assert len(hashes) == 1 and hashes[0].startswith("securehub-broker")  # hashed on the broker's thread
        answer = broker(_request(url))

    assert isinstance(answer, Verified)
    assert answer.path == blob and answer.sha256 == ctx.lock.artifact(url).sha256  # type: ignore[union-attr]
    assert len(hashes) == 1  # the request did not hash the blob again
    assert [f.url for f in broker.fetched] == [url]  # recorded when the child asked, not before
    assert env.artifacts.requests == []


def test_blob_changed_after_the_check_ahead_is_hash_mismatch(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, url, blob, hashes, broker = _checked_ahead(env, "changed", tmp_path, monkeypatch)

    with broker.checking_ahead([url]):
        _finish_ahead(broker)
        blob.chmod(0o644)
        data = bytearray(blob.read_bytes())
        data[-1] ^= 1
        blob.write_bytes(bytes(data))  # same size: only the identity (mtime, ctime) tells
        with pytest.raises(SecureHubError) as excinfo:
            broker(_request(url))

    assert excinfo.value.code == "hash-mismatch", str(excinfo.value)
    assert len(hashes) == 2  # the request ran the whole check again, on the changed blob
    assert broker.fetched == []


def test_a_check_ahead_never_downloads_the_child_request_does(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, url, blob = _locked(env, "uncached", tmp_path, cached=False)
    broker = ArtifactBroker(ctx, entrypoint_urls=frozenset({url}))

    with broker.checking_ahead([url]):
        _finish_ahead(broker)
        assert env.artifacts.requests == []  # nothing fetched before the child asked
        assert not blob.exists()
        answer = broker(_request(url))

    assert isinstance(answer, Verified) and answer.path == blob
    assert len(env.artifacts.requests) == 1


def test_request_with_other_parameters_gets_its_own_checks(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, url, blob, hashes, broker = _checked_ahead(env, "other", tmp_path, monkeypatch)

    with broker.checking_ahead([url]):
        _finish_ahead(broker)
        # check_hash=True on a name with a prefix shorter than 8 hex digits is refused by the hash-prefix
        # rule even for a locked URL, which the check ahead (plain request) never ran: the request's own
        # checks decide.
        with pytest.raises(SecureHubError) as excinfo:
            broker(_request(url, check_hash=True, file_name="model-1a2b.pth"))

    assert excinfo.value.code == "artifact-not-allowed", str(excinfo.value)
    assert len(hashes) == 1  # only the check ahead hashed; the refused request stopped before the cache


def test_a_failed_check_ahead_is_reported_by_the_request(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, url, blob = _locked(env, "tampered", tmp_path)
    blob.chmod(0o644)
    blob.write_bytes(b"not the locked bytes")
    broker = ArtifactBroker(ctx, entrypoint_urls=frozenset({url}))

    with broker.checking_ahead([url]):
        _finish_ahead(broker)
        assert broker.fetched == []
        with pytest.raises(SecureHubError) as excinfo:
            broker(_request(url))

    assert excinfo.value.code == "hash-mismatch", str(excinfo.value)
    assert "expected sha256" in str(excinfo.value)


def test_no_thread_outlives_the_block_and_unasked_urls_are_not_recorded(env: HubEnv, tmp_path: Path) -> None:
    ctx, url, _ = _locked(env, "unasked", tmp_path)
    broker = ArtifactBroker(ctx, entrypoint_urls=frozenset({url}))

    with broker.checking_ahead([url, "https://example.invalid/not-locked.pth"]):
        assert len(broker._ahead) == 1  # only the locked URL is checked ahead

    assert broker._ahead == {}
    assert broker.fetched == []
    assert not [t for t in threading.enumerate() if t.name.startswith("securehub-broker")]
