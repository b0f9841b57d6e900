"""Shared helpers for tests that run a real sandbox child (``run_in_sandbox`` / ``_convert``).

- ``CONFIG`` (120 s) for real children, ``PROBE_CONFIG`` (60 s) for hostile probe children.
- ``no_fetch``: a broker that fails the test on any fetch request.
- ``PROBE_FRAMING``: probe-side source (``import json, struct`` and ``raw``, ``frame``,
  ``recv_exact``, ``wait_close`` over ``channel``) that hostile probes start with.
- ``write_probe`` / ``refused_by_parent``: write a hostile probe and assert the parent refused it
  and kept nothing in ``out_dir``.
- ``expect_refusal``: assert a call fails with an exact code and leaves ``out_dir`` empty.
- Fixtures ``tree`` (a repo with a trivial hubconf ``m``), ``out_dir`` (an empty dir) and
  ``make_repo`` (writes numbered repos from hubconf source). pytest registers each under its
  ``name=``, so a test module makes them available by importing the ``*_fixture`` function.
- Fixture ``launch_mode``: runs a test with fresh-interpreter children and with children forked
  from the fork server (``securehub/sandbox/parent/forkserver.py``); a module that imports
  ``launch_mode_fixture`` and marks itself ``pytest.mark.usefixtures("launch_mode")`` runs every
  test both ways.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securehub.errors import SecureHubError
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent import forkserver
from securehub.sandbox.parent.session import run_in_sandbox
from securehub.sandbox.wire import messages as m

CONFIG = SandboxConfig(timeout_s=120)
PROBE_CONFIG = SandboxConfig(timeout_s=60)

PROBE_FRAMING = """
import json, struct

def raw(data):
    channel.sendall(data)

def frame(ftype, meta, body=b""):
    header = json.dumps({"type": ftype, "meta": meta}).encode()
    raw(struct.pack(">QI", 4 + len(header) + len(body), len(header)) + header + body)

def recv_exact(n):
    buf = b""
    while len(buf) < n:
        chunk = channel.recv(n - len(buf))
        if not chunk:
            raise SystemExit(0)
        buf += chunk
    return buf

def wait_close():
    while channel.recv(65536):
        pass
"""


#: A probe that answers the call with a hand-written result: ``read_call`` skips the call frame, ``NODE`` is
#: one honest Linear(1, 1) node and ``CONFIG`` a result config around it, to be edited into hostile ones.
RESULT_PROBE_PRELUDE = (
    PROBE_FRAMING
    + """
def read_call():
    (n,) = struct.unpack(">Q", recv_exact(8))
    recv_exact(n)

NODE = {"class": "torch.nn.modules.linear:Linear",
        "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
        "training": False, "reconstructible": True, "args": [1, 1], "kwargs": {},
        "children": {}, "attrs": {}}
CONFIG = {"format": "securehub-config/1", "root": NODE, "aliases": {}}
"""
)


def no_fetch(request: m.FetchRequest) -> Path:
    raise AssertionError(f"unexpected fetch {request}")


def write_probe(tmp_path: Path, prelude: str, body: str) -> Path:
    """Write ``prelude`` + dedented ``body`` as ``tmp_path/probe.py`` (spawn's ``probe_file``)."""
    probe = tmp_path / "probe.py"
    probe.write_text(prelude + textwrap.dedent(body))
    return probe


def refused_by_parent(probe: Path, op: str, tree: Path, out_dir: Path, **kw: object) -> SecureHubError:
    """Run ``probe`` as the child of ``op`` on entrypoint ``m``; the parent must raise and keep nothing."""
    with pytest.raises(SecureHubError) as info:
        run_in_sandbox(
            op,
            tree,
            None if op == "list" else "m",
            [],
            {},  # type: ignore[arg-type]
            broker=no_fetch,
            out_dir=out_dir,
            probe_file=probe,
            **kw,
        )  # type: ignore[arg-type]
    assert list(out_dir.iterdir()) == [], "the parent kept output from a hostile child"
    return info.value


def expect_refusal(code: str, out_dir: Path, call: Callable[[], object]) -> SecureHubError:
    """``call()`` must raise a SecureHubError with ``code`` and leave ``out_dir`` empty."""
    with pytest.raises(SecureHubError) as info:
        call()
    assert info.value.code == code, info.value.message
    assert list(out_dir.iterdir()) == [], "nothing may be left in out_dir after a failure"
    return info.value


@pytest.fixture(name="tree")
def tree_fixture(tmp_path: Path) -> Path:
    d = tmp_path / "repo"
    d.mkdir()
    (d / "hubconf.py").write_text("def m():\n    pass\n")
    return d


@pytest.fixture(name="out_dir")
def out_dir_fixture(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture(name="make_repo")
def make_repo_fixture(tmp_path: Path) -> Callable[[str], Path]:
    counter = [0]

    def make(source: str) -> Path:
        counter[0] += 1
        tree = tmp_path / f"repo{counter[0]}"
        tree.mkdir()
        (tree / "hubconf.py").write_text(textwrap.dedent(source))
        return tree

    return make


@pytest.fixture(name="launch_mode", params=["fresh", "forked"])
def launch_mode_fixture(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run a test once with fresh-interpreter children and once with children of the fork server.

    After the test, at least one launch must have taken the mode asked for
    (a test that launched nothing is not affected).
    """
    mode: str = request.param
    taken: list[bool] = []
    real = forkserver.server_for_launch

    def spy() -> forkserver.ForkServer | None:
        server = real()
        taken.append(server is not None)
        return server

    if mode == "fresh":
        monkeypatch.setenv("SECUREHUB_FORK_SERVER", "0")
    else:
        monkeypatch.delenv("SECUREHUB_FORK_SERVER", raising=False)
        monkeypatch.setattr(forkserver, "_launches", max(forkserver._launches, 1))
    monkeypatch.setattr(forkserver, "server_for_launch", spy)
    yield mode
    if taken:
        assert (mode == "forked") in taken, f"no launch of this test took the {mode} path: {taken}"
