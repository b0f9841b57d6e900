"""Attacks on output pinning (SPEC section 4): the same pinned code handing back different weights.

- a *time-bomb* hubconf whose weights change once ``time.time()`` passes a date written into the
  published tree: locked before, loaded after -> ``output-mismatch``; also when the child forges its
  own output (the hubconf rewrites the child's serializer after the date);
- a *non-reproducible* entrypoint (seeded from ``os.urandom``): ``securehub lock`` reports it and
  pins nothing (exit 1, hub.lock byte-identical);
- a result-cache entry rewritten *consistently* (other weights, manifest digests recomputed so the
  entry passes its own checks): refused with ``hash-mismatch`` because the lock's pinned output
  anchors the entry, nothing served, the sandbox not re-run.

End-to-end cases go through the real git server, sandbox and torch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import torch
from safetensors.torch import save_file

import securehub
from securehub._util.digest import args_sha256
from securehub.config.lockfile import EntrypointEntry, Lockfile, OutputPin, RepoEntry
from securehub.config.policy import Policy
from securehub.errors import HashMismatch, OutputMismatch, SecureHubError
from securehub.pipeline.context import Context
from securehub.pipeline.lock import lock_repos
from securehub.pipeline.result_cache import MANIFEST, STATE, cache_plan, cached_or_run, store_result
from securehub.pipeline.state_digest import config_sha256, state_sha256
from securehub.pipeline.tree import VerifiedTree
from securehub.resolve.spec import parse_spec
from securehub.sandbox.parent.session import SandboxResult
from securehub.store.cache import Cache
from securehub.trust.result import OutputGuard
from securehub.verify.tensor_digest import file_lines, lines_digest
from tests._hub_helpers import NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish
from tests._servers import GitServer, RepoFactory
from tests.integration.test_lock_cli import Cli, cli  # noqa: F401 - the fixture is used by name

# --------------------------------------------------------------------------- time bomb (end to end)

_Armed = TypeVar("_Armed")


def armed_before_the_date(arm: Callable[[float, int], _Armed], margins_s: tuple[float, ...]) -> tuple[_Armed, float]:
    """Publish and lock time bombs whose date is ``margins_s[i]`` seconds away; ``(what arm returned, the date)``.

    ``arm(date, attempt)`` publishes the bombs (new names per attempt) and does every step that must
    finish before the date. A fast machine waits only the first, short margin; a machine too slow for
    it tries again with the next, longer one (the caller then waits for that date instead of a fixed
    worst-case margin), and the test fails only when the longest is missed too.
    """
    for attempt, margin in enumerate(margins_s):
        date = time.time() + margin
        armed = arm(date, attempt)
        if time.time() < date:
            return armed, date
    raise AssertionError(f"the machine was too slow to arm the time bombs within {max(margins_s)} s")


def wait_for(date: float) -> None:
    """Sleep until just after ``date`` (``time.time()``)."""
    time.sleep(max(0.0, date - time.time()) + 0.5)


TIME_BOMB = """
import time
import torch
from torch import nn

T = @T@


def net():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    if time.time() > T:  # the time bomb: same pinned code, other weights after the date
        with torch.no_grad():
            model[0].weight.mul_(-1)
    return model.eval()
"""

FORGED_SERIALIZER = """
import sys
import time
import torch
from torch import nn

T = @T@


def net():
    if time.time() > T:
        # The hubconf runs in the child: it rewrites the child's own serializer, so the file that
        # crosses the channel is not the model it returns.
        runtime = sys.modules["securehub.sandbox.child.runtime"]
        honest = runtime.state_parts

        def forged(tensors):
            tensors = {k: torch.zeros_like(v) if k.endswith("weight") else v for k, v in tensors.items()}
            return honest(tensors)

        runtime.state_parts = forged
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
"""


@NEEDS_FULL_SANDBOX
def test_time_bomb_hubconfs_are_output_mismatch_after_the_date(tmp_path: Path, git_server: GitServer) -> None:
    (tmp_path / "env").mkdir()
    with hub_env_context(tmp_path / "env", git_server) as env:
        # Both bombs share one date and one lock (two sandbox runs each), which must finish before it.
        sources = {"weights-after-date": TIME_BOMB, "forged-serializer": FORGED_SERIALIZER}
        lock_path = tmp_path / "hub.lock"

        def arm(date: float, attempt: int) -> dict[str, str]:
            lock_path.unlink(missing_ok=True)  # a retry's lock holds only its own bombs
            specs = {
                kind: env.spec(
                    publish(env, f"time-bomb-{kind}-{attempt}", {"hubconf.py": source.replace("@T@", repr(date))})
                )
                for kind, source in sources.items()
            }
            lock_repos(list(specs.values()), entrypoints=["net"], lock=lock_path, policy="default")
            return specs

        specs, bomb = armed_before_the_date(arm, (15.0, 90.0))
        locked = Lockfile.load(lock_path)
        before = lock_path.read_bytes()
        wait_for(bomb)

        for kind, spec in specs.items():
            pinned = locked.repos[spec].entrypoints["net"].outputs
            assert set(pinned) == {args_sha256((), {})}, kind
            with pytest.raises(SecureHubError) as info:
                securehub.load(spec, "net", lock=str(lock_path), policy="default", verbose=False)

            err = info.value
            assert isinstance(err, OutputMismatch) and err.code == "output-mismatch", (kind, err)
            pin = pinned[args_sha256((), {})]
            assert f"state_sha256 {pin.state_sha256}, found " in err.message, kind
            assert f"securehub lock {spec} -e net --upgrade" in err.message, kind
            assert lock_path.read_bytes() == before  # nothing locked
            results = env.hub / "results"
            assert not results.exists() or not any(results.iterdir())  # nothing cached
            last = audit_records(env)[-1]
            assert (last["action"], last["entrypoint"], last["outcome"], last["code"]) == (
                "load", "net", "refused", "output-mismatch",
            )  # fmt: skip
            assert last["args_sha256"] == args_sha256((), {})


# --------------------------------------------------------------------------- non-reproducible (end to end, CLI)

URANDOM = """
import os
import torch
from torch import nn


