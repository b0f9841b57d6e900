"""Attacks on the result cache: someone edits ``<hub dir>/results/<key>/`` between two loads.

Every case must end in ``hash-mismatch`` before any tensor, config or program from the entry is
used, with a message that says how to clear it, and the sandbox must not be silently re-run
(``run`` is a spy that fails the test if called). Entries are read-only, so each attack first
does what a local attacker (or root) would: chmod, then edit.

A *consistent* forgery that rewrites the state and the manifest together is caught only when
hub.lock pins the entrypoint's output (tests/attacks/test_output_pinning_attacks.py); without a
pin nothing outside the cache anchors the manifest (documented in securehub/pipeline/result_cache.py), and
such a forgery still has to pass every reconstruction check, like a hostile sandbox child's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import securehub.store.results as results_mod
from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, Lockfile, RepoEntry
from securehub.config.policy import Policy
from securehub.errors import HashMismatch
from securehub.pipeline.context import Context
from securehub.pipeline.result_cache import (
    CachePlan,
    cache_plan,
    cached_or_run,
    load_result,
    result_inputs,
    result_key,
    store_result,
)
from securehub.pipeline.tree import VerifiedTree
from securehub.resolve.spec import parse_spec
from securehub.sandbox.parent.session import SandboxResult
from securehub.sandbox.wire.messages import EXPORT_FORMAT, ExportInfo
from securehub.store.cache import Cache
from securehub.verify.fast_safetensors import read_hashed
from securehub.verify.tensor_digest import file_lines, lines_digest

URL = "https://models.example/w/model.safetensors"
ART_SHA = "c" * 64


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    entry = RepoEntry(
        remote="https://git.example/acme/m.git",
        ref="v1",
        ref_type="tag",
        commit="a" * 40,
        tree_sha256="b" * 64,
        entrypoints={"model": EntrypointEntry(artifacts=(URL,))},
    )
    lock = Lockfile(repos={"acme/m:v1": entry}, artifacts={URL: ArtifactEntry(ART_SHA, 10)})
    return Context(Policy.load("default"), lock, None, True, None, Cache(tmp_path / "hub"))


@pytest.fixture
def tree(ctx: Context, tmp_path: Path) -> VerifiedTree:
    entry = ctx.lock.repo("acme/m:v1")
    assert entry is not None
    (tmp_path / "tree").mkdir()
    return VerifiedTree(
        parse_spec("acme/m:v1"), tmp_path / "tree", "v1", "tag", entry.commit, entry.tree_sha256, entry, False
    )


@pytest.fixture
def plan(ctx: Context, tree: VerifiedTree) -> CachePlan:
    p = cache_plan(ctx, tree, "model", (), {}, None)
    assert p is not None
    return p


STATE = {"0.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "0.bias": torch.ones(3)}
CONFIG = {"format": "securehub-config/1", "note": "opaque to the cache"}


def _store(ctx: Context, plan: CachePlan, tmp_path: Path, export: ExportInfo | None = None) -> Path:
    src = tmp_path / "out" / "state.safetensors"
    src.parent.mkdir(exist_ok=True)
    save_file(STATE, src)
    return store_result(ctx.cache, plan.key, src, CONFIG, export, inputs=plan.inputs, fetched=((URL, ART_SHA),))


def _never(out: Path) -> SandboxResult:
    raise AssertionError("a tampered cache entry must not trigger a silent re-run")


def _writable(path: Path) -> None:
    path.parent.chmod(0o755)
    if path.exists() and not path.is_symlink():
        path.chmod(0o644)


def _flip(path: Path, offset: int) -> None:
    _writable(path)
    with path.open("r+b") as fh:
        fh.seek(offset, os.SEEK_SET if offset >= 0 else os.SEEK_END)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x01]))


def _assert_refused(ctx: Context, tree: VerifiedTree, plan: CachePlan, *needles: str) -> HashMismatch:
    with pytest.raises(HashMismatch) as info:
        load_result(ctx.cache, plan.key)
    err = info.value
    assert err.code == "hash-mismatch"
    assert "securehub cache prune" in err.message
    assert "force_reload=True" in err.message
    for needle in needles:
        assert needle in err.message
    with pytest.raises(HashMismatch):
        cached_or_run(ctx, tree, "model", (), {}, example_inputs=None, force_reload=False, run=_never)
    assert ctx.cache.result_path(plan.key).exists() or ctx.cache.result_path(plan.key).is_symlink()
    return err


def test_sound_entry_round_trips(ctx: Context, plan: CachePlan, tmp_path: Path) -> None:
    _store(ctx, plan, tmp_path)
    hit = load_result(ctx.cache, plan.key)
    assert hit is not None
    assert hit.config == CONFIG
    assert hit.fetched == ((URL, ART_SHA),)
    for k, v in STATE.items():
        assert torch.equal(hit.state[k], v)


def test_flipped_state_data_byte(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    _flip(entry / "state.safetensors", -1)
    _assert_refused(ctx, tree, plan, "state.safetensors", "expected state digest")


def test_flipped_state_header_byte(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    _flip(entry / "state.safetensors", 20)
    _assert_refused(ctx, tree, plan, "state.safetensors")


def _rewrite_header(path: Path, mutate: Any) -> None:
    """Rewrite a safetensors header in place, same length (padded with spaces, which the format allows)."""
    _writable(path)
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    raw = json.dumps(mutate(header) or header, separators=(",", ":")).encode()
    assert len(raw) <= n
    path.write_bytes(data[:8] + raw + b" " * (n - len(raw)) + data[8 + n :])


def _retyped(h: dict[str, Any]) -> None:
    h["0.weight"]["dtype"] = "I32"  # same element size: the same bytes, read as other values


def _swapped(h: dict[str, Any]) -> None:
    h["0.weight"]["shape"] = [4, 3]  # same bytes, another shape


def _renamed(h: dict[str, Any]) -> None:
    h["0.bia5"] = h.pop("0.bias")  # the bytes now land under another parameter name


@pytest.mark.parametrize("mutate", [_retyped, _swapped, _renamed], ids=["dtype", "shape", "name"])
def test_state_header_rewritten_to_read_the_same_bytes_differently(
    ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path, mutate: Any
) -> None:
    """The manifest's state digest covers each tensor's name, dtype and shape, not only its bytes: a header
    edit that keeps the file's size and bytes but changes what they mean is refused."""
    entry = _store(ctx, plan, tmp_path)
    _rewrite_header(entry / "state.safetensors", mutate)
    _assert_refused(ctx, tree, plan, "state.safetensors", "expected state digest")


