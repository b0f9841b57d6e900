"""Side effects of refusals: one row per SPEC section 9 code (issue 13, item 5).

Each row is a scenario that makes a load or lock fail with that code. Whatever the code, the
refusal leaves: hub.lock byte-identical, no new file anywhere in the hub dir (trees, artifacts,
results, tmp; the audit log is the one file a refusal appends to), no canary read or written, and
no request to a server the scenario should not contact. Scenarios that need the repo's tree pin
and cache it *before* the snapshot, so the row measures only the refused operation.

Every SPEC code has a row, each a real trigger through the real git server, sandbox and torch.
Rows whose attack needs a server (a hostile checkpoint) say so and are held to "nothing admitted"
instead of "no connection". Two rows simulate the *machine*, never the repo: ``sandbox-unavailable``
(the kernel is made to report no Landlock) and ``lock-drift`` (``SECUREHUB_GITHUB_URL`` now points
at another remote than the one hub.lock pinned).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.sandbox._isolation import detect
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish, write_policy
from tests._lock_helpers import keypair
from tests._pickle_fixtures import reduce_call
from tests._servers import GitServer

SPEC_CODES = (
    "ref-not-allowed", "ref-ambiguous", "ref-not-found", "repo-not-allowed", "not-locked", "lock-invalid",
    "lock-drift", "hash-mismatch", "output-mismatch", "artifact-not-allowed", "unsafe-pickle",
    "format-not-allowed", "archive-unsafe", "signature-invalid", "policy-invalid", "sandbox-violation",
    "sandbox-timeout", "sandbox-resource", "sandbox-unavailable", "sandbox-protocol", "reconstruct-refused",
    "reconstruct-mismatch", "network", "offline", "dependency-missing", "entrypoint-not-found",
    "entrypoint-error",
)  # fmt: skip

HUBCONF = """
from torch import nn

dependencies = ["torch"]


def net():
    return nn.Linear(2, 2)


def boom():
    raise ValueError("the entrypoint failed")


def number():
    return 1


def peek(path):
    open(path).read()  # a file outside what the sandbox may read (the canary)
    return nn.Linear(2, 2)


def forge():
    import sys

    runtime = sys.modules["securehub.sandbox._child_runtime"]
    runtime.describe = lambda module, tree=None: {"format": "not-a-config"}  # the child lies
    return nn.Linear(2, 2)


def slow():
    import time

    time.sleep(60)


def evil_checkpoint(url):
    import torch.hub

    torch.hub.load_state_dict_from_url(url)  # a pickle whose __reduce__ would touch the canary
    return nn.Linear(2, 2)


def memory_bomb():
    hog = []
    while True:
        hog.append(bytearray(64 * 1024 * 1024))


def drop_bias():
    import sys

    runtime = sys.modules["securehub.sandbox._child_runtime"]
    honest = runtime.write_state

    def forged(tensors, out):  # the child sends a state the recorded config does not fit
        return honest({k: v for k, v in tensors.items() if k != "bias"}, out)

    runtime.write_state = forged
    return nn.Linear(2, 2)


class Net(nn.Module):  # a repo-defined class: the default policy cannot rebuild it without example inputs
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)


def untrusted():
    return Net()


def fetch_remote():
    import torch.hub

    torch.hub.load_state_dict_from_url("http://10.0.0.1/w.pth")  # plain http to a non-loopback host
    return nn.Linear(2, 2)
"""


DEPS_HUBCONF = """
from torch import nn

dependencies = ["torch", "securehub_test_absent_package"]


def net():
    return nn.Linear(2, 2)
