"""Red team 14: the child -> parent channel, resource exhaustion and odd state, end to end.

A hostile hubconf (real git server, sandbox and torch) reaches its runtime's own objects: it writes raw
frames on the result channel, rewrites the config and the state the runtime sends, and asks for artifacts
by URLs of its choosing. Each attack fires only when ``MKL_NUM_THREADS`` is 7 (a time bomb: the same
entrypoints are honest when ``securehub lock -e`` pins them under ``strict``).

- **Found and fixed: artifact hosts that read as other hosts.** A repository-chosen URL such as
  ``https://w\\u0435ights.example.com/w.pth`` (a Cyrillic e), fullwidth letters or U+3002 for ``.`` passed
  the URL check (the repo-spec parser refuses such hosts; the artifact check did not): the HTTP client
  IDNA-maps it to some ASCII name and connects, and ``lock -e`` recorded the look-alike URL in hub.lock,
  where a reviewer reads it as the host it imitates. Such hosts, and percent-encoded ones, are now
  ``artifact-not-allowed`` before any name is resolved (write an IDN in its ``xn--`` form).
- **Fixed: state-key messages.** A tensor named ``""`` was refused as ``unexpected keys []`` (nothing
  shown) and a 64 KiB name filled the whole (length-capped) message; keys are now quoted when empty or
  space-padded and cut at 120 characters.
- **Refused correctly (regressions):** raw frames (unknown and parent-only types, a result's length prefix
  of 2**63, a frame dripped in 1-byte writes, a frame cut mid-way then a sleep or an exit, 100,000 levels of
  nesting, duplicate keys, a 100,000-digit integer, NaN, ``1e400``, a lone surrogate, invalid UTF-8, a
  100 MB config, extra header keys, an ``error`` followed by a ``result``, a request flood); hostile tensor
  names and shapes; configs with unknown keys, odd class paths, huge constructor sizes or a self-reference.
  Each has its SPEC code, nothing is cached, hub.lock is unchanged and the artifact server is not asked.
- **Must keep working:** modules shared by two parents and tied parameters load, share and save as the
  original model does.
"""

from __future__ import annotations

