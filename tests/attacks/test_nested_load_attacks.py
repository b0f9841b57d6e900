"""Attacks: a hostile sandbox child abuses the nested torch.hub.load request (``nested_load``).

Each probe replaces the child runtime (spawn's ``probe_file``) and writes raw
frames. The parent must refuse malformed or over-reaching requests before
the nested callback sees them, never let the child choose the nested load's
trust settings, and keep nothing in ``out_dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from securehub.errors import NotLocked, SecureHubError
from securehub.sandbox.parent.session import NestedAnswer
from securehub.sandbox.wire import messages as m
from tests._sandbox_helpers import PROBE_CONFIG as CONFIG
from tests._sandbox_helpers import (  # *_fixture: pytest fixtures, registered by name
    PROBE_FRAMING,
    out_dir_fixture,  # noqa: F401
    refused_by_parent,
    tree_fixture,  # noqa: F401
    write_probe,
)

PRELUDE = (
    PROBE_FRAMING
    + """
def read_frame():
    (n,) = struct.unpack(">Q", recv_exact(8))
    (h,) = struct.unpack(">I", recv_exact(4))
    header = json.loads(recv_exact(h))
    recv_exact(n - 4 - h)
    return header["type"], header["meta"]

def nested(**overrides):
    meta = {"repo_or_dir": "acme/inner:v1", "model": "lin", "args": [], "kwargs": {},
            "source": "github", "force_reload": False}
    meta.update(overrides)
    return meta
"""
)


class Recorder:
    """A nested callback that records every request and refuses it as not locked."""

    def __init__(self) -> None:
        self.seen: list[m.NestedRequest] = []

    def __call__(self, request: m.NestedRequest, work: Path) -> NestedAnswer:
        self.seen.append(request)
        raise NotLocked(f"{request.repo_or_dir} is not in hub.lock")


def attack(
    tmp_path: Path, tree: Path, out_dir: Path, body: str, recorder: Recorder, *, op: str = "load", nested_depth: int = 0
) -> SecureHubError:
    return refused_by_parent(
        write_probe(tmp_path, PRELUDE, body),
        op,
        tree,
        out_dir,
        config=CONFIG,
        nested=recorder,
        nested_depth=nested_depth,
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": 123},
        {"repo_or_dir": ["acme/inner:v1"]},
        {"args": {"a": 1}},
        {"kwargs": [1, 2]},
        {"force_reload": "yes"},
        {"source": "hub"},
        {"model": "os:system"},
        {"kwargs": {"not an identifier": 1}},
    ],
    ids=[
        "model-int",
        "repo-list",
        "args-object",
        "kwargs-list",
        "force-reload-str",
        "source-unknown",
        "model-path",
        "kwarg-name",
    ],
)
def test_nested_request_with_wrong_types(tmp_path, tree, out_dir, overrides):
    recorder = Recorder()
    err = attack(
        tmp_path, tree, out_dir, f"read_frame(); frame('nested_load', nested(**{overrides!r})); wait_close()", recorder
    )
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


def test_nested_request_with_huge_args(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_frame()
        frame("nested_load", nested(args=["x" * (m_cap + 1)]))
        wait_close()
    """.replace("m_cap", str(m.MAX_NESTED_ARGS_BYTES)),
        recorder,
    )
    assert err.code == "sandbox-protocol"
    assert "cap" in err.message
    assert recorder.seen == []


def test_nested_request_with_too_many_items(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path, tree, out_dir, 'read_frame(); frame("nested_load", nested(args=[0] * 20000)); wait_close()', recorder
    )
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


@pytest.mark.parametrize("repo", ["acme/inner:v1\x1b[2J", "acme/inner:v1\nevil", " acme/inner:v1", "", "a\u202eb"])
def test_nested_request_with_control_characters(tmp_path, tree, out_dir, repo):
    recorder = Recorder()
    body = f"read_frame(); frame('nested_load', nested(repo_or_dir={repo!r})); wait_close()"
    err = attack(tmp_path, tree, out_dir, body, recorder)
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


@pytest.mark.parametrize("name", sorted(m.RESERVED_NESTED_KWARGS))
def test_child_tries_to_choose_the_nested_loads_trust_settings(tmp_path, tree, out_dir, name):
    """kwargs named like the load's own parameters (policy="permissive", lock=...) never reach the callback."""
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        f"read_frame(); frame('nested_load', nested(kwargs={{{name!r}: 'permissive'}})); wait_close()",
        recorder,
    )
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


def test_child_claims_its_own_nesting_depth(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        'read_frame(); frame("nested_load", nested(depth=0)); wait_close()',
        recorder,
        nested_depth=3,
    )
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


def test_too_deep_nesting_is_refused_before_the_callback(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_frame()
        frame("nested_load", nested())
        kind, meta = read_frame()
        assert kind == "error", kind
        frame("error", {"code": meta["code"], "message": meta["message"], "fetch_error": 0})
        wait_close()
    """,
        recorder,
        nested_depth=m.MAX_NESTED_DEPTH,
    )
    assert err.code == "entrypoint-error"
    assert f"at most {m.MAX_NESTED_DEPTH} levels" in err.message
    assert recorder.seen == []


def test_nested_load_during_list(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path, tree, out_dir, 'read_frame(); frame("nested_load", nested()); wait_close()', recorder, op="list"
    )
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


def test_nested_load_with_a_body(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path, tree, out_dir, 'read_frame(); frame("nested_load", nested(), b"x" * 100); wait_close()', recorder
    )
    assert err.code == "sandbox-protocol"
    assert recorder.seen == []


def test_child_relays_a_nested_refusal_with_another_code(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_frame()
        frame("nested_load", nested())
        read_frame()
        frame("error", {"code": "hash-mismatch", "message": "forged", "fetch_error": 0})
        wait_close()
    """,
        recorder,
    )
    assert err.code == "sandbox-protocol"
    assert len(recorder.seen) == 1


def test_relayed_nested_refusal_is_the_parents_own_error(tmp_path, tree, out_dir):
    """Control for the case above: relaying honestly gives the callback's exception, message and all."""
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_frame()
        frame("nested_load", nested())
        kind, meta = read_frame()
        frame("error", {"code": meta["code"], "message": "child's own words", "fetch_error": 0})
        wait_close()
    """,
        recorder,
    )
    assert err.code == "not-locked"
    assert err.message == "acme/inner:v1 is not in hub.lock"


def test_flood_of_nested_loads(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_frame()
        for _ in range(1000):
            frame("nested_load", nested())
            read_frame()
    """,
        recorder,
    )
    assert err.code == "sandbox-protocol"
    assert "nested loads" in err.message
    assert len(recorder.seen) == 64


def test_nested_load_of_a_local_directory(tmp_path, tree, out_dir):
    recorder = Recorder()
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_frame()
        frame("nested_load", nested(repo_or_dir="/root/.ssh", source="local"))
        kind, meta = read_frame()
        frame("error", {"code": meta["code"], "message": meta["message"], "fetch_error": 0})
        wait_close()
    """,
        recorder,
    )
    assert err.code == "repo-not-allowed"
    assert recorder.seen == []