def net():
    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))  # defeats the sandbox's fixed seed
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
"""


@NEEDS_FULL_SANDBOX
def test_non_reproducible_entrypoint_is_reported_by_lock_not_pinned(
    cli: Cli,  # noqa: F811 - pytest fixture by name
    repo_factory: RepoFactory,  # noqa: F811 - pytest fixture by name
) -> None:
    repo = repo_factory.make_repo("e2e/urandom", {"hubconf.py": URANDOM})
    repo.tag("v1", annotated=True)
    assert cli("lock", "e2e/urandom:v1").code == 0  # the repo itself pins fine
    before = cli.lock_path.read_bytes()

    r = cli("lock", "e2e/urandom:v1", "-e", "net")

    assert r.code == 1
    assert len(r.errors) == 1 and r.errors[0].startswith("error[output-mismatch]: "), r.errors
    assert "not reproducible: two runs gave different state (first differing tensor: 0.bias)" in r.errors[0]
    assert cli.lock_path.read_bytes() == before
    assert cli.audit_records()[-1]["code"] == "output-mismatch"


# --------------------------------------------------------------------------- consistent cache rewrite


URL_STATE = {"0.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4), "0.bias": torch.ones(3)}
CONFIG = {"format": "securehub-config/1", "note": "opaque to the cache"}
KEY = "acme/m:v1"


def _pinned_ctx(tmp_path: Path) -> tuple[Context, VerifiedTree]:
    pin = OutputPin(state_sha256(URL_STATE), config_sha256(CONFIG, tree=None), None)
    entry = RepoEntry(
        remote="https://git.example/acme/m.git", ref="v1", ref_type="tag", commit="a" * 40, tree_sha256="b" * 64,
        entrypoints={"model": EntrypointEntry(outputs={args_sha256((), {}): pin})},
    )  # fmt: skip
    ctx = Context(Policy.load("default"), Lockfile(repos={KEY: entry}), None, True, None, Cache(tmp_path / "hub"))
    (tmp_path / "tree").mkdir()
    tree = VerifiedTree(parse_spec(KEY), tmp_path / "tree", "v1", "tag", entry.commit, entry.tree_sha256, entry, False)
    return ctx, tree


def _never(out: Path) -> SandboxResult:
    raise AssertionError("a rewritten cache entry must not trigger a silent re-run")


def test_result_cache_entry_rewritten_consistently_is_refused(tmp_path: Path) -> None:
    ctx, tree = _pinned_ctx(tmp_path)
    guard = OutputGuard(KEY, "model", args_sha256((), {}), pin=ctx.lock.repos[KEY].entrypoints["model"].outputs[
        args_sha256((), {})])  # fmt: skip
    plan = cache_plan(ctx, tree, "model", (), {}, None, pin=guard.pin)
    assert plan is not None  # a pinned output with no artifacts is cacheable: the pin is the anchor
    src = tmp_path / "out" / "state.safetensors"
    src.parent.mkdir()
    save_file(URL_STATE, src)
    entry = store_result(ctx.cache, plan.key, src, CONFIG, None, inputs=plan.inputs)

    # The attacker rewrites weights and manifest together, so the entry passes its own checks.
    for p in (entry, *entry.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    evil = {k: torch.zeros_like(v) for k, v in URL_STATE.items()}
    save_file(evil, entry / STATE)
    manifest = json.loads((entry / MANIFEST).read_bytes())
    manifest.update(state_digest=lines_digest(file_lines(entry / STATE)), state_size=(entry / STATE).stat().st_size)
    (entry / MANIFEST).write_bytes(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    cached_bytes = sorted((p.name, p.read_bytes()) for p in entry.iterdir())

    with pytest.raises(HashMismatch) as info:
        cached_or_run(ctx, tree, "model", (), {}, example_inputs=None, force_reload=False, run=_never, guard=guard)

    assert info.value.code == "hash-mismatch"
    assert f"state_sha256 {guard.pin.state_sha256}, found {state_sha256(evil)}" in info.value.message  # type: ignore[union-attr]
    assert "securehub cache prune" in info.value.message
    assert sorted((p.name, p.read_bytes()) for p in entry.iterdir()) == cached_bytes  # nothing repaired silently


def test_result_cache_entry_with_pinned_output_is_served_when_it_matches(tmp_path: Path) -> None:
    ctx, tree = _pinned_ctx(tmp_path)
    pin = ctx.lock.repos[KEY].entrypoints["model"].outputs[args_sha256((), {})]
    guard = OutputGuard(KEY, "model", args_sha256((), {}), pin=pin)
    plan = cache_plan(ctx, tree, "model", (), {}, None, pin=pin)
    assert plan is not None
    src = tmp_path / "out" / "state.safetensors"
    src.parent.mkdir()
    save_file(URL_STATE, src)
    store_result(ctx.cache, plan.key, src, {**CONFIG, "root": None}, None, inputs=plan.inputs)
    # config differs from the pin ("root" added consistently): refused too
    with pytest.raises(HashMismatch, match="config_sha256"):
        cached_or_run(ctx, tree, "model", (), {}, example_inputs=None, force_reload=False, run=_never, guard=guard)