import io
import json
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import MIRRORED, NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = r"""
import gc, json, os, socket, struct, sys, time

import torch
from torch import nn

dependencies = ["torch"]


def _armed():
    return os.environ.get("MKL_NUM_THREADS") == "7"


def _honest():
    torch.manual_seed(0)
    return nn.Linear(2, 2)


def _channel():
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.family == socket.AF_UNIX and obj.fileno() >= 0:
            return obj
    raise RuntimeError("no channel found")


def _frame(ftype, meta, body=b""):
    header = json.dumps({"type": ftype, "meta": meta}).encode()
    return _prefixed(header, body)


def _prefixed(header, body=b""):
    return struct.pack(">QI", 4 + len(header) + len(body), len(header)) + header + body


NODE = {"class": "torch.nn.modules.linear:Linear",
        "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
        "training": False, "reconstructible": True, "args": [1, 1], "kwargs": {}, "children": {}, "attrs": {}}
RESULT = json.dumps({"type": "result", "meta": {"config": {"format": "securehub-config/1", "root": NODE,
                                                          "aliases": {}}}}).encode()


def _send_then(data, then="hang", drip=False):
    channel = _channel()
    if drip:
        for i in range(len(data)):
            channel.sendall(data[i:i + 1])
    else:
        channel.sendall(data)
    if then == "exit":
        os._exit(0)
    time.sleep(10000)


RAW = {
    "unknown_type": lambda: _frame("zzz", {}),
    "parent_only_type": lambda: _frame("fetched", {"path": "/etc/passwd", "sha256": "0" * 64}),
    "length_2_63": lambda: struct.pack(">QI", 2**63, len(RESULT)) + RESULT,
    "deep_json": lambda: _prefixed(b'{"type":"result","meta":{"config":' + b"[" * 100000 + b"]" * 100000 + b"}}"),
    "duplicate_keys": lambda: _prefixed(RESULT.replace(b'"aliases": {}', b'"aliases": {}, "aliases": {}')),
    "huge_integer": lambda: _prefixed(RESULT.replace(b"[1, 1]", b"[1, " + b"9" * 100000 + b"]")),
    "nan": lambda: _prefixed(RESULT.replace(b"[1, 1]", b"[1, NaN]")),
    "float_overflow": lambda: _prefixed(RESULT.replace(b"[1, 1]", b"[1, 1e400]")),
    "lone_surrogate": lambda: _prefixed(RESULT.replace(b'"attrs": {}', b'"attrs": {"x": "\\ud800"}')),
    "invalid_utf8": lambda: _prefixed(RESULT.replace(b'"attrs": {}', b'"attrs": {"x": "\xff\xfe"}')),
    "config_100mb": lambda: _prefixed(RESULT.replace(b'"attrs": {}', b'"attrs": {"x": "' + b"a" * (100 << 20) + b'"}')),
    "extra_header_key": lambda: _prefixed(RESULT[:-1] + b', "x": 1}'),
    "error_then_result": lambda: _frame("error", {"code": "entrypoint-error", "message": "boom"}) + _prefixed(RESULT),
    "empty_result_twice": lambda: _prefixed(RESULT) + _prefixed(RESULT),
    "cut": lambda: _prefixed(RESULT)[: len(RESULT) // 2],
}


def raw(name, then="hang", drip=False):
    if _armed():
        _send_then(RAW[name](), then, drip)
    return _honest()


def _edit_tensors(edit):
    runtime = sys.modules["securehub.sandbox.child.runtime"]
    honest = runtime.collect_tensors

    def forged(module):
        tensors, aliases = honest(module)
        edit(tensors, aliases)
        return tensors, aliases

    runtime.collect_tensors = forged


def state(name, shape=(1,), dtype="float32", alias=None):
    if _armed():
        value = torch.zeros(shape, dtype=getattr(torch, dtype))
        _edit_tensors(lambda t, a: a.__setitem__(name, "weight") if alias else t.__setitem__(name, value))
    return _honest()


def drop(name):
    if _armed():
        _edit_tensors(lambda t, a: t.pop(name))
    return _honest()


def config(path, value):
    if _armed():
        runtime = sys.modules["securehub.sandbox.child.runtime"]
        honest = runtime.describe

        def forged(module, tree=None):
            doc = honest(module, tree=tree)
            *parents, last = path
            target = doc
            for key in parents:
                target = target[key]
            target[last] = value
            return doc

        runtime.describe = forged
    return _honest()


def fetch(url, flood=0):
    if _armed():
        for i in range(flood):
            try:
                torch.hub.load_state_dict_from_url("file:///x%d.pth" % i, progress=False)
            except Exception:
                pass
        torch.hub.load_state_dict_from_url(url, progress=False)
    return _honest()


# zero-argument entrypoints that strict's hub.lock pins (honest at `lock -e`, armed at the load)
def strict_unknown_type():
    return raw("unknown_type")


def strict_length_2_63():
    return raw("length_2_63")


def strict_lone_surrogate():
    return raw("lone_surrogate")


def strict_extra_tensor():
    return state("x", [4])


def shared():
    torch.manual_seed(0)
    inner = nn.Linear(2, 2)
    return nn.ModuleDict({"p": nn.Sequential(inner), "q": nn.Sequential(inner, nn.ReLU())})


def tied():
    torch.manual_seed(0)
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    b.weight = a.weight
    return nn.Sequential(a, b)
"""

#: Look-alike hosts the hubconf names; in the test world each has a mirror to the artifact server, standing
#: in for the attacker's registered look-alike domain (so that, before the fix, the download succeeded).
LOOKALIKES = {
    "cyrillic-e": "https://w\u0435ights.example.com/",
    "fullwidth": "https://\uff57eights.example.com/",
    "ideographic-dot": "https://weights\u3002example.com/",
    "percent": "https://weights%2eexample.com/",
}
#: The same look-alike in its A-label (xn--) form: an ordinary ASCII host, mirrored like the others.
A_LABEL = "https://xn--wights-4ya.example.com/"


STRICT_ENTRYPOINTS = ["strict_unknown_type", "strict_length_2_63", "strict_lone_surrogate", "strict_extra_tensor"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str, Path]]:
    with hub_env_context(tmp_path_factory.mktemp("red-team-14"), git_server) as env:
        buf = io.BytesIO()
        torch.save({"weight": torch.ones(2, 2), "bias": torch.ones(2)}, buf)
        env.put("w.pth", buf.getvalue())
        mirrors = {MIRRORED: env.artifacts.base_url + "/"}
        mirrors.update({prefix: env.artifacts.base_url + "/" for prefix in (*LOOKALIKES.values(), A_LABEL)})
        mp = pytest.MonkeyPatch()
        mp.setenv("SECUREHUB_MIRRORS", json.dumps(mirrors))
        try:
            spec = env.spec(publish(env, "red-team-14", {"hubconf.py": HUBCONF}))
            lock = env.root / "strict.lock"
            lock_repos([spec], entrypoints=STRICT_ENTRYPOINTS, policy="strict", lock=lock)
            yield env, spec, lock
        finally:
            mp.undo()