def test_state_header_layout_is_not_what_the_digest_covers(ctx: Context, plan: CachePlan, tmp_path: Path) -> None:
    """Header layout (key order, padding) and ``__metadata__`` are read by nothing, so the digest does not cover
    them: an entry whose header was reordered still yields exactly the tensors that were stored."""
    entry = _store(ctx, plan, tmp_path)
    _rewrite_header(entry / "state.safetensors", lambda h: dict(reversed(list(h.items()))))
    hit = load_result(ctx.cache, plan.key)
    assert hit is not None and set(hit.state) == set(STATE)
    assert all(torch.equal(hit.state[k], v) for k, v in STATE.items())


def test_entry_with_export_prefixed_tensors_no_program_maps_is_refused(
    ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path
) -> None:
    """An entry holding a tensor under the export prefixes with no exported program (read and pinned by
    nothing; refused on the wire since red team 10) is hash-mismatch on a hit and a `cache verify` finding."""
    src = tmp_path / "out" / "state.safetensors"
    src.parent.mkdir()
    save_file({**STATE, "__export_state__.stray": torch.ones(2)}, src)
    entry = store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs, fetched=((URL, ART_SHA),))
    _assert_refused(ctx, tree, plan, "'__export_state__.stray'")
    problem = results_mod.verify_result_dir(entry)
    assert problem is not None and "__export_state__.stray" in problem


