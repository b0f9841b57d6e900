"""Side effects of refusals: one row per SPEC section 9 code (issue 13, item 5).

Each row is a scenario that makes a load or lock fail with that code. Whatever the code, the
refusal leaves: hub.lock byte-identical, no new file anywhere in the hub dir (trees, artifacts,
results, tmp; the audit log is the one file a refusal appends to), no canary read or written, and
no request to a server the scenario should not contact. Scenarios that need the repo's tree pin
and cache it *before* the snapshot, so the row measures only the refused operation.

Every SPEC code has a row, each a real trigger through the real git server, sandbox and torch;
nothing is patched and no lock is edited. Rows whose attack needs a server (a hostile checkpoint)
say so and are held to "nothing admitted" instead of "no connection". Two rows change the
*machine*, never the repo: ``sandbox-unavailable`` (the load runs in a process whose seccomp
filter denies ``unshare``, as Docker's default profile does, so the child cannot build its
namespaces) and ``lock-drift`` (``SECUREHUB_GITHUB_URL`` now points at another remote than the
one hub.lock pinned). ``output-mismatch`` is a real time bomb: pinned code whose weights change
once ``MKL_NUM_THREADS`` (one of the few variables the child sees) is 7.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import securehub
from securehub.errors import SecureHubError, error_for_code
from securehub.pipeline.lock import lock_repos
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

    runtime = sys.modules["securehub.sandbox.child.runtime"]
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


def bomb():
    import os

    import torch

    model = nn.Linear(2, 2)
    if os.environ.get("MKL_NUM_THREADS") == "7":  # the time bomb: same pinned code, other weights
        with torch.no_grad():
            model.weight.mul_(-1)
    return model


def drop_bias():
    import sys

    runtime = sys.modules["securehub.sandbox.child.runtime"]
    honest = runtime.state_parts

    def forged(tensors):  # the child sends a state the recorded config does not fit
        return honest({k: v for k, v in tensors.items() if k != "bias"})

    runtime.state_parts = forged
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
    pinned_lock: Path | None  # `lock` plus the output pin of `bomb` (None without a full sandbox)
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
            with pytest.MonkeyPatch.context() as mp:  # locked before the bomb's condition holds
                mp.delenv("MKL_NUM_THREADS", raising=False)
                lock_repos([spec], entrypoints=["bomb"], policy="default", lock=pinned_lock)
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


def _output_mismatch(w: World, tmp: Path, mp: pytest.MonkeyPatch) -> None:
    # The pinned code's trigger now holds (the time bomb of test_output_pinning_attacks, keyed on
    # a variable instead of the clock, so without the wait): `bomb` hands back other weights.
    assert w.pinned_lock is not None
    mp.setenv("MKL_NUM_THREADS", "7")
    _load(w, w.spec, "bomb", lock=w.pinned_lock)


def _unsafe_pickle(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    url = w.env.put(f"refusals/{uuid.uuid4().hex}.pth", reduce_call("posix", "system", f"touch {w.canary}.pwned"))
    _load(w, w.spec, "evil_checkpoint", url)


def _format_not_allowed(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    url = w.env.put(f"refusals/{uuid.uuid4().hex}.pth", b"just some text, not a checkpoint\n")
    _load(w, w.spec, "evil_checkpoint", url)


#: Loads in a process whose seccomp filter makes unshare(2) fail with EPERM (x86_64 numbers), as
#: container runtimes' default profiles do; prints the refusal's code and message as JSON.
_NO_UNSHARE_LOAD = """
import ctypes, json, struct, sys
import securehub
from securehub.errors import SecureHubError

filt = b"".join(struct.pack("HBBI", *i) for i in (
    (0x20, 0, 0, 4), (0x15, 0, 3, 0xC000003E),  # not x86_64: allow
    (0x20, 0, 0, 0), (0x15, 0, 1, 272),  # unshare
    (0x06, 0, 0, 0x00050001), (0x06, 0, 0, 0x7FFF0000),  # EPERM / allow
))
buf = ctypes.create_string_buffer(filt)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
prog = Prog(len(filt) // 8, ctypes.cast(buf, ctypes.c_void_p))
assert libc.prctl(38, 1, None, 0, 0) == 0, "no_new_privs"
assert libc.prctl(22, 2, ctypes.addressof(prog), 0, 0) == 0, ctypes.get_errno()
try:
    securehub.load(sys.argv[1], "net", policy="default", lock=sys.argv[2], verbose=False)
except SecureHubError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message}))
"""


def _sandbox_unavailable(w: World, tmp: Path, _mp: pytest.MonkeyPatch) -> None:
    # The machine, not the repo: unshare(2) is denied to the loading process and its children.
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        pytest.skip("the seccomp filter that denies unshare is written for x86_64 Linux")
    run = subprocess.run(
        [sys.executable, "-c", _NO_UNSHARE_LOAD, w.spec, str(w.lock)],
        cwd=tmp, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip(), f"the load did not refuse: {run.stderr[-2000:]}"
    found = json.loads(run.stdout.strip().splitlines()[-1])
    if found["code"] == "sandbox-unavailable" and not _NO_FULL_SANDBOX:  # the child's report, not the pre-flight
        assert "achieved in the child" in found["message"] and "Operation not permitted" in found["message"], found
    raise error_for_code(found["code"], found["message"])


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
    pinned_before = world.pinned_lock.read_bytes() if world.pinned_lock else None
    listing_before = _listing(hub)
    world.env.clear_logs()
    world.env.audit_log.unlink(missing_ok=True)
    with pytest.raises(SecureHubError) as info:
        scenario(world, tmp_path, monkeypatch)
    assert info.value.code == code, f"{info.value.code}: {info.value}"
    (record,) = audit_records(world.env)  # exactly one audit line, naming the refusal
    assert record["code"] == code, record
    assert world.lock.read_bytes() == lock_before, "hub.lock changed"
    assert (world.pinned_lock.read_bytes() if world.pinned_lock else None) == pinned_before, "the pinned lock changed"
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
