"""``securehub.load_state_dict_from_url`` / ``download_url_to_file`` in the calling process (SPEC sections 2, 5, 9).

Against a real loopback artifact server; no sandbox is involved. Every refusal asserts the exact
``.code``, that the payload did not run (canary), and that nothing was cached or written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

import securehub
from securehub.errors import SecureHubError
from tests._hub_helpers import HubEnv, Snapshot, audit_records, hub_env_context, write_policy
from tests._pickle_fixtures import reduce_call, torch_zip_bytes
from tests._servers import GitServer


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("api-downloads"), git_server) as e:
        yield e


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return {k: v.contiguous() for k, v in torch.nn.Linear(3, 2).state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for k, value in a.items():
        assert torch.equal(value, b[k]), k


def _expect(code: str, fn: object, *args: object, **kwargs: object) -> str:
    assert callable(fn)
    with pytest.raises(SecureHubError) as excinfo:
        fn(*args, **kwargs)
    assert excinfo.value.code == code, str(excinfo.value)
    return str(excinfo.value)


def test_safetensors_checkpoint_loads(env: HubEnv) -> None:
    url = env.artifacts.put("/dl/ok.safetensors", save(_state()))
    _equal(securehub.load_state_dict_from_url(url, progress=False), _state())


def test_torch_save_pickle_checkpoint_loads_weights_only(env: HubEnv) -> None:
    url = env.artifacts.put("/dl/ok.pth", torch_zip_bytes(_state()))
    _equal(securehub.load_state_dict_from_url(url, progress=False), _state())


def test_check_hash_with_name_lacking_an_8_hex_prefix_is_refused_before_download(env: HubEnv) -> None:
    data = torch_zip_bytes(_state())
    short = hashlib.sha256(data).hexdigest()[:6]
    before = Snapshot.take(env.hub)
    for name in ("model.pth", f"model-{short}.pth"):
        url = env.artifacts.put(f"/dl/{name}", data)
        env.clear_logs()

        _expect("artifact-not-allowed", securehub.load_state_dict_from_url, url, check_hash=True, progress=False)

        assert env.artifacts.requests == []
    before.assert_unchanged(env.hub)


def test_hash_prefix_mismatch_is_hash_mismatch(env: HubEnv) -> None:
    data = torch_zip_bytes(_state())
    wrong = "0" * 8 if not hashlib.sha256(data).hexdigest().startswith("0" * 8) else "1" * 8
    url = env.artifacts.put(f"/dl/model-{wrong}.pth", data)
    before = Snapshot.take(env.hub)

    _expect("hash-mismatch", securehub.load_state_dict_from_url, url, check_hash=True, progress=False)
    _expect("hash-mismatch", securehub.load_state_dict_from_url, url, progress=False)  # enforced when present

    before.assert_unchanged(env.hub)


def test_matching_hash_prefix_with_check_hash_loads(env: HubEnv) -> None:
    data = torch_zip_bytes(_state())
    url = env.artifacts.put(f"/dl/model-{hashlib.sha256(data).hexdigest()[:10]}.pth", data)
    _equal(securehub.load_state_dict_from_url(url, check_hash=True, progress=False), _state())


def test_pickle_named_safetensors_is_detected_and_scanned(env: HubEnv, tmp_path: Path) -> None:
    canary = tmp_path / "pickle-canary"
    evil = env.artifacts.put("/dl/evil.safetensors", reduce_call("os", "system", f"touch {canary}"))
    benign = env.artifacts.put("/dl/benign.safetensors", torch_zip_bytes(_state()))

    msg = _expect("unsafe-pickle", securehub.load_state_dict_from_url, evil, progress=False)

    assert "system" in msg
    assert not canary.exists()
    _equal(securehub.load_state_dict_from_url(benign, progress=False), _state())  # a pickle, scanned clean


def test_explicit_sha256_mismatch_is_hash_mismatch(env: HubEnv) -> None:
    data = save(_state())
    url = env.artifacts.put("/dl/pinned.safetensors", data)
    before = Snapshot.take(env.hub)

    msg = _expect("hash-mismatch", securehub.load_state_dict_from_url, url, sha256="ab" * 32, progress=False)

    assert "ab" * 32 in msg
    _equal(securehub.load_state_dict_from_url(url, sha256=hashlib.sha256(data).hexdigest(), progress=False), _state())
    assert before.trees == Snapshot.take(env.hub).trees


def test_format_not_allowed_by_policy(env: HubEnv, tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "st-only.yaml", "default", artifacts={"formats": ["safetensors"]})
    url = env.artifacts.put("/dl/fmt.pth", torch_zip_bytes(_state()))
    ok = env.artifacts.put("/dl/fmt.safetensors", save(_state()))

    msg = _expect("format-not-allowed", securehub.load_state_dict_from_url, url, policy=str(policy), progress=False)

    assert "pickle" in msg
    _equal(securehub.load_state_dict_from_url(ok, policy=str(policy), progress=False), _state())


def test_download_url_to_file_writes_dst_atomically(env: HubEnv, tmp_path: Path) -> None:
    data = b"vocabulary\n" * 100
    url = env.artifacts.put("/dl/vocab.txt", data)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "vocab.txt"
    dst.write_bytes(b"old")

    securehub.download_url_to_file(url, dst, progress=False)

    assert dst.read_bytes() == data
    assert sorted(p.name for p in out.iterdir()) == ["vocab.txt"]  # no temp file left next to it


def test_download_url_to_file_leaves_no_dst_on_failure(env: HubEnv, tmp_path: Path) -> None:
    url = env.artifacts.put("/dl/blob.bin", b"x" * 1000)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "blob.bin"
    before = Snapshot.take(env.hub)

    _expect("hash-mismatch", securehub.download_url_to_file, url, dst, sha256="00" * 32, progress=False)
    _expect("hash-mismatch", securehub.download_url_to_file, url, dst, hash_prefix="00000000", progress=False)

    assert list(out.iterdir()) == []
    before.assert_unchanged(env.hub)
    existing = out / "keep.bin"
    existing.write_bytes(b"keep")
    _expect("hash-mismatch", securehub.download_url_to_file, url, existing, sha256="00" * 32, progress=False)
    assert existing.read_bytes() == b"keep"
    assert sorted(p.name for p in out.iterdir()) == ["keep.bin"]


def test_strict_unpickles_only_inside_the_sandbox(env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC section 8, strict: pickle only inside the sandbox with weights_only=True after a clean scan."""
    import pickle

    from securehub.config.lockfile import ArtifactEntry, Lockfile

    data = torch_zip_bytes(_state())
    url = env.put("dl/strict.pth", data)
    lock = tmp_path / "hub.lock"
    Lockfile.empty().with_artifact(url, ArtifactEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))).save(
        lock
    )
    monkeypatch.setenv("SECUREHUB_LOCK", str(lock))

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("unpickling in the calling process under strict")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    state = securehub.load_state_dict_from_url(url, policy="strict", progress=False)
    _equal(state, _state())
    record = [line for line in env.audit_log.read_text().splitlines() if '"load_state_dict_from_url"' in line][-1]
    assert '"level":"full"' in record


