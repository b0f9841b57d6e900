"""Attacks on op ``convert`` (pickle checkpoints unpickled only inside the sandbox).

Two kinds of attacker:

- a hostile *checkpoint* reaching convert (e.g. the static scanner was
  bypassed by calling convert directly): ``torch.load(weights_only=True)``
  in the child must refuse it, with ``format-not-allowed``, and nothing it
  asked for may happen;
- a hostile *child* (a checkpoint that broke out of the unpickler, simulated
  with spawn's ``probe_file``) lying in its ``converted`` answer: the parent
  must refuse with ``sandbox-protocol`` and keep nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from securehub.errors import SandboxProtocol, SecureHubError
from securehub.pipeline.convert import _run
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.wire import messages as m
from tests._pickle_fixtures import Member, ZipSpec, reduce_call, torch_members, torch_zip_bytes, write_zip
from tests._sandbox_helpers import CONFIG, PROBE_FRAMING, write_probe

PRELUDE = (
    PROBE_FRAMING
    + """
import os

def read_call():
    (n,) = struct.unpack(">Q", recv_exact(8))
    data = recv_exact(n)
    (h,) = struct.unpack(">I", data[:4])
    return json.loads(data[4:4 + h])["meta"]

def st(tensors, overlap=False):
    header, off, body = {}, 0, b""
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        if not overlap:
            off += len(data)
            body += data
    if overlap:
        body = data
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body

ONE = struct.pack("<f", 1.0)
LAYOUT = {"format": "securehub-convert/1",
          "containers": [{"kind": "dict", "keys": ["w"], "items": [["t", "w"]]}],
          "root": ["c", 0], "extras": {}}
