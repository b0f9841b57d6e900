"""The verified result cache end to end: a warm load of a locked entrypoint skips the sandbox.

Real git smart-HTTP server, real artifact server, real sandbox. ``load_cached`` below is what
``securehub.load`` does once ``securehub.pipeline.result_cache.cached_or_run`` is wired into it (see
docs/performance.md): policy + lock -> verified tree -> ``cached_or_run`` with a ``run``
callback that starts the sandbox. Tests pass a spy as ``run`` to prove a hit never starts it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import securehub
from securehub.config.lockfile import Lockfile
from securehub.errors import EntrypointError, HashMismatch, ReconstructRefused
from securehub.pipeline.audit_line import Audit
from securehub.pipeline.context import load_context
from securehub.pipeline.lock import lock_repos
from securehub.pipeline.result_cache import LoadOutcome, cached_or_run, result_inputs, result_key
from securehub.pipeline.sandbox_run import tree_and_run
from securehub.pipeline.tree import verified_tree
from securehub.sandbox.parent.session import SandboxResult
from securehub.store.cache import Cache
from securehub.verify import fast_safetensors
from securehub.verify.tensor_digest import file_lines, lines_digest
from tests._servers import ArtifactServer, RepoFactory

REPO = "acme/cached"


def _weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(1234)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).state_dict()


def _hubconf(url: str) -> str:
    return f'''dependencies = ["torch"]
import torch
from torch import nn


def model(pretrained=True, hidden=8):
    m = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 2))
    if pretrained:
        m.load_state_dict(torch.hub.load_state_dict_from_url("{url}", progress=False))
    return m
'''


@dataclass
class Runs:
    """Counts sandbox runs made through :func:`load_cached`."""

    count: int = 0
    results: list[SandboxResult] = field(default_factory=list)


def load_cached(
    spec: str,
    model: str,
    *args: Any,
    lock: Path,
    policy: str | Path | None = None,
    force_reload: bool = False,
    run_spy: Callable[[Path], SandboxResult] | None = None,
    runs: Runs | None = None,
    **kwargs: Any,
) -> LoadOutcome:
    """The wired ``securehub.load`` path (without the audit line)."""
    ctx = load_context(policy, lock)
    tree = verified_tree(ctx, spec, force_reload=False)
    audit = Audit("load", spec=spec, entrypoint=model)

    def run(out: Path) -> SandboxResult:
        _, result = tree_and_run(
            ctx, audit, "load", spec, (model, args, kwargs),
            source="github", force_reload=False, verbose=False, example_inputs=None, out_dir=out, pending=[],
        )  # fmt: skip
        if runs is not None:
            runs.count += 1
            runs.results.append(result)
        return result

    return cached_or_run(
        ctx, tree, model, args, kwargs, example_inputs=None, force_reload=force_reload, run=run_spy or run
    )


def _never(out: Path) -> SandboxResult:
    raise AssertionError("the sandbox was started on a cache hit")


@pytest.fixture
def locked(
    github_url: str, hub_dir: Path, repo_factory: RepoFactory, artifact_server: ArtifactServer, tmp_path: Path
) -> tuple[str, Path, dict[str, torch.Tensor]]:
    """A tagged repo whose ``model`` entrypoint fetches a .pth from the artifact server, locked with -e model."""
    weights = _weights()
    buf = io.BytesIO()
    torch.save(weights, buf)
    data = buf.getvalue()
    url = artifact_server.put(f"/w/model-{hashlib.sha256(data).hexdigest()[:10]}.pth", data)
    repo = repo_factory.make_repo(REPO, {"hubconf.py": _hubconf(url)})
    repo.tag("v1")
    lock = tmp_path / "hub.lock"
    lock_repos([f"{REPO}:v1"], entrypoints=["model"], lock=lock, policy=str(_loopback_named_policy(tmp_path)))
    return f"{REPO}:v1", lock, weights


def _loopback_named_policy(tmp_path: Path) -> Path:
    """The default policy naming 127.0.0.1 literally in artifacts.hosts: the hubconfs here fetch straight
    from the loopback artifact server, which an unlocked, repository-chosen URL may not reach otherwise (SSRF)."""
    path = tmp_path / "loopback-named.yaml"
    path.write_text("version: 1\nextends: default\nartifacts:\n  hosts: ['*', '127.0.0.1']\n")
    return path


def _results(hub_dir: Path) -> list[str]:
    d = hub_dir / "results"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _assert_weights(module: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert sorted(got) == sorted(weights)
    for k, v in weights.items():
        assert torch.equal(got[k], v), k


def test_warm_load_is_a_hit_and_never_starts_the_sandbox(locked: tuple[str, Path, Any], hub_dir: Path) -> None:
    spec, lock, weights = locked
    runs = Runs()
    first = load_cached(spec, "model", lock=lock, runs=runs)
    assert first.cache == "miss"
    assert runs.count == 1
    assert _results(hub_dir) == [first.key]
    _assert_weights(first.module, weights)

    second = load_cached(spec, "model", lock=lock, run_spy=_never)
    assert second.cache == "hit"
    assert second.key == first.key
    assert second.result is None
    assert second.strategy == first.strategy == "trusted"
    _assert_weights(second.module, weights)
    assert [url for url, _ in second.artifacts] == [url for url, _ in first.artifacts]
    x = torch.randn(3, 8)
    assert torch.equal(first.module(x), second.module(x))


def test_each_load_hashes_the_artifact_once_and_a_pinned_hit_skips_the_state_file_digest(
    locked: tuple[str, Path, Any], hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 11 (cold and warm paths): a miss does not re-hash the locked blob before the sandbox
    # runs (the broker verifies what the child fetches, once); a hit whose output hub.lock pins is
    # anchored by the canonical digest of the tensors read, compared with the pin, so neither the
    # state file's sha256 nor the untouched locked blob is hashed (item 4: "a hit then needs no
    # artifact re-hash"); a touched blob is (next test).
    spec, lock, weights = locked
    blob_checks: list[str] = []
    state_digests: list[str | None] = []
    real_blob, real_state = Cache.verified_artifact, fast_safetensors.load_verified

    def blob_spy(self: Cache, sha256: str) -> Path | None:
        blob_checks.append(sha256)
        return real_blob(self, sha256)

    def state_spy(path: Any, *, expected_sha256: str | None, **kw: Any) -> dict[str, torch.Tensor]:
        state_digests.append(expected_sha256)
        return real_state(path, expected_sha256=expected_sha256, **kw)

    monkeypatch.setattr(Cache, "verified_artifact", blob_spy)
    monkeypatch.setattr(fast_safetensors, "load_verified", state_spy)
    (sha,) = [a.sha256 for a in Lockfile.load(lock).artifacts.values()]

    policy = str(_loopback_named_policy(hub_dir.parent))
    assert Lockfile.load(lock).repos[spec].entrypoints["model"].outputs  # the output is pinned

    cold = securehub.load(spec, "model", lock=str(lock), policy=policy, verbose=False)
    assert (blob_checks, state_digests, len(_results(hub_dir))) == ([sha], [], 1)  # a miss, then stored
    blob_checks.clear()
    warm = securehub.load(spec, "model", lock=str(lock), policy=policy, verbose=False)
    assert (blob_checks, state_digests) == ([], [None])  # a pinned hit: no blob re-hash, no state file digest
    _assert_weights(warm, weights)
    _assert_weights(cold, weights)

    # The pin still anchors the entry: different tensors under a consistent manifest are refused.
    _rewrite_state_consistently(hub_dir / "results" / _results(hub_dir)[0], {k: v + 1 for k, v in weights.items()})
    with pytest.raises(HashMismatch) as info:
        securehub.load(spec, "model", lock=str(lock), policy=policy, verbose=False)
    assert info.value.code == "hash-mismatch"


def test_a_pinned_hit_re_hashes_a_locked_blob_changed_since_the_entry_was_stored(
    locked: tuple[str, Path, Any], hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SPEC section 4: tampering with a cached artifact is caught on every load, also on a pinned hit
    # that does not need the blob: one byte flipped in place, size and mtime restored (only the ctime,
    # which no one can set back, betrays the write) -> re-hashed -> hash-mismatch, nothing served.
    spec, lock, weights = locked
    policy = str(_loopback_named_policy(hub_dir.parent))
    securehub.load(spec, "model", lock=str(lock), policy=policy, verbose=False)  # stores the entry
    (sha,) = [a.sha256 for a in Lockfile.load(lock).artifacts.values()]
    blob = hub_dir / "artifacts" / "sha256" / sha
    before = blob.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    blob.chmod(before.st_mode & 0o777)
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    blob_checks: list[str] = []
    real_blob = Cache.verified_artifact
    monkeypatch.setattr(Cache, "verified_artifact", lambda self, s: blob_checks.append(s) or real_blob(self, s))

    with pytest.raises(HashMismatch) as info:
        securehub.load(spec, "model", lock=str(lock), policy=policy, verbose=False)

    assert info.value.code == "hash-mismatch" and sha in info.value.message
    assert blob_checks == [sha]


def _rewrite_state_consistently(entry: Path, state: dict[str, torch.Tensor]) -> None:
    """Replace an entry's state and fix its manifest's digest and size (what a cache tamperer can do)."""
    entry.chmod(0o755)
    path = entry / "state.safetensors"
    path.chmod(0o644)
    save_file(state, str(path))
    manifest = json.loads((entry / "manifest.json").read_bytes())
    manifest["state_digest"] = lines_digest(file_lines(path))
    manifest["state_size"] = path.stat().st_size
    (entry / "manifest.json").chmod(0o644)
    (entry / "manifest.json").write_text(json.dumps(manifest))


def test_cached_entry_is_read_only(locked: tuple[str, Path, Any], hub_dir: Path) -> None:
    spec, lock, _ = locked
    out = load_cached(spec, "model", lock=lock)
    entry = hub_dir / "results" / str(out.key)
    assert entry.stat().st_mode & 0o777 == 0o555
    assert {p.name: p.stat().st_mode & 0o777 for p in entry.iterdir()} == {
        "manifest.json": 0o444,
        "config.json": 0o444,
        "state.safetensors": 0o444,
    }


def test_force_reload_runs_the_sandbox_and_replaces_the_entry(locked: tuple[str, Path, Any], hub_dir: Path) -> None:
    spec, lock, weights = locked
    first = load_cached(spec, "model", lock=lock)
    runs = Runs()
    again = load_cached(spec, "model", lock=lock, force_reload=True, runs=runs)
    assert again.cache == "refresh"
    assert runs.count == 1
    assert _results(hub_dir) == [first.key]
    _assert_weights(again.module, weights)
    assert load_cached(spec, "model", lock=lock, run_spy=_never).cache == "hit"


def test_other_arguments_are_another_entry(locked: tuple[str, Path, Any], hub_dir: Path) -> None:
    spec, lock, _ = locked
    a = load_cached(spec, "model", lock=lock)
    runs = Runs()
    b = load_cached(spec, "model", lock=lock, runs=runs, hidden=8)  # same model, other kwargs: other key
    assert b.cache == "miss"
    assert runs.count == 1
    assert a.key != b.key
    assert _results(hub_dir) == sorted([str(a.key), str(b.key)])
    with pytest.raises(EntrypointError):  # hidden=4 does not fit the locked weights: the entrypoint fails
        load_cached(spec, "model", lock=lock, hidden=4)
    assert _results(hub_dir) == sorted([str(a.key), str(b.key)])


def test_a_run_that_fetched_nothing_is_not_cached(locked: tuple[str, Path, Any], hub_dir: Path) -> None:
    """pretrained=False builds a randomly initialised model: re-run every time, as torch.hub would."""
    spec, lock, _ = locked
    runs = Runs()
    out = load_cached(spec, "model", lock=lock, runs=runs, pretrained=False)
    assert out.cache == "off"
    assert out.key is None
    assert _results(hub_dir) == []
    assert load_cached(spec, "model", lock=lock, runs=runs, pretrained=False).cache == "off"
    assert runs.count == 2


def test_unlocked_entrypoint_is_not_cached(
    github_url: str, hub_dir: Path, repo_factory: RepoFactory, artifact_server: ArtifactServer, tmp_path: Path
) -> None:
    """Without a lock entry the artifact digests are unknown before the run, so there is no sound key."""
    data = io.BytesIO()
    torch.save(_weights(), data)
    url = artifact_server.put("/w/unlocked.pth", data.getvalue())
    repo_factory.make_repo(REPO, {"hubconf.py": _hubconf(url)}).tag("v1")
    lock = tmp_path / "hub.lock"
    lock_repos([f"{REPO}:v1"], lock=lock)  # repo pinned, entrypoint not run: no artifacts recorded
    runs = Runs()
    policy = _loopback_named_policy(tmp_path)
    assert load_cached(f"{REPO}:v1", "model", lock=lock, runs=runs, policy=policy).cache == "off"
    assert _results(hub_dir) == []


def test_failed_reconstruction_leaves_no_entry(locked: tuple[str, Path, Any], hub_dir: Path, tmp_path: Path) -> None:
    spec, lock, _ = locked
    policy = tmp_path / "narrow.yaml"
    policy.write_text(
        "version: 1\nextends: default\nreconstruct:\n  strategies: [trusted]\n  trusted_modules: [torchvision]\n"
    )
    with pytest.raises(ReconstructRefused) as info:
        load_cached(spec, "model", lock=lock, policy=policy)
    assert info.value.code == "reconstruct-refused"
    assert _results(hub_dir) == []


def test_cache_verify_and_prune_handle_results(locked: tuple[str, Path, Any], hub_dir: Path) -> None:
    from securehub.store.cache import Cache

    spec, lock, _ = locked
    out = load_cached(spec, "model", lock=lock)
    cache = Cache(hub_dir)
    assert cache.verify() == []
    state = hub_dir / "results" / str(out.key) / "state.safetensors"
    state.chmod(0o644)
    with state.open("r+b") as fh:
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
    problems = cache.verify()
    assert [p.path.name for p in problems] == [out.key]
    assert "state.safetensors" in problems[0].found
    removed = cache.prune().removed
    assert hub_dir / "results" / str(out.key) in removed
    assert _results(hub_dir) == []
    assert load_cached(spec, "model", lock=lock).cache == "miss"


# --------------------------------------------------------------------------- keys


_BASE: dict[str, Any] = {
    "commit": "a" * 40,
    "tree_sha256": "b" * 64,
    "entrypoint": "model",
    "args": [],
    "kwargs": {"pretrained": True},
    "artifact_digests": {"https://h/x.pth": "c" * 64},
    "policy_sha256": "d" * 64,
    "securehub_version": "0.1.0",
    "torch_version": "2.13.0",
    "example_inputs_digest": None,
}


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("commit", "e" * 40),
        ("tree_sha256", "f" * 64),
        ("entrypoint", "other"),
        ("args", [1]),
        ("kwargs", {"pretrained": False}),
        ("artifact_digests", {"https://h/x.pth": "0" * 64}),
        ("artifact_digests", {"https://h/y.pth": "c" * 64}),
        ("policy_sha256", "1" * 64),
        ("securehub_version", "0.2.0"),
        ("torch_version", "2.14.0"),
        ("example_inputs_digest", "2" * 64),
    ],
)
def test_every_input_changes_the_key(field_name: str, value: object) -> None:
    assert result_key(result_inputs(**{**_BASE, field_name: value})) != result_key(result_inputs(**_BASE))


def test_key_is_independent_of_mapping_order() -> None:
    a = {**_BASE, "artifact_digests": {"https://h/a": "1" * 64, "https://h/b": "2" * 64}, "kwargs": {"x": 1, "y": 2}}
    b = {**_BASE, "artifact_digests": {"https://h/b": "2" * 64, "https://h/a": "1" * 64}, "kwargs": {"y": 2, "x": 1}}
    assert result_key(result_inputs(**a)) == result_key(result_inputs(**b))


@pytest.mark.parametrize("bad", [float("nan"), object(), b"bytes"])
def test_arguments_that_are_not_json_have_no_key(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        result_key(result_inputs(**{**_BASE, "args": [bad]}))
