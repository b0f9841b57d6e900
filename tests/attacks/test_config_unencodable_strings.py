"""A result config that JSON-decodes but cannot be encoded again (red team 8).

A JSON ``"\\ud800"`` escape decodes to a lone surrogate and ``1e999`` to ``inf``; the strict reader
refuses the ``NaN``/``Infinity`` literals and duplicate keys, but admitted both. The session handed
such a config on, and the load's first use of it -- the canonical UTF-8 JSON digest the result
cache and output pins need (``state_digest.config_sha256``) -- raised ``UnicodeEncodeError`` or
``ValueError``, not a ``SecureHubError``. ``parse_result_config`` now requires the config to have a
canonical JSON form: ``sandbox-protocol`` at the wire, through the real session.
"""

from __future__ import annotations

from pathlib import Path

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

_NODE = {
    "class": "torch.nn.modules.linear:Linear",
    "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
    "training": False, "reconstructible": True, "args": [1, 1], "kwargs": {}, "children": {}, "attrs": {},
}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [("reason", "\ud800"), ("attrs", {"note": "x\udfff"}), ("kwargs", {"eps": float("inf")})],
)
def test_unencodable_config_is_refused_by_the_wire_check(field: str, value: object) -> None:
    root = dict(_NODE, **{field: value})
    with pytest.raises(SandboxProtocol) as exc:
        parse_result_config({"config": {"format": "securehub-config/1", "root": root, "aliases": {}}})
    assert exc.value.code == "sandbox-protocol"
    str(exc.value).encode()


@pytest.mark.parametrize(
    ("edit", "raw"),
    [
        ('root = dict(NODE, reason="\\ud800")', None),  # json.dumps escapes it as \\ud800
        ('root = dict(NODE, kwargs={"bias": "@INF@"})', b"1e999"),  # decodes to inf
    ],
)
def test_hostile_child_sends_an_unencodable_config(
    tmp_path: Path, tree: Path, out_dir: Path, edit: str, raw: bytes | None
) -> None:
    send = (
        'frame("result", {"config": dict(CONFIG, root=root)}, b"")'
        if raw is None
        else f"""header = json.dumps({{"type": "result", "meta": {{"config": dict(CONFIG, root=root)}}}}).encode()
        header = header.replace(b'"@INF@"', {raw!r})
        raw(struct.pack(">QI", 4 + len(header), len(header)) + header)"""
    )
    body = f"""
        read_call()
        {edit}
        {send}
        wait_close()
    """
    err = refused_by_parent(
        write_probe(tmp_path, RESULT_PROBE_PRELUDE, body), "load", tree, out_dir, config=PROBE_CONFIG
    )
    assert err.code == "sandbox-protocol", str(err)
    assert "canonical JSON" in str(err), str(err)
    str(err).encode()


def test_hostile_child_error_message_with_a_lone_surrogate_stays_printable(
    tmp_path: Path, tree: Path, out_dir: Path
) -> None:
    """An error frame's message is shown to the user: it must encode (it raised UnicodeEncodeError on print)."""
    body = 'read_call(); frame("error", {"code": "entrypoint-error", "message": "boom \\ud800 here"}); wait_close()'
    probe = write_probe(tmp_path, RESULT_PROBE_PRELUDE, body)
    err = refused_by_parent(probe, "load", tree, out_dir, config=PROBE_CONFIG)
    assert err.code == "entrypoint-error", str(err)
    assert "boom" in str(err)
    str(err).encode()
