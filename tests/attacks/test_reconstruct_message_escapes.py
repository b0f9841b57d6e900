"""Terminal escapes from the sandbox child's config reaching a reconstruction error (red team 4).

The result config is checked on the wire for its shape only: its strings -- ``export_error`` (the
child's own account of a failed ``torch.export``), ``mutated`` notes, class paths -- are quoted by the
strategies' refusal reasons. ``reconstruct()`` joined them into ``ReconstructRefused`` raw, so a hostile
child (or a result-cache entry, whose config passes the same checks) put an OSC title change, a screen
clear, colours and a bidi override into ``str(err)``, which an uncaught exception prints to the user's
terminal. Every message leaving ``reconstruct()`` is now folded by ``securehub._util.text.one_line``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import securehub
from securehub.errors import ReconstructRefused, SecureHubError
from securehub.pipeline.lock import lock_repos
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.wire.messages import parse_result_config
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, Snapshot, hub_env_context, publish, write_policy
from tests._servers import GitServer

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[1;32mAll checks passed\x1b[0m\u202etxt.exe\x9b31m\x85"
_BAD = ("\x1b", "\x07", "\u202e", "\x9b", "\x85", "\n")


def _node(**extra: Any) -> dict[str, Any]:
    node = {
        "class": "hubconf:Net", "origin": {"kind": "tree", "path": "hubconf.py", "resolves": True},
        "training": False, "reconstructible": False, "attrs": {}, "children": {},
    }  # fmt: skip
    node.update(extra)
    return node


def _config(root: dict[str, Any], **extra: Any) -> dict[str, Any]:
    config = {"format": "securehub-config/1", "root": root, "aliases": {}, **extra}
    return parse_result_config({"config": config})  # what the wire admits


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(_config(_node(), export_error=ESCAPES), id="export_error"),
        pytest.param(_config(_node(mutated=[f"attribute 'x' set after construction {ESCAPES}"])), id="mutated"),
        pytest.param(_config(_node(**{"class": "hubconf:Net" + ESCAPES})), id="class"),
    ],
)
def test_child_strings_in_reconstruction_errors_are_printable(config: dict[str, Any]) -> None:
    with pytest.raises(ReconstructRefused) as exc:
        reconstruct(config=config, state={}, export=None, strategies=["trusted", "export"],
                    trusted_modules=["torch.nn"], tree=None)  # fmt: skip
    text = str(exc.value)
    assert exc.value.code == "reconstruct-refused"
    assert not any(c in text for c in _BAD), ascii(text)
    assert not any(c in arg for arg in exc.value.args for c in _BAD)  # what a traceback prints


HUBCONF = """
import sys

import torch
from torch import nn

dependencies = ["torch"]
ESCAPES = @ESCAPES@


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        raise RuntimeError("no export for you")


def net():
    # Runs in the child: whatever torch.export says, the config's export_error carries the escapes.
    sys.modules["securehub.sandbox.child.runtime"]._describe_exc = lambda exc: ESCAPES
    return Net()
"""


@pytest.fixture(scope="module")
def git_world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[HubEnv]:
    with hub_env_context(tmp_path_factory.mktemp("message-escapes"), git_server) as env:
        yield env


@NEEDS_FULL_SANDBOX
def test_hostile_export_error_escapes_end_to_end(git_world: HubEnv, tmp_path: Path) -> None:
    spec = git_world.spec(publish(git_world, "export-error-escapes", {"hubconf.py": HUBCONF.replace(
        "@ESCAPES@", repr(ESCAPES))}))  # fmt: skip
    lock = tmp_path / "hub.lock"
    lock_repos([spec], policy="default", lock=lock)
    before = Snapshot.take(git_world.hub, lock)
    policy = write_policy(tmp_path / "policy.yaml", extends="default", lock={"mode": "optional"})
    with pytest.raises(SecureHubError) as exc:
        securehub.load(spec, "net", policy=policy, lock=lock, verbose=False, example_inputs=(torch.ones(2, 4),))
    assert exc.value.code == "reconstruct-refused", str(exc.value)
    assert "All checks passed" in str(exc.value)  # the child's text is still quoted, only made printable
    assert not any(c in str(exc.value) for c in _BAD), ascii(str(exc.value))
    before.assert_unchanged(git_world.hub, lock)
