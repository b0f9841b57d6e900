"""Parsing what the sandbox child sends (messages): schemas, allowed codes, sanitising."""

from __future__ import annotations

import pytest

from securehub.errors import EntrypointError, HashMismatch, SandboxProtocol
from securehub.sandbox.wire import messages as m

NODE = {
    "class": "torch.nn.modules.linear:Linear",
    "origin": {"kind": "site", "path": "torch/nn/modules/linear.py", "resolves": True},
    "training": False,
    "reconstructible": True,
    "args": [1, 1],
    "kwargs": {},
    "children": {},
    "attrs": {},
}


def test_sanitize_shows_escapes_controls_and_bidi_as_inert_text():
    assert m.sanitize_text("a\x1b[31mb\x1b[0m\x07c\u202ed\te") == "a\\x1b[31mb\\x1b[0m\\x07c\\u202ed e"
    assert m.sanitize_text("x\x1b]8;;http://evil\x1b\\y") == "x\\x1b]8;;http://evil\\x1b\\y"
    assert m.sanitize_text("l1\nl2\x1b[2K", keep_newlines=True) == "l1\nl2\\x1b[2K"
    assert len(m.sanitize_text("z" * 10_000)) == m.MAX_MESSAGE_CHARS
    assert m.sanitize_text("z" * 10_000).endswith("[truncated]")


def test_parse_error_allows_child_codes_only():
    err = m.parse_error({"code": "entrypoint-error", "message": "boom\x1b[1m"}, {})
    assert isinstance(err, EntrypointError) and err.message == "boom\\x1b[1m"
    assert m.parse_error({"code": "hash-mismatch", "message": "x"}, {}).code == "sandbox-protocol"
    assert m.parse_error({"code": "made-up", "message": "x"}, {}).code == "sandbox-protocol"
    with pytest.raises(SandboxProtocol):
        m.parse_error({"code": "entrypoint-error"}, {})
    with pytest.raises(SandboxProtocol):
        m.parse_error({"code": "entrypoint-error", "message": "x", "extra": 1}, {})


def test_parse_error_relays_only_what_the_parent_sent():
    sent = HashMismatch("original trusted message")
    assert m.parse_error({"code": "hash-mismatch", "message": "lies", "fetch_error": 0}, {0: sent}) is sent
    with pytest.raises(SandboxProtocol):
        m.parse_error({"code": "not-locked", "message": "x", "fetch_error": 0}, {0: sent})
    with pytest.raises(SandboxProtocol):
        m.parse_error({"code": "hash-mismatch", "message": "x", "fetch_error": 1}, {0: sent})
    with pytest.raises(SandboxProtocol):
        m.parse_error({"code": "hash-mismatch", "message": "x", "fetch_error": True}, {1: sent})


def test_parse_names():
    assert m.parse_names({"names": ["a", "b"]}) == ["a", "b"]
    for bad in (["b", "a"], ["a", "a"], ["a-b"], [1], "ab"):
        with pytest.raises(SandboxProtocol):
            m.parse_names({"names": bad})


def test_parse_doc():
    assert m.parse_doc({"doc": None}) is None
    assert m.parse_doc({"doc": "Line\n  two\x1b[5m"}) == "Line\n  two\\x1b[5m"
    with pytest.raises(SandboxProtocol):
        m.parse_doc({"doc": 3})


def test_parse_result_config_checks_nodes():
    good = {"format": m.CONFIG_FORMAT, "root": dict(NODE, children={"a": NODE}), "aliases": {}}
    assert m.parse_result_config({"config": good}) is good
    bad_cases = [
        dict(good, format="other/1"),
        dict(good, root=dict(NODE, children={"a.b": NODE})),
        dict(good, root=dict(NODE, origin={"kind": "site", "path": "x"})),
        dict(good, root={k: v for k, v in NODE.items() if k != "args"}),
        dict(good, root=dict(NODE, extra=1)),
        dict(good, root=dict(NODE, **{"class": "nocolon"})),
        dict(good, aliases={"a": 1}),
        dict(good, extra=1),
    ]
    for bad in bad_cases:
        with pytest.raises(SandboxProtocol):
            m.parse_result_config({"config": bad})


def test_fetch_request_roundtrip_and_hostile_meta():
    req = m.FetchRequest(
        url="https://h/x-abcdef12.pth", kind="load_state_dict", hash_prefix="abcdef12", check_hash=True
    )
    assert m.FetchRequest.from_meta(req.to_meta()) == req
    for bad in (
        dict(req.to_meta(), kind="exec"),
        dict(req.to_meta(), url="https://h/\x1b[2J"),
        dict(req.to_meta(), check_hash="yes"),
        dict(req.to_meta(), extra=1),
        {"url": "u"},
    ):
        with pytest.raises(SandboxProtocol):
            m.FetchRequest.from_meta(bad)


def test_call_request_roundtrip():
    call = m.CallRequest(op="load", tree="/t", entrypoint="e", args=(1,), kwargs={"a": [2]}, want_export=True)
    assert m.CallRequest.from_meta(call.to_meta()) == call


def test_parse_export():
    meta = {"format": m.EXPORT_FORMAT, "state": {"w": "w"}, "constants": {}, "parameters": ["w"]}
    info = m.parse_export(meta, b"{}")
    assert info.parameters == ("w",) and info.program_json == b"{}"
    with pytest.raises(SandboxProtocol):
        m.parse_export(dict(meta, parameters=["nope"]), b"{}")


def test_fetch_request_refuses_tab_and_newline_in_url_or_name() -> None:
    """Header injection / log forging: a URL or file name with TAB/LF from the child is refused."""
    import pytest

    from securehub.errors import SandboxProtocol
    from securehub.sandbox.wire.messages import FetchRequest

    base = {
        "url": "https://h/x.pth",
        "kind": "load_state_dict",
        "file_name": None,
        "hash_prefix": None,
        "check_hash": False,
    }
    for field, value in (("url", "https://h/x.pth\nX-Evil: 1"), ("url", "https://h/\tx"), ("file_name", "a\nb")):
        with pytest.raises(SandboxProtocol):
            FetchRequest.from_meta({**base, field: value})


def test_fetch_request_refuses_invisible_characters_that_make_a_url_read_as_another() -> None:
    """A child-chosen URL or file name reaches hub.lock (``lock -e``) and the user's terminal: a bidi override,
    zero-width space, BOM, line separator or word joiner would make it read as another (Trojan Source)."""
    base = {
        "url": "https://h/x.pth",
        "kind": "load_state_dict",
        "file_name": None,
        "hash_prefix": None,
        "check_hash": False,
    }
    hostile = (
        "https://h/\u202egpj.pth",
        "https://h\u200b.example/x.pth",
        "\ufeffhttps://h/x.pth",
        "https://h/x\u2028.pth",
        "https://h/x\u2060.pth",
        "https://h/x\x85.pth",
    )
    for url in hostile:
        with pytest.raises(SandboxProtocol) as info:
            m.FetchRequest.from_meta({**base, "url": url})
        assert info.value.code == "sandbox-protocol"
        assert not any(ch in str(info.value) for ch in "\u202e\u200b\ufeff\u2028\u2060\x85")
    with pytest.raises(SandboxProtocol):
        m.FetchRequest.from_meta({**base, "file_name": "w\u200b.pth"})
    # Plain non-ASCII is not hidden: a URL may carry it (requests percent-encodes it on the wire).
    assert m.FetchRequest.from_meta({**base, "url": "https://h/gewichte-ä.pth"}).url == "https://h/gewichte-ä.pth"