def test_strict_refuses_unlocked_artifact_before_download(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = env.put("dl/unlocked.pth", torch_zip_bytes(_state()))
    monkeypatch.setenv("SECUREHUB_LOCK", str(tmp_path / "none.lock"))
    env.clear_logs()
    with pytest.raises(SecureHubError) as info:
        securehub.load_state_dict_from_url(url, policy="strict", progress=False)
    assert info.value.code == "not-locked"
    assert not env.artifacts.requests


def test_weights_only_false_is_refused_and_audited(env: HubEnv) -> None:
    url = env.put("dl/wo.pth", torch_zip_bytes(_state()))
    before = len(env.audit_log.read_text().splitlines()) if env.audit_log.exists() else 0
    env.clear_logs()
    with pytest.raises(SecureHubError, match="weights_only=False") as info:
        securehub.load_state_dict_from_url(url, weights_only=False, progress=False)
    assert info.value.code == "format-not-allowed"
    assert not env.artifacts.requests  # refused before any download
    lines = env.audit_log.read_text().splitlines()
    assert len(lines) == before + 1
    assert '"outcome":"refused"' in lines[-1] and '"code":"format-not-allowed"' in lines[-1]


# --------------------------------------------------------------------------- short hash_prefix (issue 12)


def test_short_hash_prefix_is_accepted_as_torch_hub_does_checked_and_audited(env: HubEnv, tmp_path: Path) -> None:
    """torch.hub accepts download_url_to_file(hash_prefix='0e84'); so does the default policy, and says so."""
    data = b"vocabulary\n" * 50
    digest = hashlib.sha256(data).hexdigest()
    url = env.artifacts.put("/dl/vocab-short.txt", data)
    dst = tmp_path / "vocab.txt"
    env.clear_logs()

    securehub.download_url_to_file(url, dst, hash_prefix=digest[:4].upper(), progress=False, policy="default")

    assert dst.read_bytes() == data
    record = audit_records(env)[-1]
    assert record["spec"] == url
    assert (record["action"], record["outcome"], record["code"]) == ("download_url_to_file", "ok", None)
    (note,) = record["policy"]["overrides"]
    assert f"hash_prefix={digest[:4].upper()!r} (4 hex digits)" in note and "no integrity guarantee" in note


def test_short_hash_prefix_that_does_not_match_is_hash_mismatch(env: HubEnv, tmp_path: Path) -> None:
    data = b"other vocabulary\n" * 50
    wrong = "0" if not hashlib.sha256(data).hexdigest().startswith("0") else "1"
    url = env.artifacts.put("/dl/vocab-wrong.txt", data)
    dst = tmp_path / "vocab.txt"
    before = Snapshot.take(env.hub)
    _expect("hash-mismatch", securehub.download_url_to_file, url, dst, hash_prefix=wrong, progress=False)
    assert not dst.exists()
    before.assert_unchanged(env.hub)


def test_short_hash_prefix_is_refused_under_lock_mode_required(
    env: HubEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """strict (lock.mode: required) keeps the stricter rule, even for a locked URL, before any download."""
    from securehub.config.lockfile import ArtifactEntry, Lockfile

    data = b"locked vocabulary\n" * 50
    digest = hashlib.sha256(data).hexdigest()
    url = env.artifacts.put("/dl/vocab-locked.txt", data)
    lock = tmp_path / "hub.lock"
    Lockfile.empty().with_artifact(url, ArtifactEntry(sha256=digest, size=len(data))).save(lock)
    monkeypatch.setenv("SECUREHUB_LOCK", str(lock))
    lock_bytes = lock.read_bytes()
    env.clear_logs()
    before = Snapshot.take(env.hub)
    for policy in ("strict", str(write_policy(tmp_path / "req.yaml", "default", lock={"mode": "required"}))):
        message = _expect(
            "artifact-not-allowed", securehub.download_url_to_file, url, tmp_path / "v.txt",
            hash_prefix=digest[:4], progress=False, policy=policy,
        )  # fmt: skip
        assert "8 to 64 hex digits" in message
    assert env.artifacts.requests == []
    assert not (tmp_path / "v.txt").exists() and lock.read_bytes() == lock_bytes
    before.assert_unchanged(env.hub)
