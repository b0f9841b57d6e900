"""Attacks: a hostile sandbox child sends malformed or lying frames to the parent.

Each probe replaces the child runtime (spawn's ``probe_file``) and writes raw
bytes on the channel. Every case asserts the exact error code and that the
parent kept nothing from the child (``out_dir`` stays empty).
"""

from __future__ import annotations

import resource
import textwrap
from pathlib import Path

import pytest

from securehub.errors import SecureHubError
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.session import run_in_sandbox
from tests._sandbox_helpers import PROBE_CONFIG as CONFIG
from tests._sandbox_helpers import (  # *_fixture: pytest fixtures, registered by name
    RESULT_PROBE_PRELUDE,
    out_dir_fixture,  # noqa: F401
    refused_by_parent,
    tree_fixture,  # noqa: F401
    write_probe,
)
from tests._sandbox_helpers import no_fetch as _no_fetch

PRELUDE = RESULT_PROBE_PRELUDE


def attack(
    tmp_path: Path, tree: Path, out_dir: Path, body: str, *, op: str = "load", config: SandboxConfig = CONFIG
) -> SecureHubError:
    return refused_by_parent(write_probe(tmp_path, PRELUDE, body), op, tree, out_dir, config=config)


def test_frame_length_shorter_than_header_field(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'read_call(); raw(struct.pack(">Q", 2)); wait_close()')
    assert err.code == "sandbox-protocol"


def test_header_length_beyond_cap(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'read_call(); raw(struct.pack(">QI", 4 + 2**31, 2**31)); wait_close()')
    assert err.code == "sandbox-protocol"


def test_huge_declared_length_then_truncated(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        header = json.dumps({"type": "result", "meta": {"config": CONFIG}}).encode()
        raw(struct.pack(">QI", 2**62, len(header)) + header + b"x" * 100)
    """,
    )
    assert err.code == "sandbox-protocol"


def test_truncated_frame_then_exit(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'read_call(); raw(struct.pack(">QI", 100, 50) + b"{\\"ty")')
    assert err.code == "sandbox-protocol"


def test_header_not_json(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'read_call(); raw(struct.pack(">QI", 4 + 5, 5) + b"\\xff{{[x"); wait_close()')
    assert err.code == "sandbox-protocol"


def test_deep_json_nesting(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        deep = {}
        for _ in range(5000):
            deep = {"a": deep}
        header = ('{"type":"result","meta":{"config":' + "[" * 100000 + "]" * 100000 + "}}").encode()
        raw(struct.pack(">QI", 4 + len(header), len(header)) + header)
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_result_with_wrong_types(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'read_call(); frame("result", {"config": "os:system"}); wait_close()')
    assert err.code == "sandbox-protocol"


def test_config_node_with_bad_fields(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        bad = dict(NODE, training="yes", children={"a.b": NODE})
        frame("result", {"config": dict(CONFIG, root=bad)}, b"")
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_unknown_frame_type(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'read_call(); frame("bogus", {}); wait_close()')
    assert err.code == "sandbox-protocol"


def test_result_before_call(tmp_path, tree, out_dir):
    err = attack(tmp_path, tree, out_dir, 'frame("result", {"config": CONFIG}, b""); wait_close()', op="list")
    assert err.code == "sandbox-protocol"


def test_safetensors_with_bad_header(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        header = b'{"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}}'
        frame("result", {"config": CONFIG}, struct.pack("<Q", len(header)) + header + b"\\0" * 16)
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"
    assert "safetensors" in err.message


def test_alias_to_missing_tensor(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        header = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
        body = struct.pack("<Q", len(header)) + header + b"\\0" * 4
        frame("result", {"config": dict(CONFIG, aliases={"x": "nope"})}, body)
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_result_declaring_gigabytes_then_exiting_costs_the_parent_only_what_was_sent(tmp_path, tree, out_dir):
    # The parent receives the state straight into tensor memory (issue 11). A child that declares a
    # 6 GiB tensor (within the default 16 GiB output budget) and sends 4 MiB of it must not make the
    # parent commit 6 GiB of memory before the body arrives; the frame is then sandbox-protocol.
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, a high-water mark
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        size = 6 << 30
        header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
        body_head = struct.pack("<Q", len(header)) + header
        meta = json.dumps({"type": "result", "meta": {"config": CONFIG}}).encode()
        raw(struct.pack(">QI", 4 + len(meta) + len(body_head) + size, len(meta)) + meta + body_head)
        raw(b"\\1" * (4 << 20))
    """,
        config=SandboxConfig(timeout_s=60, max_output_mb=16384),
    )
    assert err.code == "sandbox-protocol"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < (1 << 20), f"the parent's peak RSS grew by {grown} KiB for 4 MiB sent"


