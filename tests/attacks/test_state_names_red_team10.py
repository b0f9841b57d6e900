"""Red team 10: state tensor names the parent's digest could not encode, and tensors nothing pins.

- A tensor named by a JSON ``"\\ud800"`` escape (a lone surrogate) passed the strict safetensors checker;
  the state digest's canonical lines (computed as the state arrives) then raised ``UnicodeEncodeError``
  in the parent, not a ``SecureHubError``. The checker now refuses names and ``__metadata__`` strings
  that are not Unicode text: ``sandbox-protocol``.
- A tensor under the export prefixes (``__export_state__.``, ``__export_constant__.``) in a state without
  an exported program was pinned by nothing (the output pin's state digest leaves those names to the
  program digest, and there is none) and read by nothing, yet stored and served under ``strict``. Such a
  tensor (and one no program maps) is now ``sandbox-protocol``.

Both run end to end (a hostile hubconf through the real git server, sandbox and torch) under ``default``
and, as time bombs past an honest pinned output, ``strict``; and as a raw probe child against the session,
with the header forms that were already refused as regressions.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from torch import nn

import securehub
from securehub.errors import SecureHubError
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish
from tests._sandbox_helpers import (  # *_fixture: pytest fixtures, registered by name
    PROBE_CONFIG,
    RESULT_PROBE_PRELUDE,
    out_dir_fixture,  # noqa: F401
    refused_by_parent,
    tree_fixture,  # noqa: F401
    write_probe,
)
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

# --------------------------------------------------------------------------- a raw probe child

_SEND = """
read_call()
hdr = HEADER
state = struct.pack("<Q", len(hdr)) + hdr + b"\\0" * DATA
frame("result", {"config": CONFIG}, state)
wait_close()
"""

_W = (
    '"weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}, '
    '"bias": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}'
)


def _hdr(extra: str, dtype: str = "F32", shape: str = "[1]", offsets: str = "[8, 12]") -> str:
    """The honest Linear(1, 1) header plus one tensor named ``extra`` (a JSON string body, escapes kept)."""
    return "{" + _W + f', "{extra}": {{"dtype": "{dtype}", "shape": {shape}, "data_offsets": {offsets}}}' + "}"


@pytest.mark.parametrize(
    ("header", "data", "says"),
    [
        # new refusals (UnicodeEncodeError / stored unpinned before red team 10)
        (_hdr("\\\\ud800"), 12, "surrogate"),
        ('{"__metadata__": {"k": "\\\\udfff"}, ' + _W + "}", 8, "surrogate"),
        (_hdr("__export_state__.x"), 12, "export prefixes"),
        (_hdr("__export_constant__.c", "U8", "[0]", "[8, 8]"), 8, "export prefixes"),
        # refused already (regressions): a name twice after unescaping, overlapping or aliased bytes,
        # a dtype whose element size disagrees with the span, a shape whose product overflows
        (_hdr("\\\\u0062ias"), 12, "repeats"),
        (_hdr("x", offsets="[4, 8]"), 8, "overlaps"),
        (_hdr("x", "F64"), 12, "data_offsets span"),
        (_hdr("x", "U8", "[4294967296, 4294967296]", "[8, 8]"), 8, "overflows"),
        (_hdr("x", "U8", "[0, 9223372036854775807, 2]", "[8, 8]"), 8, "2**63"),
    ],
)
def test_hostile_child_state_header_is_sandbox_protocol(
    tmp_path: Path, tree: Path, out_dir: Path, header: str, data: int, says: str
) -> None:
    body = _SEND.replace("HEADER", f"b'{header}'").replace("DATA", str(data))
    err = refused_by_parent(write_probe(tmp_path, RESULT_PROBE_PRELUDE, body), "load", tree, out_dir,
                            config=PROBE_CONFIG)  # fmt: skip
    assert err.code == "sandbox-protocol", str(err)
    assert says in str(err), str(err)
    str(err).encode()


# --------------------------------------------------------------------------- end to end: a hostile hubconf

HUBCONF = """
import os

import torch
from torch import nn

dependencies = ["torch"]


def _add(name, value):
    import sys

    runtime = sys.modules["securehub.sandbox.child.runtime"]
    honest = runtime.collect_tensors

    def forged(module):
        tensors, aliases = honest(module)
        tensors[name] = value
        return tensors, aliases

    runtime.collect_tensors = forged


def _honest():
    torch.manual_seed(0)
    return nn.Linear(2, 2)


# Time bombs (strict pins outputs; hub.lock recorded the honest run): they forge once MKL_NUM_THREADS is 7.
def surrogate_name():
    if os.environ.get("MKL_NUM_THREADS") == "7":
        _add("\\ud800", torch.ones(1))
    return _honest()


def stray_export_tensor():
    if os.environ.get("MKL_NUM_THREADS") == "7":
        _add("__export_state__.smuggled", torch.full((64,), 6.5))
    return _honest()
"""

_ENTRYPOINTS = ["surrogate_name", "stray_export_tensor"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("state-names"), git_server) as env:
        spec = env.spec(publish(env, "state-names", {"hubconf.py": HUBCONF}))
        lock_repos([spec], entrypoints=_ENTRYPOINTS, policy="strict", lock=env.root / "strict.lock")
        yield env, spec


def _results(hub: Path) -> list[str]:
    return sorted(str(p.relative_to(hub)) for p in (hub / "results").rglob("*")) if (hub / "results").exists() else []


@pytest.mark.parametrize("policy", ["default", "strict"])
@pytest.mark.parametrize(("entrypoint", "says"), [("surrogate_name", "surrogate"),
                                                  ("stray_export_tensor", "export prefixes")])  # fmt: skip
def test_hostile_hubconf_state_names_are_refused_end_to_end(
    hub: tuple[HubEnv, str], monkeypatch: pytest.MonkeyPatch, policy: str, entrypoint: str, says: str
) -> None:
    env, spec = hub
    lock = env.root / "strict.lock" if policy == "strict" else None
    monkeypatch.setenv("MKL_NUM_THREADS", "7")
    before, results = Snapshot.take(env.hub, lock), _results(env.hub)
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, entrypoint, policy=policy, lock=lock, verbose=False)
    assert exc.value.code == "sandbox-protocol", str(exc.value)
    assert says in str(exc.value), str(exc.value)
    before.assert_unchanged(env.hub, lock)
    assert _results(env.hub) == results, "a refused result was cached"


@pytest.mark.parametrize("policy", ["default", "strict"])
def test_the_same_entrypoints_load_when_honest_control(
    hub: tuple[HubEnv, str], monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    env, spec = hub
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    lock = env.root / "strict.lock" if policy == "strict" else None
    for entrypoint in _ENTRYPOINTS:
        model = securehub.load(spec, entrypoint, policy=policy, lock=lock, verbose=False)
        assert type(model) is nn.Linear
