"""The verified result cache: reuse a locked entrypoint's sandbox output without starting the sandbox.

A ``load`` whose inputs were all seen before -- commit, tree digest,
entrypoint, arguments, the locked artifact digests, the policy, the securehub
and torch versions, the example inputs -- produces the same sandbox output
again, so the parent can keep that output (safetensors state, JSON config,
exported program) and rebuild the module from it directly.

This module decides *what* is cached and under which key, and provides
steps 4 and 6-8 of :func:`securehub.pipeline.load.load` (:func:`lookup`,
:func:`admit_output`, :func:`rebuild_module`, :func:`store_admitted`); the
on-disk format and its re-verification live in :mod:`securehub.store.results`
(``results/<key>/``; ``key`` is the sha256 of the canonical JSON of the inputs,
:func:`result_key`). A fresh result is stored only after the module was
rebuilt from it: a load that ends in ``reconstruct-refused`` stores nothing.

What is cacheable, and why: only a load of an entrypoint that hub.lock pins
completely -- the repo entry has a commit and the entrypoint entry lists its
artifacts, each with a locked sha256. The key must be computed *before* the
sandbox runs, so everything the entrypoint may read has to be known by digest
beforehand; for an unlocked load the artifacts (and hence the weights) could
change under the same key. After a sandbox run the result is stored only if
the child fetched at least one artifact and every artifact it fetched is one
of the locked ones. An entrypoint that fetched nothing (a randomly
initialised model) is cached only when hub.lock pins its output (the child
runs seeded and deterministic, and the pin anchors the entry); otherwise it is
re-run every time, as torch.hub would. A pinned output's digests are part of
the key, so re-pinning (``lock --upgrade``) selects a fresh entry.

Guarantees (every hit is re-verified, SPEC section 4):

* the manifest must parse, name this key, and its inputs must hash to the
  key; every small file's sha256, the state's size and the
  ``securehub-state/1`` digest of its tensors must match the manifest;
  the directory must hold exactly the expected files; the state file must be
  well-formed safetensors. Anything else raises
  :class:`~securehub.errors.HashMismatch` -- the cache was tampered with or is
  corrupt, and it is never silently re-run or repaired (``securehub cache
  prune`` removes broken results; ``force_reload=True`` replaces one);
* the state is read once, each tensor hashed on a thread pool as soon as it
  is in memory (:func:`securehub.verify.fast_safetensors.load_verified`,
  :class:`securehub.verify.tensor_digest.TensorHasher`): the tensors returned
  are exactly the bytes whose digest was checked;
* entries appear atomically (built in ``tmp/``, renamed into place) and are
  read under the entry's lock, so a concurrent ``force_reload`` never mixes
  two versions;
* output pinning (SPEC section 4): when hub.lock pins the load's output, a
  fresh sandbox output is compared with the pin before it is stored
  (``output-mismatch``), and a hit is served only when the canonical digests
  (:mod:`securehub.pipeline.state_digest`) of its state and config -- and program,
  when the lock's example inputs were used -- equal the pinned ones; anything
  else is ``HashMismatch`` (the entry passed its own manifest, so it was
  rewritten consistently or is stale: cache tampering, like a cached artifact
  whose bytes differ from the lock). The locked artifacts are still re-hashed
  (SPEC section 4: every cached artifact, every load), on a second thread; the
  state's tensors are hashed once, and both the manifest's state digest and
  the pin's canonical digests are computed from those per-tensor digests.

Trust note: with a pinned output (``lock.outputs: verify`` or ``required``
and ``securehub lock -e``), the lock anchors the entry: a consistent rewrite
of manifest and files is refused. Without one, the manifest is anchored by
nothing outside the cache: someone who can write the cache directory and
rewrites manifest and files consistently can substitute weights (never code:
the config and exported program still pass every reconstruction check,
exactly like a hostile child's output). The cache directory must therefore be
writable only by its owner -- the sandbox child never can -- and a CI cache
restored from untrusted jobs must not include ``results/`` unless every
cached entrypoint's output is pinned.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from securehub._util.storage import storage_exhaustion
from securehub._util.version import __version__
from securehub.config.lockfile import OutputPin
from securehub.pipeline.context import Context
from securehub.pipeline.state_digest import OutputDigests, output_digests
from securehub.pipeline.tree import VerifiedTree
from securehub.reconstruct.rebuild import reconstruct
from securehub.reconstruct.source import SourceCall
from securehub.reconstruct.source_guard import ArtifactSource
from securehub.sandbox.example_inputs import example_inputs_digest
from securehub.sandbox.parent.session import SandboxResult
from securehub.sandbox.wire.messages import ExportInfo
from securehub.store.results import (
    MANIFEST,
    RESULT_FORMAT,
    STATE,
    CachedResult,
    canonical,
    load_result,
    store_result,
    verify_result_dir,
)
from securehub.trust.result import CachePlan, OutputGuard, cacheable_artifacts, store_admits
from securehub.verify.fast_safetensors import HashedState, read_hashed

__all__ = [
    "MANIFEST",
    "RESULT_FORMAT",
    "STATE",
    "CacheStatus",
    "CachedResult",
    "Admitted",
    "LoadOutcome",
    "cache_plan",
    "cached_or_run",
    "example_inputs_digest",
    "load_result",
    "lookup",
    "rebuild_module",
    "result_inputs",
    "result_key",
    "store_admitted",
    "store_result",
    "verify_result_dir",
]


# --------------------------------------------------------------------------- keys


def result_inputs(
    *,
    commit: str,
    tree_sha256: str,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    artifact_digests: Mapping[str, str],
    policy_sha256: str,
    securehub_version: str,
    torch_version: str,
    example_inputs_digest: str | None,
    output_pin: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document a result key is the digest of. ``ValueError``/``TypeError`` if args are not JSON.

    ``output_pin``: the digests hub.lock pins for this load's output, if any. Part of the key only
    when present (unpinned keys are unchanged), so re-pinning (``lock --upgrade``) selects a new
    entry instead of refusing the old one as stale.
    """
    doc = {
        "format": RESULT_FORMAT,
        "commit": commit,
        "tree_sha256": tree_sha256,
        "entrypoint": entrypoint,
        "args": list(args),
        "kwargs": dict(kwargs),
        "artifacts": dict(sorted(artifact_digests.items())),
        "policy_sha256": policy_sha256,
        "securehub_version": securehub_version,
        "torch_version": torch_version,
        "example_inputs_sha256": example_inputs_digest,
    }
    if output_pin is not None:
        doc["output_pin"] = dict(output_pin)
    canonical(doc)  # refuse what is not strict JSON now, not when storing
    return doc