def test_result_cut_off_inside_a_tensor_keeps_nothing(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        header = b'{"w": {"dtype": "F32", "shape": [1048576], "data_offsets": [0, 4194304]}}'
        body = struct.pack("<Q", len(header)) + header + b"\\0" * 4194304
        meta = json.dumps({"type": "result", "meta": {"config": CONFIG}}).encode()
        raw(struct.pack(">QI", 4 + len(meta) + len(body), len(meta)) + meta + body[: len(body) // 2])
    """,
    )
    assert err.code == "sandbox-protocol"


def test_early_exit_in_hubconf(tmp_path, tree, out_dir):
    (tree / "hubconf.py").write_text("import os\nos._exit(0)\n")
    with pytest.raises(SecureHubError) as info:
        run_in_sandbox("load", tree, "m", [], {}, config=CONFIG, broker=_no_fetch, out_dir=out_dir)
    assert info.value.code == "sandbox-protocol"
    assert list(out_dir.iterdir()) == []


def test_output_over_max_output_mb(tmp_path, tree, out_dir):
    cfg = SandboxConfig(timeout_s=60, max_output_mb=1)
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        frame("result", {"config": CONFIG}, b"\\0" * (3 * 1024 * 1024))
        wait_close()
    """,
        config=cfg,
    )
    assert err.code == "sandbox-resource"


def test_child_forges_a_parent_only_error_code(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        'read_call(); frame("error", {"code": "hash-mismatch", "message": "trust me"}); wait_close()',
    )
    assert err.code == "sandbox-protocol"


def test_child_relays_a_fetch_error_never_sent(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        frame("error", {"code": "not-locked", "message": "x", "fetch_error": 0})
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_error_message_escape_injection(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        r"""
        read_call()
        frame("error", {"code": "entrypoint-error", "message": "ok\x1b]0;pwned\x07\x1b[2J\rdone\u202e"})
        wait_close()
    """,
    )
    assert err.code == "entrypoint-error"
    # every escape shown as inert text (the user sees what was tried); \r folded into a space
    assert err.message == "ok\\x1b]0;pwned\\x07\\x1b[2J done\\u202e"


def test_error_message_invisible_character_injection(tmp_path, tree, out_dir):
    # Zero-width, BOM, line-separator characters and a DECSC escape ("ESC 7") used to pass the
    # sandbox's own sanitiser (it knew only bidi controls and ESC Fe sequences): a child could hide
    # or split words of the error a user reads. The one sanitiser (_util.text) now shows them all as
    # inert escapes (red team 11: they were removed, which hid that anything was there).
    err = attack(
        tmp_path,
        tree,
        out_dir,
        r"""
        read_call()
        frame("error", {"code": "entrypoint-error",
                        "message": "ok\u200bx\ufeff\u2067rm -rf\u2069\u2028\x1b7tail"})
        wait_close()
    """,
    )
    assert err.code == "entrypoint-error"
    assert err.message == "ok\\u200bx\\ufeff\\u2067rm -rf\\u2069 \\x1b7tail"


def test_names_that_are_not_identifiers(tmp_path, tree, out_dir):
    err = attack(
        tmp_path, tree, out_dir, 'read_call(); frame("names", {"names": ["a\\x1b[31m"]}); wait_close()', op="list"
    )
    assert err.code == "sandbox-protocol"


def test_fetch_request_during_list(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        frame("fetch", {"url": "https://x.invalid/a", "kind": "download", "file_name": None,
                        "hash_prefix": None, "check_hash": False})
        wait_close()
    """,
        op="list",
    )
    assert err.code == "sandbox-protocol"


def test_child_sleeps_past_the_deadline(tmp_path, tree, out_dir):
    err = attack(
        tmp_path, tree, out_dir, "import time\nread_call()\ntime.sleep(3600)\n", config=SandboxConfig(timeout_s=2)
    )
    assert err.code == "sandbox-timeout"


def test_export_frame_naming_missing_tensors(tmp_path, tree, out_dir):
    err = attack(
        tmp_path,
        tree,
        out_dir,
        """
        read_call()
        frame("export", {"format": "securehub-export/1", "state": {"w": "w"}, "constants": {},
                         "parameters": ["w"]}, b"{}")
        header = b'{"v": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
        frame("result", {"config": CONFIG}, struct.pack("<Q", len(header)) + header + b"\\0" * 4)
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_control_wellformed_probe_result_is_accepted(tmp_path, tree, out_dir):
    """Control for the cases above: the same probe machinery with valid frames succeeds."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        PRELUDE
        + textwrap.dedent("""
        read_call()
        header = b'{"weight": {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}}'
        frame("result", {"config": CONFIG}, struct.pack("<Q", len(header)) + header + b"\\0" * 4)
        wait_close()
    """)
    )
    res = run_in_sandbox("load", tree, "m", [], {}, config=CONFIG, broker=_no_fetch, out_dir=out_dir, probe_file=probe)
    assert res.state_path == out_dir / "state.safetensors"
    assert res.config["root"]["class"] == "torch.nn.modules.linear:Linear"
