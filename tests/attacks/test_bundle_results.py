"""Pinned results in a bundle (SPEC section 10: ``cache export`` holds "trees, artifacts, pinned results").

Machine A locks an entrypoint (output pinned by ``lock -e``) and loads it once, which stores the verified
result; its export then carries that entry. Machine B imports with ``SECUREHUB_OFFLINE=1`` and loads
without a sandbox run. A bundle whose result was rewritten -- even consistently, manifest and key included
-- is refused (``hash-mismatch``) before anything enters B's cache: a result is admitted only when hub.lock
pins its output and the entry's own digests equal that pin.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, save

from securehub.errors import SecureHubError
from securehub.pipeline.bundle import export_bundle, import_bundle
from securehub.store.results import canonical
from securehub.verify.tensor_digest import lines_digest, tensor_line
from tests._hub_helpers import NEEDS_FULL_SANDBOX
from tests.attacks import test_bundle_tampering as tampering
from tests.attacks.test_bundle_tampering import REPO, Exported, _file, _listing, _manifest, _members, _rewrite

_origin = tampering._origin  # machine A: lock -e, export (module-scoped, shared)

pytestmark = NEEDS_FULL_SANDBOX

Members = list[tuple[tarfile.TarInfo, bytes]]


@pytest.fixture(scope="module")
def _with_result(_origin: Exported, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """Machine A after one strict load (the verified result is stored), exported again."""
    root = tmp_path_factory.mktemp("bundle-results")
    hub = root / "hub-a"
    shutil.copytree(_origin.fresh, hub, symlinks=True)
    loaded = _origin.cli("load", f"{REPO}:v1", "weighted", "--policy", "strict", "--lock", str(_origin.lock), hub=hub,
                         offline=False)  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr
    bundle = root / "with-result.bundle"
    exp = _origin.cli("cache", "export", str(bundle), "--lock", str(_origin.lock), hub=hub, offline=False)
    assert exp.returncode == 0, exp.stderr
    assert "exported 1 trees, 1 artifacts and 1 pinned results" in exp.stdout
    yield Exported(_origin.lock, bundle, hub, _origin.env, _origin.blob, _origin.url, _origin.git, _origin.artifacts)


@pytest.fixture
def ex(_with_result: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Exported:
    """Machine B: copies of the lock and the bundle, and a fresh SECUREHUB_DIR."""
    work = tmp_path / "work"
    work.mkdir()
    lock = work / "hub.lock"
    lock.write_bytes(_with_result.lock.read_bytes())
    bundle = tmp_path / "models.bundle"
    bundle.write_bytes(_with_result.bundle.read_bytes())
    fresh = tmp_path / "hub-b"
    for name in ("SECUREHUB_DIR", "SECUREHUB_OFFLINE", "SECUREHUB_LOCK", "SECUREHUB_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECUREHUB_DIR", str(fresh))
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", _with_result.env["SECUREHUB_GITHUB_URL"])
    _with_result.git.clear_log()
    _with_result.artifacts.clear_log()
    return Exported(lock, bundle, fresh, _with_result.env, _with_result.blob, _with_result.url, _with_result.git,
                    _with_result.artifacts)  # fmt: skip


def _refused(ex: Exported, *needles: str) -> None:
    before = _listing(ex.fresh)
    with pytest.raises(SecureHubError) as info:
        import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert info.value.code == "hash-mismatch", str(info.value)
    for needle in needles:
        assert needle in info.value.message, info.value.message
    assert _listing(ex.fresh) == before, "a refused import changed the cache"
    assert not ex.git.requests and not ex.artifacts.requests


def _result(members: Members) -> tuple[str, dict[str, str]]:
    _, doc = _manifest(members)
    ((key, files),) = doc["results"].items()
    return key, files


def _blob(members: Members, digest: str) -> bytes:
    return next(data for m, data in members if m.name == f"blobs/{digest}")


def _replace_blob(members: Members, old: str, data: bytes) -> str:
    """Swap blob ``old`` for ``data`` (named by its digest); the new digest."""
    new = hashlib.sha256(data).hexdigest()
    members[:] = [(m, d) for m, d in members if m.name != f"blobs/{old}"]
    if all(m.name != f"blobs/{new}" for m, _ in members):
        members.append(_file(f"blobs/{new}", data))
    return new


def _set_manifest(members: Members, doc: dict) -> None:  # type: ignore[type-arg]
    index, _ = _manifest(members)
    members[index] = _file("manifest.json", json.dumps(doc).encode())


def _digest_of_state(data: bytes) -> str:
    state = load(data)
    return lines_digest({
        n: tensor_line(n, "F32", tuple(t.shape), t.numel() * 4, hashlib.sha256(t.numpy().tobytes()).hexdigest())
        for n, t in state.items()
    })  # fmt: skip


# --------------------------------------------------------------------------- the happy path


def test_bundle_with_a_pinned_result_loads_offline_without_a_sandbox_run(ex: Exported) -> None:
    imp = ex.cli("cache", "import", str(ex.bundle), "--lock", str(ex.lock), "--policy", "strict")
    assert imp.returncode == 0, imp.stderr
    assert "imported 1 trees, 1 artifacts and 1 pinned results" in imp.stdout
    assert len(list((ex.fresh / "results").iterdir())) == 1
    loaded = ex.cli("load", f"{REPO}:v1", "weighted", "--policy", "strict", "--lock", str(ex.lock))
    assert loaded.returncode == 0, loaded.stderr
    assert "verified cached result reused (no sandbox run)" in loaded.stderr
    last = json.loads(Path(ex.env["SECUREHUB_AUDIT_LOG"]).read_text().splitlines()[-1])
    assert (last["action"], last["outcome"], last["isolation"]) == ("load", "ok", None)  # no child ran
    assert not ex.git.requests and not ex.artifacts.requests
    assert ex.cli("cache", "verify").returncode == 0


def test_export_leaves_out_a_result_the_lock_no_longer_pins(
    _with_result: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Machine A's stored entry was built for a pin the lock has since replaced: it is not carried."""
    lock = json.loads(_with_result.lock.read_text())
    (outputs,) = [ep["outputs"] for r in lock["repos"].values() for ep in r["entrypoints"].values()]
    ((_, pin),) = outputs.items()
    pin["config_sha256"] = "0" * 64
    repinned = tmp_path / "hub.lock"
    repinned.write_text(json.dumps(lock))
    monkeypatch.setenv("SECUREHUB_DIR", str(_with_result.fresh))
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", _with_result.env["SECUREHUB_GITHUB_URL"])
    assert export_bundle(tmp_path / "b", lock=_with_result.lock, policy="strict").results  # the pinned one is
    assert export_bundle(tmp_path / "b", lock=repinned, policy="strict").results == ()