def result_key(inputs: Mapping[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a :func:`result_inputs` document: equal inputs, equal key."""
    return hashlib.sha256(canonical(inputs)).hexdigest()


def cache_plan(
    ctx: Context,
    tree: VerifiedTree,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    example_inputs: Sequence[torch.Tensor] | None,
    *,
    pin: OutputPin | None = None,
) -> CachePlan | None:
    """The plan for a cacheable load, or ``None`` when the load is not fully locked (see the module docstring).

    ``pin``: the output hub.lock pins for the load (then an entrypoint with no artifacts is cacheable too).
    """
    digests = cacheable_artifacts(
        tree.entry, tree.commit, local=tree.spec.kind == "local", entrypoint=entrypoint, lock=ctx.lock,
        pinned=pin is not None,
    )  # fmt: skip
    if digests is None or tree.commit is None:
        return None
    try:
        inputs = result_inputs(
            commit=tree.commit,
            tree_sha256=tree.tree_sha256,
            entrypoint=entrypoint,
            args=args,
            kwargs=kwargs,
            artifact_digests=digests,
            policy_sha256=ctx.policy.sha256,
            securehub_version=__version__,
            torch_version=str(torch.__version__),
            example_inputs_digest=example_inputs_digest(example_inputs),
            output_pin=pin.to_json() if pin is not None else None,
        )
    except (TypeError, ValueError):
        return None  # arguments that are not strict JSON: the sandbox call reports them
    return CachePlan(result_key(inputs), inputs, digests, pin is not None)


# --------------------------------------------------------------------------- the load path


CacheStatus = Literal["hit", "miss", "refresh", "off"]


@dataclass(frozen=True)
class LoadOutcome:
    """What :func:`cached_or_run` did.

    ``cache``: ``hit`` (rebuilt from a verified entry, no sandbox), ``miss``
    (ran, stored), ``refresh`` (``force_reload``: ran, replaced), ``off``
    (not cacheable, or the run fetched something not locked: ran, nothing
    stored). ``result`` is the sandbox result when the sandbox ran (its
    ``state_path`` is gone by then: the file was moved or its directory removed).
    ``artifacts``: the ``(url, sha256)`` the result was built from.
    ``output``: the canonical digests of the output, when the guard needed
    them (a pinned output that matched, or an unpinned one to record).
    """

    module: nn.Module
    strategy: str
    cache: CacheStatus
    key: str | None
    result: SandboxResult | None
    artifacts: tuple[tuple[str, str], ...]
    output: OutputDigests | None = None


def _source_call(
    ctx: Context, entrypoint: str, args: Sequence[Any], kwargs: Mapping[str, Any], fetched: Sequence[tuple[str, str]]
) -> SourceCall | None:
    """What the ``source`` strategy re-runs: the call, with the artifacts its sandboxed run received
    (each checked against hub.lock on use); ``None`` when the policy does not list ``source``."""
    if "source" not in ctx.policy.reconstruct.strategies:
        return None
    locked = {url: pin.sha256 for url, _ in fetched if (pin := ctx.lock.artifact(url)) is not None}
    artifacts = ArtifactSource(
        tuple(fetched), locked, ctx.cache.artifact_path, pickle_in_parent=ctx.policy.artifacts.pickle_in_parent
    )
    return SourceCall(entrypoint, tuple(args), dict(kwargs), artifacts)


def rebuild_module(
    ctx: Context,
    tree: VerifiedTree,
    call: tuple[str, Sequence[Any], Mapping[str, Any]],
    output: tuple[Mapping[str, Any], ExportInfo | None],
    *,
    state_path: Path,
    state: dict[str, torch.Tensor] | None,
    fetched: Sequence[tuple[str, str]],
) -> tuple[nn.Module, str]:
    """Rebuild the module from an admitted output (``call`` = entrypoint, args, kwargs; ``output`` =
    config, exported program) without running repo code here, unless the policy lists ``source``.

    Returns the module and the strategy that built it; every refusal is a
    :class:`~securehub.errors.SecureHubError` (``reconstruct-refused`` and friends).
    ``state``: the verified single-pass read when there is one (no second read of the file).
    """
    entrypoint, args, kwargs = call
    config, export = output
    kw: dict[str, Any] = {
        "config": config,
        "export": export,
        "strategies": ctx.policy.reconstruct.strategies,
        "trusted_modules": ctx.policy.reconstruct.trusted_modules,
        "tree": tree.path,
        "source_call": _source_call(ctx, entrypoint, args, kwargs, fetched),
    }
    if state is not None:
        kw["state"] = state
    else:
        kw["state_path"] = state_path
    module, strategy = reconstruct(**kw)
    return module, strategy


def _verify_locked_artifacts(
    ctx: Context, tree: VerifiedTree, entrypoint: str, unchanged_since_ns: int | None = None
) -> None:
    """Re-hash the cached blobs of the entrypoint's locked artifacts (``HashMismatch`` when tampered).

    ``unchanged_since_ns`` (a hit whose output hub.lock pins; issue 11 item 4: the pin anchors the
    entry, so the hit needs no artifact re-hash): a blob that is a regular file of its locked size
    whose inode has not changed since then (ctime: any write, chmod, rename or new file sets it, and
    no one can set it back) is not re-hashed; any other is, as on every other load.
    """
    entry = tree.entry.entrypoints.get(entrypoint) if tree.entry is not None else None
    for url in entry.artifacts if entry is not None else ():
        pin = ctx.lock.artifact(url)
        if pin is None:
            continue
        path = ctx.cache.artifact_path(pin.sha256)
        if unchanged_since_ns is None or not _untouched(path, pin.size, unchanged_since_ns):
            ctx.cache.verified_artifact(pin.sha256)


def _untouched(path: Path, size: int, since_ns: int) -> bool:
    """Whether ``path`` is a regular file of ``size`` bytes whose inode has not changed since ``since_ns``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size == size and st.st_ctime_ns < since_ns


def lookup(
    ctx: Context, tree: VerifiedTree, entrypoint: str, plan: CachePlan | None, guard: OutputGuard, *,
    force_reload: bool,
) -> tuple[CachedResult, OutputDigests | None] | None:  # fmt: skip
    """The verified cached result for ``plan`` and its output digests, or ``None`` (miss, not cacheable,
    or ``force_reload``). Read-only: nothing is written.

    The entry and the cached blobs of the entrypoint's locked artifacts are
    verified first (``HashMismatch`` on any tampering -- never a silent
    re-run). Output pinning: a hit is served only when its canonical digests
    equal the pinned ones (``HashMismatch`` otherwise: the entry was
    rewritten consistently, or is stale).
    """
    if plan is None or force_reload:
        return None
    return _verified_hit(ctx, tree, entrypoint, plan.key, guard)


@dataclass(frozen=True)
class Admitted:
    """A fresh output that passed :func:`admit_output`.

    ``read``: the parent's single read of the state (tensors, each one's data
    sha256 and their state digest), or ``None`` when neither the guard nor the
    cache needs one (the rebuild then reads the file itself). ``digests``: the
    canonical output digests, when the guard needed them.
    """

    read: HashedState | None
    digests: OutputDigests | None

    @property
    def state(self) -> dict[str, torch.Tensor] | None:
        """The tensors to rebuild from, when the state was read here."""
        return self.read.tensors if self.read is not None else None


def admit_output(guard: OutputGuard, result: SandboxResult, tree: Path, plan: CachePlan | None = None) -> Admitted:
    """Check a fresh sandbox output against hub.lock's output pin (``OutputMismatch``).

    Called before anything is rebuilt or stored: a differing output leaves
    nothing. The sandbox session received the state straight into memory and
    hashed it on the way (``result.state``; issue 11 item 6); only a result
    without it (a test runner's file) is read here, once, when the guard or
    the cache needs its bytes. The canonical digests are computed from those
    tensors, the module is rebuilt from them and the store reuses their state
    digest, so the cold path neither reads nor hashes the state a second time. ``tree``: the tree the
    sandbox ran the hubconf in (the config digest replaces its path, so a pin holds in every cache).
    """
    if result.state_path is None:
        raise ValueError("expected the result of a 'load' sandbox call (it has a state file)")
    read = result.state  # the session received the state into memory, hashed (the file is never read back)
    if read is None:
        if not guard.active and plan is None:
            return Admitted(None, None)
        read = read_hashed(result.state_path, digest=True)
    if not guard.active:
        return Admitted(read, None)
    fresh = output_digests(read.tensors, result.config, result.export, tree=tree, data_sha256=read.tensor_sha256)
    guard.check(fresh)
    return Admitted(read, fresh)


def store_admitted(
    ctx: Context, plan: CachePlan | None, result: SandboxResult, admitted: Admitted, *, force_reload: bool
) -> CacheStatus:
    """Store a fresh, admitted, already-rebuilt result when the plan admits it; what happened.

    Called only after the module was rebuilt (side effects last: a load that
    ends in ``reconstruct-refused`` stores nothing). A run that made nested
    ``torch.hub.load`` calls is never stored: its result depends on other
    repos' trees and artifacts that the key does not cover (and each nested
    load must stay audited). ``result.state_path`` is moved into the entry;
    the digest of ``admitted``'s read is reused when the moved file is the one read.
    """
    if plan is None or result.state_path is None or not store_admits(plan, result.fetched, nested=bool(result.nested)):
        return "off"
    store_result(
        ctx.cache,
        plan.key,
        result.state_path,
        result.config,
        result.export,
        inputs=plan.inputs,
        fetched=result.fetched,
        replace=force_reload,
        read=admitted.read,
    )
    return "refresh" if force_reload else "miss"


def cached_or_run(
    ctx: Context,
    tree: VerifiedTree,
    entrypoint: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    example_inputs: Sequence[torch.Tensor] | None,
    force_reload: bool,
    run: Callable[[Path], SandboxResult],
    cacheable: bool = True,
    guard: OutputGuard | None = None,
) -> LoadOutcome:
    """Steps 4-8 of :func:`securehub.pipeline.load.load` with ``run(out_dir)`` as the sandbox step.

    The same step functions load uses, composed for callers (and tests) that
    bring their own sandbox run: :func:`lookup` (a verified hit: no sandbox,
    no download), else ``run`` into a fresh directory under the cache's
    ``tmp/``, :func:`admit_output`, :func:`rebuild_module`, and only then
    :func:`store_admitted`. ``cacheable=False`` (``example_inputs="auto"``)
    always runs and stores nothing.
    """
    guard = guard or OutputGuard("", entrypoint, "")
    plan = cache_plan(ctx, tree, entrypoint, args, kwargs, example_inputs, pin=guard.pin) if cacheable else None
    call = (entrypoint, args, kwargs)
    found = lookup(ctx, tree, entrypoint, plan, guard, force_reload=force_reload)
    if found is not None:
        hit, digests = found
        module, strategy = rebuild_module(
            ctx, tree, call, (hit.config, hit.export), state_path=hit.path / STATE, state=hit.state, fetched=hit.fetched
        )
        return LoadOutcome(module, strategy, "hit", hit.key, None, hit.fetched, digests)
    # A full disk while the sandbox's output streams into tmp/ or while the entry is stored is a
    # clean `network` refusal (red team: it escaped as a raw OSError); the temp dir goes either way.
    with (
        storage_exhaustion("the sandbox's result", ctx.cache.dir),
        ctx.cache.temp_dir("result-") as out,  # flock-ed: a concurrent `cache prune` leaves it alone
    ):
        result = run(out)
        admitted = admit_output(guard, result, tree.path, plan)
        assert result.state_path is not None  # noqa: S101 - admit_output refused a result without one
        module, strategy = rebuild_module(
            ctx, tree, call, (result.config, result.export), state_path=result.state_path, state=admitted.state,
            fetched=result.fetched,
        )  # fmt: skip
        status = store_admitted(ctx, plan, result, admitted, force_reload=force_reload)
    key = plan.key if plan is not None and status != "off" else None
    return LoadOutcome(module, strategy, status, key, result, result.fetched, admitted.digests)


def _verified_hit(
    ctx: Context, tree: VerifiedTree, entrypoint: str, key: str, guard: OutputGuard
) -> tuple[CachedResult, OutputDigests | None] | None:
    """The verified entry for ``key`` and its output digests (``None`` if absent), its locked artifacts checked.

    SPEC section 4: cached artifacts are re-verified on every load, even when
    the result derived from them is what gets used: a tampered cached blob is
    reported as such, never masked by a good result. When hub.lock pins the
    output, the pin anchors the entry (issue 11 item 4: such a hit needs no
    artifact re-hash), so a blob is re-hashed only if its inode changed since
    the entry was stored (its ctime, which every write, chmod, rename or new
    file moves and no one can set back, is not older than the manifest's):
    tampering is still caught and reported, an untouched blob costs one
    ``lstat``. Unpinned, every blob is re-hashed. The artifacts are checked on
    a second thread (hashlib releases the GIL), overlapping the result's own
    single-pass read and its canonical digest (computed tensor by tensor as
    they are read); nothing is returned before both are done. No entry, no
    hashing: a miss runs the sandbox, whose broker re-verifies each blob the
    child actually fetches (hashing a 700 MB blob here first cost 0.5 s per
    cold load).
    """
    if not os.path.lexists(ctx.cache.result_path(key)):
        return None
    stored_ns = None
    if guard.active:  # anchored by the pin: blobs untouched since the entry was stored are not re-hashed
        with contextlib.suppress(OSError):
            stored_ns = os.lstat(ctx.cache.result_path(key) / MANIFEST).st_ctime_ns
    with ThreadPoolExecutor(max_workers=1) as pool:
        artifacts_ok = pool.submit(_verify_locked_artifacts, ctx, tree, entrypoint, stored_ns)
        # The entry's tensors are hashed once, each as soon as it is read; the pin's canonical
        # digests are computed from those per-tensor digests (issue 11: warm path).
        hit = load_result(ctx.cache, key)
        found = None
        if hit is not None and guard.active:
            found = output_digests(hit.state, hit.config, hit.export, tree=tree.path, data_sha256=hit.tensor_sha256)
            guard.check(found, cached_key=key)
        artifacts_ok.result()
    return (hit, found) if hit is not None else None