def _results(hub: Path) -> list[str]:
    return sorted(str(p.relative_to(hub)) for p in (hub / "results").rglob("*")) if (hub / "results").exists() else []


def _refused(
    world: tuple[HubEnv, str, Path],
    monkeypatch: pytest.MonkeyPatch,
    entrypoint: str,
    *args: object,
    policy: str = "default",
    **kwargs: object,
) -> SecureHubError:
    """Load the armed ``entrypoint``; it must fail with a SecureHubError and leave nothing behind."""
    env, spec, lock = world
    lock_arg = lock if policy == "strict" else None
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    before, results = Snapshot.take(env.hub, lock), _results(env.hub)
    env.clear_logs()
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, entrypoint, *args, policy=policy, lock=lock_arg, verbose=False, **kwargs)
    before.assert_unchanged(env.hub, lock)
    assert _results(env.hub) == results, "a refused result was cached"
    assert env.artifacts.requests == [], "the artifact server was asked"
    str(info.value).encode()  # printable, encodable
    return info.value


# --------------------------------------------------------------------------- found: look-alike artifact hosts


@pytest.mark.parametrize("host", sorted(LOOKALIKES))
def test_artifact_url_with_a_look_alike_host_is_refused_before_any_connection(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    err = _refused(world, monkeypatch, "fetch", LOOKALIKES[host] + "w.pth")
    assert err.code == "artifact-not-allowed", str(err)
    assert "expected an ASCII host name" in str(err) and "xn--" in str(err), str(err)


@pytest.mark.parametrize("host", sorted(LOOKALIKES))
def test_lock_e_never_records_a_look_alike_artifact_url(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    env, spec, _ = world
    lock = env.root / f"lookalike-{host}.lock"
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    env.clear_logs()
    with pytest.raises(SecureHubError) as info:
        lock_repos([spec], entrypoints=["fetch"], args={"url": LOOKALIKES[host] + "w.pth"}, policy="strict",
                   lock=lock)  # fmt: skip
    assert info.value.code == "artifact-not-allowed", str(info.value)
    assert not lock.exists(), "lock -e wrote a hub.lock"
    assert env.artifacts.requests == []


def test_an_idn_in_its_xn_form_is_an_ordinary_host(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Control: the A-label spelling of the same host passes the URL check and downloads (through its mirror)."""
    env, spec, _ = world
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    model = securehub.load(spec, "fetch", A_LABEL + "w.pth", policy="default", verbose=False)
    assert type(model) is nn.Linear


# --------------------------------------------------------------------------- refused correctly: raw frames

RAW_CASES = [
    ("unknown_type", "sandbox-protocol", "unexpected 'zzz' frame"),
    ("parent_only_type", "sandbox-protocol", "unexpected 'fetched' frame"),
    ("length_2_63", "sandbox-protocol", "exceeds the cap"),
    ("deep_json", "sandbox-protocol", "nests deeper than 64 levels"),
    ("duplicate_keys", "sandbox-protocol", "repeats the key 'aliases'"),
    ("huge_integer", "sandbox-protocol", "not valid UTF-8 JSON within its bounds"),
    ("nan", "sandbox-protocol", "the constant NaN"),
    ("float_overflow", "sandbox-protocol", "no canonical JSON form"),
    ("lone_surrogate", "sandbox-protocol", "no canonical JSON form"),
    ("invalid_utf8", "sandbox-protocol", "invalid UTF-8"),
    ("config_100mb", "sandbox-protocol", "exceeds the cap of"),
    ("extra_header_key", "sandbox-protocol", "keys must be exactly 'type' and 'meta'"),
    ("error_then_result", "entrypoint-error", "boom"),
    ("empty_result_twice", "sandbox-protocol", "not a well-formed safetensors file"),
]


@pytest.mark.parametrize(("frame", "code", "says"), RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_raw_frames_written_by_hubconf_are_refused(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, frame: str, code: str, says: str
) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _refused(world, monkeypatch, "raw", frame)
    assert (err.code, says in str(err)) == (code, True), str(err)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    assert grown_mib < 64, f"the parent's peak memory grew by {grown_mib} MiB"


@pytest.mark.parametrize("frame", ["unknown_type", "length_2_63", "lone_surrogate"])
def test_raw_frames_under_strict_are_refused_with_the_same_code(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, frame: str
) -> None:
    err = _refused(world, monkeypatch, f"strict_{frame}", policy="strict")
    assert err.code == "sandbox-protocol", str(err)


def test_frame_dripped_a_byte_at_a_time_is_refused_on_its_type(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _refused(world, monkeypatch, "raw", "unknown_type", drip=True)
    assert err.code == "sandbox-protocol" and "unexpected 'zzz' frame" in str(err), str(err)


@pytest.mark.parametrize(
    ("then", "code", "says"),
    [("hang", "sandbox-timeout", "wall-clock limit of 6 s"), ("exit", "sandbox-protocol", "in the middle of a frame")],
)
def test_frame_cut_off_midway_ends_at_the_deadline_or_the_exit(
    world: tuple[HubEnv, str, Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    then: str,
    code: str,
    says: str,
) -> None:
    policy = write_policy(tmp_path / "short.yaml", extends="default", sandbox={"timeout_s": 6})
    start = time.monotonic()
    err = _refused(world, monkeypatch, "raw", "cut", then, policy=str(policy))
    assert time.monotonic() - start < 6 + 20, "the parent waited past the policy's deadline"
    assert err.code == code and says in str(err), str(err)


# --------------------------------------------------------------------------- refused correctly: the state

STATE_CASES = [
    # names the rebuilt Linear does not hold: paths, NUL, 64 KiB, module attributes and methods, NFC/NFD
    ("empty", ("",), "unexpected keys ['']"),
    ("dotdot", ("../../etc/passwd",), "unexpected keys [../../etc/passwd]"),
    ("slash", ("weight/x",), "unexpected keys [weight/x]"),
    ("nul", ("weight\0x",), "unexpected keys [weight\\x00x]"),
    ("long", ("w" * 65536,), "unexpected keys [" + "w" * 120 + "...]; the model was changed"),
    ("space-padded", (" weight",), "unexpected keys [' weight']"),
    ("forward", ("forward",), "unexpected keys [forward]"),
    ("dunder-class", ("__class__",), "unexpected keys [__class__]"),
    ("T_destination", ("T_destination",), "unexpected keys [T_destination]"),
    ("nfd", ("cafe\u0301",), "unexpected keys [cafe\u0301]"),
    ("zero-size", ("z", [0]), "unexpected keys [z]"),
    ("alias-forward", ("forward", [1], "float32", True), "unexpected keys [forward]"),
    ("nonpersistent", ("__nonpersistent__.forward",), "non-persistent buffers do not fit"),
    # the declared tensors with another shape or dtype
    ("zero-size-weight", ("weight", [0, 2]), "weight (model (2, 2) torch.float32, state (0, 2)"),
    ("shape", ("weight", [3, 2]), "weight (model (2, 2) torch.float32, state (3, 2)"),
    ("int64", ("weight", [2, 2], "int64"), "state (2, 2) torch.int64"),
    ("float8", ("weight", [2, 2], "float8_e4m3fn"), "state (2, 2) torch.float8_e4m3fn"),
    ("complex", ("weight", [2, 2], "complex64"), "state (2, 2) torch.complex64"),
    ("bool", ("weight", [2, 2], "bool"), "state (2, 2) torch.bool"),
]


@pytest.mark.parametrize(("args", "says"), [c[1:] for c in STATE_CASES], ids=[c[0] for c in STATE_CASES])
def test_hostile_state_is_refused_against_the_config(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, args: tuple[object, ...], says: str
) -> None:
    err = _refused(world, monkeypatch, "state", *args)
    assert err.code == "reconstruct-mismatch" and says in str(err), str(err)


def test_a_missing_tensor_is_refused(world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    err = _refused(world, monkeypatch, "drop", "bias")
    assert err.code == "reconstruct-mismatch" and "missing keys [bias]" in str(err), str(err)


def test_hostile_state_under_strict_is_an_output_mismatch(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _refused(world, monkeypatch, "strict_extra_tensor", policy="strict").code == "output-mismatch"


# --------------------------------------------------------------------------- refused correctly: the config

CONFIG_CASES = [
    ("unknown-key", (["extra"], 1), "sandbox-protocol", "unexpected ['extra']"),
    ("unknown-node-key", (["root", "extra"], 1), "sandbox-protocol", "config node <root> keys"),
    ("unknown-origin-key", (["root", "origin", "extra"], 1), "sandbox-protocol", "origin is malformed"),
    ("alias-path", (["root", "class"], "torch.nn:Linear"), "reconstruct-refused", "does not name that object"),
    ("double-dot", (["root", "class"], "torch.nn..modules.linear:Linear"), "reconstruct-refused", "not a dotted"),
    ("trailing-dot", (["root", "class"], "torch.nn.modules.linear.:Linear"), "reconstruct-refused", "not a dotted"),
    (
        "globals",
        (["root", "class"], "torch.nn.modules.linear:Linear.__init__.__globals__"),
        "reconstruct-refused",
        "not a dotted",
    ),
    ("fullwidth", (["root", "class"], "torch.nn.modules.linear:\uff2cinear"), "reconstruct-refused", "not a dotted"),
    ("builtins", (["root", "class"], "builtins:object"), "reconstruct-refused", "not in reconstruct.trusted_modules"),
    ("self-reference", (["root", "args"], [{"$module": ""}]), "reconstruct-refused", "'$module'"),
    ("linear-10e12", (["root", "args"], [10**12, 1]), "reconstruct-refused", "does not fit 32 bits"),
    # 4 PiB of float32 off meta: built on meta, then refused on the state's shapes
    ("linear-2e30", (["root", "args"], [2**30, 2**30]), "reconstruct-mismatch", "model (1073741824, 1073741824)"),
    ("linear-2e31", (["root", "args"], [2**31 - 1, 2**31 - 1]), "reconstruct-mismatch", "overflowed"),
]


@pytest.mark.parametrize(("args", "code", "says"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_hostile_config_is_refused_and_never_allocated(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, args: tuple[object, ...], code: str, says: str
) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    err = _refused(world, monkeypatch, "config", *args)
    assert err.code == code and says in str(err), str(err)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    assert grown_mib < 64, f"the parent's peak memory grew by {grown_mib} MiB (built off meta?)"


# --------------------------------------------------------------------------- refused correctly: the broker

BROKER_CASES = [
    ("userinfo", ("https://user:pw@weights.example.com/w.pth",), "artifact-not-allowed", "credentials"),
    ("file", ("file:///etc/passwd",), "artifact-not-allowed", "the scheme 'file'"),
    ("loopback", ("http://127.0.0.1:1/w.pth",), "artifact-not-allowed", "not a public address"),
    ("backslash", ("https://weights.example.com\\@127.0.0.1/w.pth",), "artifact-not-allowed", "credentials"),
    ("flood", ("file:///x.pth", 300), "sandbox-protocol", "more than 256 artifacts"),
]


@pytest.mark.parametrize(("args", "code", "says"), [c[1:] for c in BROKER_CASES], ids=[c[0] for c in BROKER_CASES])
def test_hostile_artifact_requests_are_refused(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch, args: tuple[object, ...], code: str, says: str
) -> None:
    err = _refused(world, monkeypatch, "fetch", *args)
    assert err.code == code and says in str(err), str(err)


# --------------------------------------------------------------------------- controls: real models share modules


def test_modules_shared_by_two_parents_and_tied_parameters_load_like_the_original(
    world: tuple[HubEnv, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, spec, _ = world
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    model = securehub.load(spec, "shared", policy="default", verbose=False)
    assert model.p[0] is model.q[0]
    torch.manual_seed(0)
    inner = nn.Linear(2, 2)
    original = nn.ModuleDict({"p": nn.Sequential(inner), "q": nn.Sequential(inner, nn.ReLU())})
    assert list(model.state_dict()) == list(original.state_dict())
    tied = securehub.load(spec, "tied", policy="default", verbose=False)
    assert tied[0].weight is tied[1].weight
    buf = io.BytesIO()
    torch.save(tied.state_dict(), buf)
    buf.seek(0)
    tied.load_state_dict(torch.load(buf, weights_only=True))
    assert tied[0].weight is tied[1].weight
