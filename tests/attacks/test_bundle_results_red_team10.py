"""Red team 10: pinned results in bundles and the result cache, attacked with JSON the parent cannot encode
and with tensors the output pin does not cover.

- An entry manifest or ``config.json`` holding a ``"\\ud800"`` escape (a lone surrogate), or a bundle
  manifest whose tree path holds one: the strict reader admitted it and the next canonical encoding (the
  key check, the config digest, the tree digest) raised ``UnicodeEncodeError`` out of ``cache import``,
  ``cache export`` and a cache hit, not a ``SecureHubError``. Now ``hash-mismatch``.
- A result whose state holds an extra tensor under the export prefixes, rewritten consistently (state,
  entry manifest, bundle manifest): hub.lock's state pin leaves those names to the program pin, and the
  entry has no program, so it was imported. Now ``hash-mismatch``.
- Refused already (regressions): inputs of the wrong JSON types, negative or huge sizes, ``results`` in a
  ``securehub-bundle/1`` manifest.

Every refusal leaves machine B's cache as it was, and nothing is fetched.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pytest
import torch
from safetensors.torch import load, save

from securehub.pipeline.bundle import import_bundle
from securehub.store.results import canonical
from tests.attacks.test_bundle_results import (  # fixtures are registered by name
    Members,
    _blob,
    _digest_of_state,
    _origin,  # noqa: F401
    _refused,
    _replace_blob,
    _result,
    _set_manifest,
    _with_result,  # noqa: F401
    ex,  # noqa: F401
)
from tests.attacks.test_bundle_tampering import REPO, Exported, _manifest, _rewrite

pytestmark = pytest.mark.usefixtures("_origin")

_SURROGATE = b'"\\ud800"'


def _swap_result_file(members: Members, name: str, data: bytes, *, manifest_edit: Callable[[dict], None]) -> None:  # type: ignore[type-arg]
    """Replace one file of the bundled entry and rewrite the entry's manifest (``manifest_edit``) to match."""
    key, files = _result(members)
    if name != "manifest.json":
        files[name] = _replace_blob(members, files[name], data)
    manifest = json.loads(_blob(members, files["manifest.json"]))
    manifest_edit(manifest)
    raw = canonical(manifest) if name != "manifest.json" else data
    files["manifest.json"] = _replace_blob(members, files["manifest.json"], raw)
    _, doc = _manifest(members)
    doc["results"][key] = files
    _set_manifest(members, doc)


def _surrogate_in_inputs(members: Members) -> None:
    _, files = _result(members)
    raw = _blob(members, files["manifest.json"]).replace(b'"inputs":{', b'"inputs":{"x":' + _SURROGATE + b",", 1)
    _swap_result_file(members, "manifest.json", raw, manifest_edit=lambda m: None)


def _surrogate_in_config(members: Members) -> None:
    _, files = _result(members)
    config = _blob(members, files["config.json"]).replace(b"{", b'{"x":' + _SURROGATE + b",", 1)
    sha = hashlib.sha256(config).hexdigest()
    _swap_result_file(members, "config.json", config, manifest_edit=lambda m: m.__setitem__("config_sha256", sha))


def _surrogate_in_a_tree_path(members: Members) -> None:
    _, doc = _manifest(members)
    (tree,) = doc["trees"].values()
    tree["entries"][0][0] = "\ud800"  # json.dumps writes the \ud800 escape
    _set_manifest(members, doc)


def _stray_export_tensor(members: Members) -> None:
    _, files = _result(members)
    state = load(_blob(members, files["state.safetensors"]))
    evil = save({**state, "__export_state__.smuggled": torch.full((64,), 6.5)})
    digest = _digest_of_state(evil)

    def edit(m: dict) -> None:  # type: ignore[type-arg]
        m["state_digest"], m["state_size"] = digest, len(evil)

    _swap_result_file(members, "state.safetensors", evil, manifest_edit=edit)


