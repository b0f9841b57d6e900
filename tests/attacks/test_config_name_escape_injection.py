"""Terminal escapes in a config's module names reaching a ``sandbox-protocol`` error (red team 6).

The wire check of the child's result config (``parse_result_config``) admitted any child name that is
non-empty and has no ``.``, and quoted the path built from those names raw in every message about that
subtree (``config node <path> must be an object``, ``... keys [...]``). A hostile child that named a
child module ``"\\x1b]0;owned\\x07\\x1b[2J..."`` and broke one field below it got an OSC title change, a
screen clear, colours and a bidi override into ``str(err)`` of the ``SandboxProtocol`` that
``securehub.load`` raises -- what an uncaught exception prints to the user's terminal. (The child's own
``error`` frames were already sanitised, and red team 4 folded reconstruction errors; this path went
around both.) Child names must now be printable (``str.isprintable``: no C0/C1 control, no
format/bidi, no line separator), and the refusal quotes the name sanitised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from securehub.errors import SandboxProtocol
from securehub.sandbox.wire.messages import parse_result_config
from tests._sandbox_helpers import (  # *_fixture: pytest fixtures, registered by name
    PROBE_CONFIG,
    RESULT_PROBE_PRELUDE,
    out_dir_fixture,  # noqa: F401
    refused_by_parent,
    tree_fixture,  # noqa: F401
    write_probe,
)

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[1;32mAll checks passed\x1b[0m\u202etxt_exe\x9b31m\x85\u2028"
_BAD = ("\x1b", "\x07", "\u202e", "\x9b", "\x85", "\u2028", "\n")


def _node(**extra: Any) -> dict[str, Any]:
    node = {
        "class": "torch.nn.modules.linear:Linear",
        "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
        "training": False, "reconstructible": True, "args": [1, 1], "kwargs": {}, "children": {}, "attrs": {},
    }  # fmt: skip
    node.update(extra)
    return node


def _config(root: dict[str, Any]) -> dict[str, Any]:
    return {"config": {"format": "securehub-config/1", "root": root, "aliases": {}}}


@pytest.mark.parametrize(
    "below",
    [
        pytest.param({"training": "yes"}, id="bad-field-below"),
        pytest.param({"children": {"x": "not a node"}}, id="bad-grandchild"),
        pytest.param({}, id="well-formed-below"),
    ],
)
def test_escape_sequence_in_a_child_name_never_reaches_the_message(below: dict[str, Any]) -> None:
    with pytest.raises(SandboxProtocol) as exc:
        parse_result_config(_config(_node(children={f"layer{ESCAPES}": _node(**below)})))
    text = str(exc.value)
    assert exc.value.code == "sandbox-protocol"
    assert not any(c in text for c in _BAD), ascii(text)
    assert "printable" in text


@pytest.mark.parametrize("name", ["a\tb", "zero\u200bwidth", "bom\ufeff", "nul\x00", "del\x7f", "lsep\u2028"])
def test_invisible_characters_in_a_child_name_are_refused(name: str) -> None:
    with pytest.raises(SandboxProtocol, match="printable"):
        parse_result_config(_config(_node(children={name: _node()})))


@pytest.mark.parametrize("name", ["0", "res-1", "conv 3x3", "bloc_ü", "层1"])
def test_printable_module_names_still_pass(name: str) -> None:
    """ModuleDict keys need not be identifiers; honest names keep loading."""
    parse_result_config(_config(_node(children={name: _node()})))


PRELUDE = RESULT_PROBE_PRELUDE


def test_hostile_child_names_a_module_with_escape_sequences(tmp_path: Path, tree: Path, out_dir: Path) -> None:
    """Through the real session: the parent's error is sandbox-protocol, printable, and nothing is kept."""
    body = r"""
        read_call()
        evil = "layer\x1b]0;owned\x07\x1b[2J\x1b[1;32mAll checks passed\x1b[0m\u202etxt_exe\x9b31m\x85"
        root = dict(NODE, children={evil: dict(NODE, training="yes")})
        frame("result", {"config": dict(CONFIG, root=root)}, b"")
        wait_close()
    """
    err = refused_by_parent(write_probe(tmp_path, PRELUDE, body), "load", tree, out_dir, config=PROBE_CONFIG)
    assert err.code == "sandbox-protocol", str(err)
    assert not any(c in str(err) for c in _BAD), ascii(str(err))