def test_truncated_state(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    state = entry / "state.safetensors"
    _writable(state)
    os.truncate(state, state.stat().st_size - 8)
    _assert_refused(ctx, tree, plan, "bytes")


def test_bytes_appended_to_state(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    state = entry / "state.safetensors"
    _writable(state)
    with state.open("ab") as fh:
        fh.write(b"\0" * 16)
    _assert_refused(ctx, tree, plan, "bytes")


def test_state_swapped_for_symlink_to_forged_weights(
    ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path
) -> None:
    entry = _store(ctx, plan, tmp_path)
    forged = tmp_path / "forged.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in STATE.items()}, forged)
    _writable(entry / "state.safetensors")
    (entry / "state.safetensors").unlink()
    (entry / "state.safetensors").symlink_to(forged)
    _assert_refused(ctx, tree, plan, "symbolic link")


def test_tampered_config(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    config = entry / "config.json"
    _writable(config)
    config.write_text(json.dumps({**CONFIG, "root": {"class": "os:system"}}))
    _assert_refused(ctx, tree, plan, "config.json")


def test_manifest_state_digest_edited(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    manifest = entry / "manifest.json"
    doc = json.loads(manifest.read_bytes())
    doc["state_digest"] = "0" * 64
    _writable(manifest)
    manifest.write_text(json.dumps(doc))
    _assert_refused(ctx, tree, plan, "0" * 64)


def test_manifest_inputs_edited(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    """Claiming the entry was built from other inputs breaks the inputs -> key binding."""
    entry = _store(ctx, plan, tmp_path)
    manifest = entry / "manifest.json"
    doc = json.loads(manifest.read_bytes())
    doc["inputs"]["artifacts"] = {URL: "e" * 64}
    _writable(manifest)
    manifest.write_text(json.dumps(doc))
    _assert_refused(ctx, tree, plan, "inputs whose canonical JSON hashes to")


def test_manifest_not_json(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    _writable(entry / "manifest.json")
    (entry / "manifest.json").write_bytes(b"\x00garbage")
    _assert_refused(ctx, tree, plan, "manifest.json")


def test_entry_moved_under_another_key(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    """Cache poisoning by renaming: the result of other inputs placed under this load's key."""
    other_inputs = result_inputs(**{**_plan_kwargs(plan), "kwargs": {"pretrained": False}})
    other_key = result_key(other_inputs)
    src = tmp_path / "o" / "state.safetensors"
    src.parent.mkdir()
    save_file({k: torch.zeros_like(v) for k, v in STATE.items()}, src)
    other = store_result(ctx.cache, other_key, src, CONFIG, None, inputs=other_inputs)
    target = ctx.cache.result_path(plan.key)
    other.chmod(0o755)
    other.rename(target)
    _assert_refused(ctx, tree, plan, f"key {plan.key}")


def test_entry_replaced_by_symlink(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(entry, elsewhere)
    entry.chmod(0o755)
    shutil.rmtree(entry)
    entry.symlink_to(elsewhere)
    _assert_refused(ctx, tree, plan, "expected a directory")


def test_planted_extra_file(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    entry = _store(ctx, plan, tmp_path)
    entry.chmod(0o755)
    (entry / "program.json").write_text("{}")
    _assert_refused(ctx, tree, plan, "expected the files")


def test_forged_state_that_is_not_safetensors(
    ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path
) -> None:
    """Even with a manifest rewritten to match, the verified bytes must still be well-formed safetensors."""
    entry = _store(ctx, plan, tmp_path)
    junk = b"\x10" + b"\0" * 7 + b"{}" + b"\0" * 30
    _writable(entry / "state.safetensors")
    (entry / "state.safetensors").write_bytes(junk)
    manifest = entry / "manifest.json"
    doc = json.loads(manifest.read_bytes())

    doc["state_digest"], doc["state_size"] = hashlib.sha256(junk).hexdigest(), len(junk)
    _writable(manifest)
    manifest.write_text(json.dumps(doc))
    _assert_refused(ctx, tree, plan, "safetensors")


def test_tampered_exported_program(ctx: Context, tree: VerifiedTree, plan: CachePlan, tmp_path: Path) -> None:
    export = ExportInfo(state={"w": "0.weight"}, constants={}, parameters=("w",), program_json=b'{"graph": []}')
    entry = _store(ctx, plan, tmp_path, export)
    hit = load_result(ctx.cache, plan.key)
    assert hit is not None and hit.export is not None
    assert hit.export.program_json == export.program_json
    assert dict(hit.export.state) == {"w": "0.weight"}
    program = entry / "program.json"
    _writable(program)
    program.write_bytes(b'{"graph": ["injected"]}')
    _assert_refused(ctx, tree, plan, "program.json")


def test_storing_over_a_tampered_entry_is_refused(ctx: Context, plan: CachePlan, tmp_path: Path) -> None:
    """A concurrent store must not adopt (or silently repair) a broken entry; force_reload replaces it."""
    entry = _store(ctx, plan, tmp_path)
    _flip(entry / "state.safetensors", -1)
    with pytest.raises(HashMismatch):
        _store(ctx, plan, tmp_path)
    src = tmp_path / "out" / "state.safetensors"
    assert not src.exists()  # moved into the (discarded) new entry, never linked
    save_file(STATE, src)
    store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs, replace=True)
    assert load_result(ctx.cache, plan.key) is not None


def _plan_kwargs(plan: CachePlan) -> dict[str, Any]:
    i = plan.inputs
    return {
        "commit": i["commit"],
        "tree_sha256": i["tree_sha256"],
        "entrypoint": i["entrypoint"],
        "args": i["args"],
        "kwargs": i["kwargs"],
        "artifact_digests": i["artifacts"],
        "policy_sha256": i["policy_sha256"],
        "securehub_version": i["securehub_version"],
        "torch_version": i["torch_version"],
        "example_inputs_digest": i["example_inputs_sha256"],
    }


def test_export_format_constant_is_what_the_cache_writes() -> None:
    assert EXPORT_FORMAT == "securehub-export/1"


# ----------------------------------------------------------------------------- the cold path's single read


def _fresh_output(tmp_path: Path, state: dict[str, torch.Tensor]) -> Path:
    src = tmp_path / "out" / "state.safetensors"
    src.parent.mkdir(exist_ok=True)
    save_file(state, src)
    return src


def _no_entry(ctx: Context, plan: CachePlan) -> bool:
    results = ctx.cache.dir / "results"
    return not os.path.lexists(ctx.cache.result_path(plan.key)) and (not results.exists() or not any(results.iterdir()))


def test_store_reuses_the_read_digest_only_for_the_file_that_was_read(
    ctx: Context, plan: CachePlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cold path hashes the state once: the store takes the digest of the parent's single read."""
    src = _fresh_output(tmp_path, STATE)
    read = read_hashed(src, digest=True)
    hashed: list[str] = []
    monkeypatch.setattr(results_mod, "file_lines", lambda p: hashed.append(str(p)) or {})
    entry = store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs, read=read)
    assert hashed == []  # not re-hashed
    manifest = json.loads((entry / "manifest.json").read_bytes())
    monkeypatch.undo()
    stored = lines_digest(file_lines(entry / "state.safetensors"))
    assert manifest["state_digest"] == read.state_digest == stored
    monkeypatch.undo()
    assert load_result(ctx.cache, plan.key) is not None


def test_state_rewritten_between_read_and_store_is_refused(ctx: Context, plan: CachePlan, tmp_path: Path) -> None:
    """Someone who can write tmp/ swaps the weights after the module was rebuilt from them: nothing is stored.

    Same size, same mtime restored: only the inode's ctime (which no one can set) betrays the write, and the
    store then re-hashes what it would store and finds other bytes than those the module was built from.
    """
    src = _fresh_output(tmp_path, STATE)
    read = read_hashed(src, digest=True)
    before = os.stat(src)
    save_file({k: torch.full_like(v, 7.0) for k, v in STATE.items()}, tmp_path / "forged")
    payload = (tmp_path / "forged").read_bytes()
    assert len(payload) == before.st_size
    with src.open("r+b") as fh:  # in place: same inode
        fh.write(payload)
    os.utime(src, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(HashMismatch) as info:
        store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs, read=read)
    assert info.value.code == "hash-mismatch"
    assert read.state_digest is not None
    assert read.state_digest in info.value.message and "nothing was stored" in info.value.message
    assert _no_entry(ctx, plan)


def test_state_swapped_for_another_file_between_read_and_store_is_refused(
    ctx: Context, plan: CachePlan, tmp_path: Path
) -> None:
    """A rename of other weights over the output after the read: another inode, re-hashed, refused."""
    src = _fresh_output(tmp_path, STATE)
    read = read_hashed(src, digest=True)
    save_file({k: torch.zeros_like(v) for k, v in STATE.items()}, tmp_path / "forged")
    os.replace(tmp_path / "forged", src)
    with pytest.raises(HashMismatch):
        store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs, read=read)
    assert _no_entry(ctx, plan)


def test_same_bytes_in_a_touched_file_are_re_hashed_and_stored(ctx: Context, plan: CachePlan, tmp_path: Path) -> None:
    """A changed identity with unchanged bytes (e.g. a copy) is hashed again and stored: never trusted blindly."""
    src = _fresh_output(tmp_path, STATE)
    read = read_hashed(src, digest=True)
    os.utime(src, ns=(0, 0))
    entry = store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs, read=read)
    assert json.loads((entry / "manifest.json").read_bytes())["state_digest"] == read.state_digest
    assert load_result(ctx.cache, plan.key) is not None
