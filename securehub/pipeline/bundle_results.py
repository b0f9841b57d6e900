"""Pinned results in a bundle (SPEC section 10, ``cache export``: "trees, artifacts, pinned results").

A result-cache entry travels in a bundle only when hub.lock anchors it: the
entry is sound (every check a cache hit makes, :func:`verified_result_dir`)
*and* hub.lock pins its output -- a repo entry with the entry's commit and tree
digest, its entrypoint, and a pin for its argument set that equals the pin the
entry's key was built with, and the canonical digests of the entry's own
state and config equal that pin (its exported program's too, when it has one:
an entry whose program the lock does not pin is not carried), and its config
names no path inside this cache's copy of its tree (a repository class given a
path in its tree: the config digest is portable, the config is not; the
importer rebuilds that result in its sandbox). The same check
runs on export (only anchored entries are written) and on import (before
anything enters the cache), so a bundle that rewrites an entry and its
manifest consistently is still refused: the digests come from hub.lock, never
from the bundle. An unpinned result is anchored by nothing outside the bundle
and is never carried.

Bundle manifest (``securehub-bundle/2``): ``results`` maps each entry's key to
``{file name: sha256}`` for exactly the entry's files; the files are blobs like
any other.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from securehub._util.digest import args_sha256, file_sha256
from securehub.config.lockfile import Lockfile, OutputPin
from securehub.errors import SecureHubError
from securehub.pipeline.state_digest import file_digests, names_tree
from securehub.sandbox.wire.messages import unreferenced_export_keys
from securehub.store.cache import Cache
from securehub.store.results import (
    CONFIG,
    EXPORT_META,
    EXPORT_PROGRAM,
    MANIFEST,
    STATE,
    CachedResult,
    verified_result_dir,
)
from securehub.verify.safetensors_check import check_safetensors_result

__all__ = ["MAX_RESULTS_PER_PIN", "anchor_problem", "build_result", "exportable_results", "result_files"]

#: Entries one pin may carry (one per policy / torch version a machine loaded it under).
MAX_RESULTS_PER_PIN: Final = 4
_KEY_CHARS: Final = frozenset("0123456789abcdef")


def result_files(has_export: bool) -> frozenset[str]:
    """The file names of an entry (with or without an exported program)."""
    names = {MANIFEST, STATE, CONFIG}
    if has_export:
        names |= {EXPORT_META, EXPORT_PROGRAM}
    return frozenset(names)


def _pin_for(pinned: Lockfile, inputs: Mapping[str, Any]) -> tuple[OutputPin | None, str]:
    """The pin hub.lock holds for an entry's inputs, or ``None`` and why not."""
    commit, tree, ep_name = inputs.get("commit"), inputs.get("tree_sha256"), inputs.get("entrypoint")
    args, kwargs = inputs.get("args"), inputs.get("kwargs")
    if not (isinstance(commit, str) and isinstance(tree, str) and isinstance(ep_name, str)):
        return None, "its inputs name no commit, tree and entrypoint"
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return None, "its inputs name no argument set"
    digest = args_sha256(args, kwargs)
    for entry in pinned.repos.values():
        ep = entry.entrypoints.get(ep_name)
        if entry.commit == commit and entry.tree_sha256 == tree and ep is not None and digest in ep.outputs:
            return ep.outputs[digest], digest
    return None, f"hub.lock pins no output of entrypoint {ep_name!r} (args_sha256 {digest}) at commit {commit}"


def anchor_problem(pinned: Lockfile, cached: CachedResult, cache: Cache) -> str | None:
    """``None`` when hub.lock anchors the verified entry ``cached`` of ``cache`` (module docstring), else what
    does not match."""
    pin, why = _pin_for(pinned, cached.inputs)
    if pin is None:
        return why
    if cached.inputs.get("output_pin") != pin.to_json():
        return f"its key was built for another pin than hub.lock's for args_sha256 {why}"
    tree = cache.tree_path(cached.inputs["tree_sha256"])
    if names_tree(cached.config, tree):
        return (f"its config names a path inside the tree ({tree}), which differs in every cache; it is not "
                "carried (the importing machine rebuilds it in its sandbox)")  # fmt: skip
    try:
        found = file_digests(cached.path / STATE, cached.config, cached.export, tree=tree)
    except (SecureHubError, ValueError) as exc:
        return f"its state cannot be digested ({exc})"
    diffs = [
        f"{name} {want}, found {got}"
        for name, want, got in (
            ("state_sha256", pin.state_sha256, found.state_sha256),
            ("config_sha256", pin.config_sha256, found.config_sha256),
        )
        if want != got
    ]
    names = (t.name for t in check_safetensors_result(cached.path / STATE).tensors)
    stray = unreferenced_export_keys(names, cached.export)
    if stray:
        diffs.append(f"no tensor under the export prefixes that no program maps, found {len(stray)}")
    if cached.export is not None and found.program_sha256 != pin.program_sha256:
        diffs.append(f"program_sha256 {pin.program_sha256 or 'not pinned'}, found {found.program_sha256}")
    return f"expected the output hub.lock pins: {'; '.join(diffs)}" if diffs else None


def exportable_results(cache: Cache, pinned: Lockfile) -> dict[str, dict[str, tuple[str, Path]]]:
    """key -> {file name: (sha256, path)} of every sound entry of ``cache`` that hub.lock anchors.

    Broken or unanchored entries are left out (``cache verify`` reports the broken ones).
    """
    out: dict[str, dict[str, tuple[str, Path]]] = {}
    results_dir = cache.dir / "results"
    if not results_dir.is_dir():
        return out
    for path in sorted(results_dir.iterdir()):
        if not _is_key(path.name) or path.is_symlink() or not path.is_dir():
            continue
        try:
            cached = verified_result_dir(path)
        except SecureHubError:
            continue
        if anchor_problem(pinned, cached, cache) is not None:
            continue
        out[path.name] = {n: (file_sha256(path / n), path / n) for n in sorted(result_files(cached.export is not None))}
    return out


def _is_key(name: str) -> bool:
    return len(name) == 64 and set(name) <= _KEY_CHARS


def build_result(
    key: str, files: Mapping[str, str], staged: Path, work: Path, pinned: Lockfile, cache: Cache
) -> Path | str:
    """Rebuild the entry ``key`` from staged blobs in ``work`` and check it for ``cache``; its path, or what
    is wrong.

    ``files``: file name -> sha256 of a staged blob (already checked against its name). The entry must
    pass every check of a cache hit and be anchored by hub.lock (:func:`anchor_problem`).
    """
    if not _is_key(key):
        return f"result key {key!r} is not 64 lowercase hex digits"
    if set(files) not in (result_files(False), result_files(True)):
        want = sorted(result_files(True))
        return f"result {key}: expected the files {want} (the export ones optional), found {sorted(files)}"
    dest = work / "results" / key
    dest.mkdir(parents=True, mode=0o700)
    for name, digest in files.items():
        shutil.copyfile(staged / digest, dest / name, follow_symlinks=False)
        (dest / name).chmod(0o444)
    try:
        cached = verified_result_dir(dest)
    except SecureHubError as exc:
        return f"result {key}: {exc.message}"
    problem = anchor_problem(pinned, cached, cache)
    if problem is not None:
        return f"result {key}: {problem}"
    return dest