def _inputs(change: Callable[[dict], None]) -> Callable[[Members], None]:  # type: ignore[type-arg]
    """The entry's inputs edited, its key recomputed and the bundle re-keyed consistently."""

    def rewrite(members: Members) -> None:
        key, files = _result(members)
        manifest = json.loads(_blob(members, files["manifest.json"]))
        change(manifest["inputs"])
        manifest["key"] = new_key = hashlib.sha256(canonical(manifest["inputs"])).hexdigest()
        files["manifest.json"] = _replace_blob(members, files["manifest.json"], canonical(manifest))
        _, doc = _manifest(members)
        del doc["results"][key]
        doc["results"][new_key] = files
        _set_manifest(members, doc)

    return rewrite


def _manifest_field(field: str, value: object) -> Callable[[Members], None]:
    return lambda members: _swap_result_file(
        members, "state.safetensors", _blob(members, _result(members)[1]["state.safetensors"]),
        manifest_edit=lambda m: m.__setitem__(field, value),
    )  # fmt: skip


def _results_in_a_v1_bundle(members: Members) -> None:
    _, doc = _manifest(members)
    doc["format"] = "securehub-bundle/1"
    _set_manifest(members, doc)


@pytest.mark.parametrize(
    ("attack", "says"),
    [
        # new (UnicodeEncodeError, or imported, before red team 10)
        (_surrogate_in_inputs, "canonical form"),
        (_surrogate_in_config, "canonical form"),
        (_surrogate_in_a_tree_path, "lone surrogate"),
        (_stray_export_tensor, "export prefixes"),
        # refused already
        (_inputs(lambda i: i.__setitem__("args", "1")), "name no argument set"),
        (_inputs(lambda i: i.__setitem__("commit", [i["commit"]])), "name no commit"),
        (_inputs(lambda i: i.__setitem__("entrypoint", "other")), "pins no output of entrypoint"),
        (_inputs(lambda i: i.__setitem__("commit", "0" * 40)), "pins no output"),
        (_manifest_field("state_size", -1), "non-negative integer state_size"),
        (_manifest_field("state_size", 2**70), "state.safetensors"),
        (_manifest_field("state_digest", ["0" * 64]), "64-hex state_digest"),
        (_results_in_a_v1_bundle, "manifest with keys"),
    ],
    ids=lambda v: getattr(v, "__name__", None) if callable(v) else None,
)
def test_bundle_result_attack_is_hash_mismatch_and_changes_nothing(
    ex: Exported,  # noqa: F811 - the fixture imported above
    attack: Callable[[Members], None],
    says: str,
) -> None:
    _rewrite(ex.bundle, attack)
    _refused(ex, says)


def test_planted_cache_entry_with_a_lone_surrogate_is_hash_mismatch_on_load(ex: Exported) -> None:  # noqa: F811
    """A hit's manifest read raised UnicodeEncodeError (a tamperer plants it under the key a load computes)."""
    assert import_bundle(ex.bundle, lock=ex.lock, policy="strict").results
    (entry,) = (ex.fresh / "results").iterdir()
    manifest = entry / "manifest.json"
    entry.chmod(0o700)
    manifest.chmod(0o600)
    manifest.write_bytes(manifest.read_bytes().replace(b'"inputs":{', b'"inputs":{"x":' + _SURROGATE + b",", 1))
    loaded = ex.cli("load", f"{REPO}:v1", "weighted", "--policy", "strict", "--lock", str(ex.lock))
    assert loaded.returncode == 1, loaded.stderr
    assert "hash-mismatch" in loaded.stderr and "Traceback" not in loaded.stderr, loaded.stderr
    verify = ex.cli("cache", "verify")
    assert verify.returncode == 1 and "canonical form" in verify.stdout + verify.stderr, verify.stdout + verify.stderr
    out = ex.cli("cache", "export", str(ex.bundle.parent / "again.bundle"), "--lock", str(ex.lock))
    assert out.returncode == 0 and "0 pinned results" in out.stdout, out.stdout + out.stderr  # never carried