"""


@dataclass
class World:
    env: HubEnv
    spec: str  # owner/repo:v1 on the git server, pinned and cached in `lock`
    deps_spec: str  # a repo declaring a dependency that is not installed, pinned and cached in `lock`
    lock: Path
    pinned_lock: Path | None  # `lock` plus the output pin of `net` (None without a full sandbox)
    canary: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    root = tmp_path_factory.mktemp("refusals")
    with hub_env_context(root, git_server) as env:
        repo = publish(env, "refusals", {"hubconf.py": HUBCONF})
        repo.branch("both")
        repo.tag("both")
        spec = env.spec(repo)
        deps_spec = env.spec(publish(env, "deps", {"hubconf.py": DEPS_HUBCONF}))
        lock = root / "hub.lock"
        lock_repos([spec, deps_spec], policy="default", lock=lock)
        pinned_lock = None
        if not _NO_FULL_SANDBOX:  # pinning an output runs the entrypoint (twice) in the sandbox
            pinned_lock = root / "pinned.lock"
            lock_repos([spec], entrypoints=["net"], policy="default", lock=pinned_lock)
        canary = root / "canary"
        canary.write_text("secret")
        yield World(env, spec, deps_spec, lock, pinned_lock, canary)


def _listing(hub: Path) -> frozenset[str]:
    """Every file and symlink in the hub dir but the audit log, and every directory outside ``tmp/``
    (an empty scratch directory under ``tmp/`` holds nothing anyone could trust). An *empty* regular
    file under ``locks/`` is an flock coordination file (taken before a result store or a download
    starts), not content: it is left out, but a non-empty one counts."""
    out = set()
    for p in hub.rglob("*"):
        rel = p.relative_to(hub).as_posix()
        if p.is_dir() and not p.is_symlink():
            if not rel.startswith("tmp"):
                out.add(rel + "/")
        elif p.name == "audit.jsonl" or (
            rel.startswith("locks/") and p.is_file() and not p.is_symlink() and p.stat().st_size == 0
        ):
            continue
        else:
            out.add(rel)
    return frozenset(out)


Scenario = Callable[[World, Path, pytest.MonkeyPatch], None]
_NO_FULL_SANDBOX: bool = NEEDS_FULL_SANDBOX.mark.args[0]  # the skipif condition


def _load(w: World, spec: str, entry: str = "net", *args: object, **kw: object) -> None:
    kw.setdefault("policy", "default")
    kw.setdefault("lock", w.lock)
    securehub.load(spec, entry, *args, verbose=False, **kw)  # type: ignore[arg-type]


def _policy(tmp: Path, **sections: dict[str, object]) -> Path:
    return write_policy(tmp / "policy.yaml", extends="default", **sections)


def _not_locked(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    other = tmp / "other.lock"
    other.write_bytes(w.lock.read_bytes())
    data = json.loads(other.read_text())
    data["repos"] = {}
    other.write_text(json.dumps(data))
    _load(w, w.spec, policy=_policy(tmp, lock={"mode": "required"}), lock=other)


def _lock_invalid(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    bad = tmp / "bad.lock"
    bad.write_text('{"version": 1, "repos": {}, "repos": {}}')
    _load(w, w.spec, lock=bad)


def _hash_mismatch(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    bad = tmp / "tampered.lock"
    data = json.loads(w.lock.read_text())
    data["repos"][w.spec]["tree_sha256"] = "0" * 64
    bad.write_text(json.dumps(data))
    _load(w, w.spec, lock=bad, force_reload=True)


def _signature_invalid(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    _, pub = keypair(tmp, "k")
    _load(w, w.spec, policy=_policy(tmp, signatures={"trusted_keys": [pub]}))


def _policy_invalid(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    path = tmp / "policy.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "sandbox": {"network": "maybe"}}))
    _load(w, w.spec, policy=path)


def _offline(w: World, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    _load(w, w.spec.replace(":v1", ":heads/both"))


def _archive_unsafe(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    local = tmp / "local"
    local.mkdir()
    (local / "hubconf.py").write_text(HUBCONF)
    (local / "leak").symlink_to(w.canary)  # a symlink leaving the tree, to the canary
    _load(w, str(local), source="local")


def _lock_drift(w: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    # The user's environment now maps owner/repo to another remote than the one hub.lock pinned.
    mp.setenv("SECUREHUB_GITHUB_URL", "http://127.0.0.1:9/")
    _load(w, w.spec)


def _output_mismatch(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    # The pinned code now hands back other weights than the pin (the time bomb of
    # test_output_pinning_attacks, without the wait): the pin differs from what `net` produces.
    assert w.pinned_lock is not None
    other = tmp / "pinned.lock"
    data = json.loads(w.pinned_lock.read_text())
    (pin,) = data["repos"][w.spec]["entrypoints"]["net"]["outputs"].values()
    pin["state_sha256"] = "0" * 64
    other.write_text(json.dumps(data))
    _load(w, w.spec, lock=other)


def _unsafe_pickle(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    url = w.env.put(f"refusals/{uuid.uuid4().hex}.pth", reduce_call("posix", "system", f"touch {w.canary}.pwned"))
    _load(w, w.spec, "evil_checkpoint", url)


def _format_not_allowed(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    url = w.env.put(f"refusals/{uuid.uuid4().hex}.pth", b"just some text, not a checkpoint\n")
    _load(w, w.spec, "evil_checkpoint", url)


def _sandbox_unavailable(w: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    # The machine, not the repo: a kernel without Landlock under `sandbox.isolation: require`.
    real = detect.offered
    mp.setattr(detect, "offered", lambda disabled=(): real({*disabled, "landlock"}))
    _load(w, w.spec)


#: code -> (scenario, may the git server be contacted?, needs the sandbox?, may the artifact server
#: be contacted?). A row that contacts the artifact server still admits nothing (the listing).
ROWS: dict[str, tuple[Scenario, bool, bool, bool]] = {
    "ref-not-allowed": (lambda w, t, mp: _load(w, "owner/repo:HEAD"), False, False, False),
    "repo-not-allowed": (lambda w, t, mp: _load(w, "git+http://10.0.0.1/x.git@v1"), False, False, False),
    "ref-not-found": (lambda w, t, mp: _load(w, w.spec.replace(":v1", ":nope")), True, False, False),
    "ref-ambiguous": (lambda w, t, mp: _load(w, w.spec.replace(":v1", ":both")), True, False, False),
    "not-locked": (_not_locked, False, False, False),
    "lock-invalid": (_lock_invalid, False, False, False),
    "hash-mismatch": (_hash_mismatch, True, False, False),
    "signature-invalid": (_signature_invalid, False, False, False),
    "policy-invalid": (_policy_invalid, False, False, False),
    "offline": (_offline, False, False, False),
    "network": (lambda w, t, mp: _load(w, "git+http://127.0.0.1:9/x.git@v1"), False, False, False),
    "archive-unsafe": (_archive_unsafe, False, False, False),
    "sandbox-violation": (lambda w, t, mp: _load(w, w.spec, "peek", str(w.canary)), False, True, False),
    "artifact-not-allowed": (lambda w, t, mp: _load(w, w.spec, "fetch_remote"), False, True, False),
    "sandbox-protocol": (lambda w, t, mp: _load(w, w.spec, "forge"), False, True, False),
    "sandbox-timeout": (
        lambda w, t, mp: _load(w, w.spec, "slow", policy=_policy(t, sandbox={"timeout_s": 3})),
        False,
        True,
        False,
    ),
    "entrypoint-not-found": (lambda w, t, mp: _load(w, w.spec, "missing"), False, True, False),
    "entrypoint-error": (lambda w, t, mp: _load(w, w.spec, "boom"), False, True, False),
    "reconstruct-refused": (lambda w, t, mp: _load(w, w.spec, "number"), False, True, False),
    "lock-drift": (_lock_drift, False, False, False),
    "output-mismatch": (_output_mismatch, False, True, False),
    "unsafe-pickle": (_unsafe_pickle, False, True, True),
    "format-not-allowed": (_format_not_allowed, False, True, True),
    "sandbox-resource": (
        lambda w, t, mp: _load(w, w.spec, "memory_bomb", policy=_policy(t, sandbox={"memory_mb": 3072})),
        False,
        True,
        False,
    ),
    "sandbox-unavailable": (_sandbox_unavailable, False, False, False),
    "reconstruct-mismatch": (lambda w, t, mp: _load(w, w.spec, "drop_bias"), False, True, False),
    "dependency-missing": (lambda w, t, mp: _load(w, w.deps_spec), False, True, False),
}


def test_every_spec_code_has_a_row() -> None:
    assert set(ROWS) == set(SPEC_CODES)
    assert len(SPEC_CODES) == 27


@pytest.mark.parametrize("code", SPEC_CODES)
def test_refusal_leaves_no_side_effects(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: str
) -> None:
    scenario, may_contact_git, needs_sandbox, may_contact_artifacts = ROWS[code]
    if needs_sandbox and _NO_FULL_SANDBOX:
        pytest.skip(NEEDS_FULL_SANDBOX.mark.kwargs["reason"])
    hub = world.env.hub
    lock_before = world.lock.read_bytes()
    listing_before = _listing(hub)
    world.env.clear_logs()
    world.env.audit_log.unlink(missing_ok=True)
    with pytest.raises(SecureHubError) as info:
        scenario(world, tmp_path, monkeypatch)
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    (record,) = audit_records(world.env)  # exactly one audit line, naming the refusal
    assert record["code"] == code, record
    assert world.lock.read_bytes() == lock_before, "hub.lock changed"
    assert _listing(hub) == listing_before, f"new in the hub dir: {sorted(_listing(hub) - listing_before)}"
    assert world.canary.read_text() == "secret"
    assert not world.canary.with_name("canary.pwned").exists(), "a payload ran"
    if not may_contact_artifacts:
        assert world.env.artifacts.connections == 0, "the artifact server was contacted"
    if not may_contact_git:
        assert world.env.git.connections == 0, "the git server was contacted"


@NEEDS_FULL_SANDBOX
def test_refused_rebuild_of_a_cacheable_load_leaves_no_result(world: World, tmp_path: Path) -> None:
    """Side effects last (issue 9): a load hub.lock pins completely (output pinned, so the result is
    cacheable) that ends in reconstruct-refused stores no result -- the rebuild runs before the store
    -- and its miss wrote nothing either: the hub dir and hub.lock are exactly as before."""
    lock = tmp_path / "pinned.lock"
    lock.write_bytes(world.lock.read_bytes())
    lock_repos([world.spec], entrypoints=["untrusted"], policy="default", lock=lock)  # pins the output
    hub = world.env.hub
    lock_before = lock.read_bytes()
    listing_before = _listing(hub)
    world.env.clear_logs()
    with pytest.raises(SecureHubError) as info:
        _load(world, world.spec, "untrusted", lock=lock)
    assert info.value.code == "reconstruct-refused", info.value.message
    assert lock.read_bytes() == lock_before, "hub.lock changed"
    assert not (hub / "results").exists(), "a result was stored for a refused load"
    assert _listing(hub) == listing_before, f"new in the hub dir: {sorted(_listing(hub) - listing_before)}"
    assert world.env.git.connections == 0 and world.env.artifacts.connections == 0