# --------------------------------------------------------------------------- tampering


def test_bundle_result_state_rewritten_consistently_is_refused(ex: Exported) -> None:
    """Weights swapped, the entry's manifest (state digest, size, key unchanged) and the bundle manifest
    rewritten to match: the entry passes its own checks, but hub.lock's pin decides."""

    def swap(members: Members) -> None:
        key, files = _result(members)
        state = load(_blob(members, files["state.safetensors"]))
        evil = save({k: torch.full_like(v, 6.5) for k, v in state.items()})
        manifest = json.loads(_blob(members, files["manifest.json"]))
        manifest["state_digest"], manifest["state_size"] = _digest_of_state(evil), len(evil)
        files["state.safetensors"] = _replace_blob(members, files["state.safetensors"], evil)
        files["manifest.json"] = _replace_blob(members, files["manifest.json"], canonical(manifest))
        _, doc = _manifest(members)
        doc["results"][key] = files
        _set_manifest(members, doc)

    _rewrite(ex.bundle, swap)
    _refused(ex, "expected the output hub.lock pins", "state_sha256")


def test_bundle_result_with_a_forged_pin_in_its_key_is_refused(ex: Exported) -> None:
    """The entry's inputs claim another pin (and the key is recomputed to match): not the lock's pin."""

    def forge(members: Members) -> None:
        key, files = _result(members)
        manifest = json.loads(_blob(members, files["manifest.json"]))
        manifest["inputs"]["output_pin"]["config_sha256"] = "1" * 64
        new_key = hashlib.sha256(canonical(manifest["inputs"])).hexdigest()
        manifest["key"] = new_key
        files["manifest.json"] = _replace_blob(members, files["manifest.json"], canonical(manifest))
        _, doc = _manifest(members)
        del doc["results"][key]
        doc["results"][new_key] = files
        _set_manifest(members, doc)

    _rewrite(ex.bundle, forge)
    _refused(ex, "another pin than hub.lock's")


def test_bundle_result_under_another_key_is_refused(ex: Exported) -> None:
    def rename(members: Members) -> None:
        key, files = _result(members)
        _, doc = _manifest(members)
        doc["results"] = {"f" * 64: files}
        _set_manifest(members, doc)

    _rewrite(ex.bundle, rename)
    _refused(ex, "f" * 64)


@pytest.mark.parametrize("files", [{}, {"manifest.json": "0" * 64}, {"../x": "0" * 64}])
def test_bundle_result_with_other_files_is_refused(ex: Exported, files: dict[str, str]) -> None:
    def other(members: Members) -> None:
        key, _ = _result(members)
        _, doc = _manifest(members)
        doc["results"][key] = files
        _set_manifest(members, doc)

    _rewrite(ex.bundle, other)
    _refused(ex)


def test_bundle_with_more_results_than_pins_is_refused(ex: Exported) -> None:
    def flood(members: Members) -> None:
        _, files = _result(members)
        _, doc = _manifest(members)
        doc["results"] = {f"{i:064x}": files for i in range(50)}
        _set_manifest(members, doc)

    _rewrite(ex.bundle, flood)
    _refused(ex, "more than hub.lock's pins allow")


def test_an_older_bundle_without_results_still_imports(ex: Exported) -> None:
    def older(members: Members) -> None:
        _, files = _result(members)
        _, doc = _manifest(members)
        for digest in set(files.values()):
            members[:] = [(m, d) for m, d in members if m.name != f"blobs/{digest}"]
        del doc["results"]
        doc["format"] = "securehub-bundle/1"
        _set_manifest(members, doc)

    _rewrite(ex.bundle, older)
    report = import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert report.results == () and len(report.trees) == 1
    assert not (ex.fresh / "results").exists() or not any((ex.fresh / "results").iterdir())


def test_bundle_members_are_unchanged_by_a_round_trip(ex: Exported) -> None:
    """Sanity for the helpers above: rewriting with no change keeps the bundle importable."""
    _rewrite(ex.bundle, lambda members: None)
    assert import_bundle(ex.bundle, lock=ex.lock, policy="strict").results
    assert len(_members(ex.bundle)) > 3