"""
)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "ckpt.pt"
    path.parent.mkdir()
    torch.save({"w": torch.ones(1)}, path)
    (path.parent / "other-secret-artifact.pt").write_bytes(b"not for the child")
    return path


def hostile_child(tmp_path: Path, checkpoint: Path, body: str) -> SecureHubError:
    probe = write_probe(tmp_path, PRELUDE, body)
    work = tmp_path / "sandbox-tmp"  # hand-off dir, run dir and the parent's work dir all go here
    work.mkdir()
    before = set(tmp_path.rglob("*"))
    with pytest.raises(SecureHubError) as info:
        _run(checkpoint, SandboxConfig(timeout_s=120, tmp_parent=work), probe_file=probe).state
    assert set(tmp_path.rglob("*")) == before, "the parent kept output from a hostile child"
    assert list(work.iterdir()) == []
    return info.value


# --------------------------------------------------------------------- hostile child answers


def test_malformed_safetensors_body(tmp_path: Path, checkpoint: Path) -> None:
    body = 'read_call(); frame("converted", LAYOUT, b"\\x08" + b"\\0" * 7 + b"{"); wait_close()'
    err = hostile_child(tmp_path, checkpoint, body)
    assert err.code == "sandbox-protocol"
    assert "safetensors" in err.message


def test_overlapping_tensor_data(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        """
        read_call()
        body = st({"w": ("F32", [1], ONE), "v": ("F32", [1], ONE)}, overlap=True)
        layout = dict(LAYOUT, containers=[{"kind": "dict", "keys": ["w", "v"], "items": [["t", "w"], ["t", "v"]]}])
        frame("converted", layout, body)
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_smuggled_unreferenced_tensor(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        """
        read_call()
        frame("converted", LAYOUT, st({"w": ("F32", [1], ONE), "smuggled": ("F32", [1], ONE)}))
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"
    assert "smuggled" in err.message


def test_layout_names_a_missing_tensor(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        """
        read_call()
        layout = dict(LAYOUT, containers=[{"kind": "dict", "keys": ["w", "v"], "items": [["t", "w"], ["t", "v"]]}])
        frame("converted", layout, st({"w": ("F32", [1], ONE)}))
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_container_reference_cycle(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        """
        read_call()
        layout = dict(LAYOUT, containers=[{"kind": "list", "items": [["c", 0]]},
                                          {"kind": "dict", "keys": ["w"], "items": [["c", 0]]}], root=["c", 1])
        frame("converted", layout, st({}))
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"
    assert "earlier container" in err.message


def test_extras_json_bomb(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        f"""
        read_call()
        extras = {{"e%d" % i: "A" * 4096 for i in range({m.MAX_CONVERT_EXTRAS_BYTES // 4096 + 16})}}
        frame("converted", dict(LAYOUT, extras=extras), st({{"w": ("F32", [1], ONE)}}))
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"
    assert "extras" in err.message


def test_header_beyond_result_cap(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        """
        read_call()
        raw(struct.pack(">QI", 4 + (65 << 20), 65 << 20))
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


@pytest.mark.parametrize("marker", ['["nan"]', "{}", '[[0], "nan"]'])
def test_unhashable_nonfinite_extra_marker_is_a_protocol_error(tmp_path: Path, checkpoint: Path, marker: str) -> None:
    """``{"float": <list or object>}`` as an extras value: the parent's lookup of the marker raised
    ``TypeError`` (unhashable) instead of refusing (found by tests/fuzz/test_fuzz_channel.py)."""
    err = hostile_child(
        tmp_path,
        checkpoint,
        f"""
        read_call()
        layout = dict(LAYOUT, extras={{"e": {{"float": {marker}}}}})
        frame("converted", layout, st({{"w": ("F32", [1], ONE)}}))
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"
    assert "converted extra 'e'" in err.message


@pytest.mark.parametrize("code", ["entrypoint-error", "reconstruct-refused", "hash-mismatch", "sandbox-resource"])
def test_child_claims_a_code_convert_may_not_report(tmp_path: Path, checkpoint: Path, code: str) -> None:
    body = f'read_call(); frame("error", {{"code": "{code}", "message": "x"}}); wait_close()'
    err = hostile_child(tmp_path, checkpoint, body)
    assert err.code == "sandbox-protocol"


def test_child_asks_for_a_fetch_during_convert(tmp_path: Path, checkpoint: Path) -> None:
    err = hostile_child(
        tmp_path,
        checkpoint,
        """
        read_call()
        frame("fetch", {"url": "https://example.com/x.pt", "kind": "download", "file_name": None,
                        "hash_prefix": None, "check_hash": False})
        wait_close()
    """,
    )
    assert err.code == "sandbox-protocol"


def test_child_reads_only_the_handed_copy(tmp_path: Path, checkpoint: Path) -> None:
    """The hand-off exposes one file: not the original, not its neighbours in the cache."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        PRELUDE
        + textwrap.dedent(f"""
        meta = read_call()
        handed = meta["file"]
        problems = []
        if handed == {str(checkpoint)!r} or os.path.dirname(handed) == {str(checkpoint.parent)!r}:
            problems.append("handed the original path")
        with open(handed, "rb") as fh:
            fh.read(2)
        for other in ({str(checkpoint)!r}, {str(checkpoint.parent / "other-secret-artifact.pt")!r}):
            try:
                open(other, "rb").close()
                problems.append("read " + other)
            except PermissionError:
                pass
        try:
            open(handed, "ab").close()
            problems.append("handed copy is writable")
        except OSError:
            pass
        if problems:
            frame("error", {{"code": "format-not-allowed", "message": "; ".join(problems)}})
        else:
            frame("converted", LAYOUT, st({{"w": ("F32", [1], ONE)}}))
        wait_close()
    """)
    )
    got = _run(checkpoint, CONFIG, probe_file=probe).state
    assert list(got) == ["w"] and torch.equal(got["w"], torch.ones(1))


# --------------------------------------------------------------------- hostile checkpoints


def _canary(tmp_path: Path) -> Path:
    return tmp_path / "canary-written-by-payload"


def _reduce_zip(command: str) -> bytes:
    members = [
        Member(mem.name, reduce_call("posix", "system", command)) if mem.name.endswith("data.pkl") else mem
        for mem in torch_members(torch_zip_bytes({"w": torch.ones(1)}))
    ]
    return write_zip(ZipSpec(members))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle"])
def test_reduce_payload_refused_by_weights_only_in_the_child(tmp_path: Path, container: str) -> None:
    canary = _canary(tmp_path)
    command = f"touch {canary}"
    data = _reduce_zip(command) if container == "torch-zip" else reduce_call("posix", "system", command)
    path = tmp_path / "evil.pt"
    path.write_bytes(data)
    with pytest.raises(SecureHubError) as info:
        _run(path, CONFIG).state  # the parent's static scan is bypassed on purpose
    assert info.value.code == "format-not-allowed"
    assert "weights_only" in info.value.message
    assert "posix" in info.value.message  # torch's own reason names the refused global
    assert "weights_only=False" not in info.value.message, "never advise turning weights_only off"
    assert not canary.exists()


def _self_containing() -> dict[str, Any]:
    loop: list[Any] = []
    loop.append(loop)
    return {"loop": loop}


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("reference-cycle", _self_containing, "contains itself"),
        ("non-tensor-bomb", lambda: {"x": "A" * (m.MAX_CONVERT_EXTRAS_BYTES + 1)}, "non-tensor values"),
        ("unsupported-leaf", lambda: {"dtype": torch.float32}, "torch.dtype"),
        ("dtype-safetensors-lacks", lambda: {"c": torch.zeros(2, dtype=torch.complex32)}, "safetensors"),
    ],
)
@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_checkpoint_that_cannot_travel(tmp_path: Path, name: str, make: Any, expected: str) -> None:
    path = tmp_path / f"{name}.pt"
    torch.save(make(), path)
    with pytest.raises(SecureHubError) as info:
        _run(path, CONFIG).state
    assert info.value.code == "format-not-allowed"
    assert expected in info.value.message


def test_shared_container_bomb_stays_linear(tmp_path: Path) -> None:
    """A 'billion laughs' of shared lists: 40 levels x 2 references would be 2**40 leaves if expanded."""
    level: list[Any] = [torch.ones(1)]
    for _ in range(40):
        level = [level, level]
    path = tmp_path / "laughs.pt"
    torch.save({"bomb": level}, path)
    got = _run(path, CONFIG).state
    node = got["bomb"]
    for _ in range(40):
        assert node[0] is node[1]
        node = node[0]
    assert torch.equal(node[0], torch.ones(1))


# --------------------------------------------------------------------- the layout parser alone


def _layout(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": m.CONVERT_FORMAT,
        "containers": [{"kind": "dict", "keys": ["w"], "items": [["t", "w"]]}],
        "root": ["c", 0],
        "extras": {},
    }
    base.update(changes)
    return base


def _dict(keys: list[Any], items: list[Any]) -> list[dict[str, Any]]:
    return [{"kind": "dict", "keys": keys, "items": items}]


@pytest.mark.parametrize(
    "meta",
    [
        _layout(format="securehub-convert/2"),
        _layout(root=["t", "w"]),
        _layout(root=["c", 1]),
        _layout(containers=[{"kind": "list", "items": []}], root=["c", 0]),
        _layout(containers=[{"kind": "set", "items": []}]),
        _layout(containers=[{"kind": "list", "items": [], "keys": []}]),
        _layout(containers=_dict([True], [["t", "w"]])),
        _layout(containers=_dict([1.5], [["t", "w"]])),
        _layout(containers=_dict([2**64], [["t", "w"]])),
        _layout(containers=_dict(["a", "a"], [["t", "w"], ["t", "w"]])),
        _layout(containers=_dict(["a"], [])),
        _layout(containers=_dict(["a"], [["x", "missing"]])),
        _layout(containers=_dict(["a"], [["y", "w"]])),
        _layout(containers=_dict(["a"], [["t", 3]])),
        _layout(extras={"e": [1, 2]}),
        _layout(extras={"e": {"float": "1e999"}}),
        _layout(extras={"e": {"float": ["nan"]}}),
        _layout(extras={"e": {"float": {"nan": 1}}}),
        _layout(extras={"e": -(2**63) - 1}),
        _layout(containers=_dict(["a"], [["t", "n" * (m.MAX_CONVERT_NAME_CHARS + 1)]])),
        {**_layout(), "smuggled": 1},
    ],
)
def test_parse_convert_refuses(meta: dict[str, Any]) -> None:
    with pytest.raises(SandboxProtocol):
        m.parse_convert(meta)


def test_parse_convert_keeps_key_types_and_decodes_floats() -> None:
    layout = m.parse_convert(
        _layout(
            containers=_dict(["0", 0, 2**64 - 1], [["t", "w"], ["x", "n"], ["x", "i"]]),
            extras={"n": {"float": "nan"}, "i": -(2**63)},
        )
    )
    assert layout.containers[0].keys == ("0", 0, 2**64 - 1)
    assert layout.extras["n"] != layout.extras["n"]  # NaN
    assert layout.extras["i"] == -(2**63)
