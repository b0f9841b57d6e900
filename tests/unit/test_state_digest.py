"""The canonical state digest (securehub.pipeline.state_digest): layout-independent, sensitive to every field."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from securehub.pipeline.state_digest import (
    TREE_PLACEHOLDER,
    OutputDigests,
    config_sha256,
    file_digests,
    file_lines,
    first_difference,
    names_tree,
    output_digests,
    portable_text,
    program_sha256,
    state_sha256,
)
from securehub.sandbox.wire.messages import EXPORT_CONSTANT_PREFIX, ExportInfo

_DT = {torch.float32: "F32", torch.int64: "I64", torch.bool: "BOOL", torch.float16: "F16"}


def _state() -> dict[str, torch.Tensor]:
    return {
        "weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "bias": torch.tensor([1.5, -2.0, 0.25], dtype=torch.float32),
        "mask": torch.tensor([True, False, True]),
        "steps": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, dtype=torch.float16),
    }


def _write(path: Path, state: dict[str, torch.Tensor], *, order: list[str], data_order: list[str],
           pad: int = 0, metadata: dict[str, str] | None = None) -> Path:  # fmt: skip
    """A safetensors file built by hand: header keys in ``order``, data laid out in ``data_order``."""
    blobs = {n: state[n].contiguous().numpy().tobytes() for n in state}
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for n in data_order:
        offsets[n] = (pos, pos + len(blobs[n]))
        pos += len(blobs[n])
    header: dict[str, object] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    for n in order:
        t = state[n]
        header[n] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": list(offsets[n])}
    raw = json.dumps(header).encode() + b" " * pad
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs[n] for n in data_order))
    return path


def test_state_digest_file_and_memory_agree(tmp_path: Path) -> None:
    state = _state()
    save_file(state, str(tmp_path / "a.safetensors"))
    assert file_digests(tmp_path / "a.safetensors", {}, None, tree=None).state_sha256 == state_sha256(state)


def test_state_digest_independent_of_layout(tmp_path: Path) -> None:
    state = _state()
    names = list(state)
    a = _write(tmp_path / "a", state, order=names, data_order=names)
    b = _write(tmp_path / "b", state, order=names[::-1], data_order=names[::-1], pad=7, metadata={"x": "y"})
    c = _write(tmp_path / "c", state, order=sorted(names), data_order=names[1:] + names[:1])
    assert a.read_bytes() != b.read_bytes() != c.read_bytes()
    digests = {file_digests(p, {}, None, tree=None).state_sha256 for p in (a, b, c)}
    assert digests == {state_sha256(state)}
    # Non-contiguous in-memory tensors hash by their values, like the file does.
    assert state_sha256({**state, "weight": state["weight"].t().contiguous().t()}) == state_sha256(state)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.__setitem__("weight", s["weight"].clone().index_put_((torch.tensor([0]),), torch.tensor(9.0))),
        lambda s: s.__setitem__("bias", s["bias"].to(torch.float16)),
        lambda s: s.__setitem__("weight", s["weight"].reshape(4, 3)),
        lambda s: s.__setitem__("weight2", s.pop("weight")),
        lambda s: s.pop("mask"),
        lambda s: s.__setitem__("extra", torch.zeros(1)),
        lambda s: s.__setitem__("steps", torch.tensor(7, dtype=torch.int32)),
    ],
    ids=["byte", "dtype", "shape", "name", "removed", "added", "same-value-other-dtype"],
)
def test_state_digest_changes_with_any_field(change: object) -> None:
    state = _state()
    other = dict(state)
    change(other)  # type: ignore[operator]
    assert state_sha256(other) != state_sha256(state)


def test_state_digest_exact_byte_format() -> None:
    """The documented format, recomputed independently (docs/lock-format.md copies it)."""
    t = torch.tensor([1.0, 2.0], dtype=torch.float32)
    line = json.dumps(["w", "F32", [2], 8, hashlib.sha256(t.numpy().tobytes()).hexdigest()],
                      separators=(",", ":"), ensure_ascii=False)  # fmt: skip
    expected = hashlib.sha256(b"securehub-state/1\n" + line.encode() + b"\n").hexdigest()
    assert state_sha256({"w": t}) == expected


def test_state_digest_ignores_export_tensors_program_digest_covers_them(tmp_path: Path) -> None:
    state = _state()
    export = ExportInfo(state={}, constants={"c": EXPORT_CONSTANT_PREFIX + "c"}, parameters=(), program_json=b"{}")
    with_const = {**state, EXPORT_CONSTANT_PREFIX + "c": torch.ones(2)}
    changed = {**state, EXPORT_CONSTANT_PREFIX + "c": torch.zeros(2)}
    assert state_sha256(with_const) == state_sha256(state)
    a = output_digests(with_const, {}, export, tree=None)
    b = output_digests(changed, {}, export, tree=None)
    assert a.state_sha256 == b.state_sha256 and a.program_sha256 != b.program_sha256
    save_file(with_const, str(tmp_path / "s"))
    assert file_digests(tmp_path / "s", {}, export, tree=None) == a
    other_program = ExportInfo(state={}, constants=export.constants, parameters=(), program_json=b"{ }")
    assert output_digests(with_const, {}, other_program, tree=None).program_sha256 != a.program_sha256
    assert program_sha256(None, "0" * 64) is None


def test_config_digest_canonical_and_ignores_export_error() -> None:
    assert config_sha256({"b": 1, "a": [1, 2]}, tree=None) == config_sha256({"a": [1, 2], "b": 1}, tree=None)
    assert config_sha256({"a": 1, "export_error": "x"}, tree=None) == config_sha256({"a": 1}, tree=None)
    assert config_sha256({"a": 1}, tree=None) != config_sha256({"a": 2}, tree=None)
    expected = hashlib.sha256(b'securehub-config/2\n{"a":1,"b":"\xc3\xa9"}').hexdigest()
    assert config_sha256({"b": "\u00e9", "a": 1}, tree=None) == expected


def _cfg(value: object) -> dict[str, object]:
    return {"root": {"args": [value], "kwargs": {"cfg": value}}}


def test_config_digest_replaces_the_trees_path_so_every_cache_gives_the_same(tmp_path: Path) -> None:
    """Red team 13: a repository class given a path inside its tree records the tree's absolute path (which
    holds SECUREHUB_DIR); the digest replaces exactly the load's own tree path by ``${tree}``."""
    ci, laptop = tmp_path / "ci" / "trees" / "abc", tmp_path / "laptop" / "hub" / "trees" / "abc"
    for t in (ci, laptop):
        t.mkdir(parents=True)
    at = lambda tree, rest: _cfg(str(tree.resolve()) + rest)  # noqa: E731
    assert config_sha256(at(ci, "/models/w.txt"), tree=ci) == config_sha256(at(laptop, "/models/w.txt"), tree=laptop)
    assert config_sha256(at(ci, ""), tree=ci) == config_sha256(at(laptop, ""), tree=laptop)  # the tree itself
    # The exact bytes: $ escaped first, then the tree path; keys rewritten like values.
    config = {str(ci.resolve()) + "/k$": "a$b", "n": 1.5}
    body = '{"${tree}/k$$":"a$$b","n":1.5}'
    assert config_sha256(config, tree=ci) == hashlib.sha256(b"securehub-config/2\n" + body.encode()).hexdigest()
    # Another machine's tree, or a different file, still differs.
    here = config_sha256(at(laptop, "/models/w.txt"), tree=laptop)
    assert config_sha256(at(ci, "/models/w.txt"), tree=laptop) != here
    assert config_sha256(at(ci, "/models/w.txt"), tree=ci) != config_sha256(at(ci, "/models/v.txt"), tree=ci)
    # The tree as given and as resolved (a symlinked cache dir): the child sees the resolved path.
    (tmp_path / "link").symlink_to(tmp_path / "laptop")
    linked = tmp_path / "link" / "hub" / "trees" / "abc"
    assert config_sha256(at(laptop, "/x"), tree=linked) == config_sha256(at(ci, "/x"), tree=ci)


def test_config_digest_rewrites_no_path_that_merely_shares_the_trees_prefix(tmp_path: Path) -> None:
    tree = tmp_path / "trees" / "abc"
    tree.mkdir(parents=True)
    t = str(tree.resolve())
    assert portable_text(t + "def/x", t) == t + "def/x"  # trees/abcdef is another directory
    assert portable_text(t + ".bak", t) == t + ".bak"
    assert portable_text("/elsewhere" + t, t) == "/elsewhere" + t
    assert portable_text(t + "/x", t) == TREE_PLACEHOLDER + "/x"
    assert config_sha256(_cfg(t + "def/x"), tree=tree) != config_sha256(_cfg(t + "/x"), tree=tree)
    assert config_sha256(_cfg(t + "def/x"), tree=tree) == config_sha256(_cfg(t + "def/x"), tree=None)


@pytest.mark.parametrize("rest", ["", "/models/w.txt", "/$", "/${tree}"])
def test_config_digest_literal_placeholder_text_cannot_collide_with_the_tree_path(tmp_path: Path, rest: str) -> None:
    """Injective: the marker is escaped before the path is replaced, so a config that spells ``${tree}`` (or
    ``$${tree}``) itself never digests like one holding the tree's path."""
    tree = tmp_path / "tree"
    tree.mkdir()
    t = str(tree.resolve())
    real = config_sha256(_cfg(t + rest), tree=tree)
    forged = {TREE_PLACEHOLDER + rest, "$" + TREE_PLACEHOLDER + rest, "$$" + TREE_PLACEHOLDER[1:] + rest,
              TREE_PLACEHOLDER.replace("$", "$$") + rest}  # fmt: skip
    for text in forged:
        assert config_sha256(_cfg(text), tree=tree) != real, text
    # Keys too, and without a tree nothing is replaced.
    assert config_sha256({TREE_PLACEHOLDER: 1}, tree=tree) != config_sha256({t: 1}, tree=tree)
    assert config_sha256(_cfg(t + rest), tree=None) != real
    # Distinct strings stay distinct (so distinct keys never merge).
    texts = [t, t + "/a", TREE_PLACEHOLDER, "$" + t, "$$", "$", "$" + TREE_PLACEHOLDER, TREE_PLACEHOLDER + "/a"]
    assert len({portable_text(x, t) for x in texts}) == len(texts)


def test_names_tree_finds_the_path_in_keys_values_and_lists(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    t = str(tree.resolve())
    assert names_tree({"a": [1, {"b": t + "/x"}]}, tree) and names_tree({t: 1}, tree)
    assert not names_tree({"a": [t + "x", TREE_PLACEHOLDER, 1.0, None]}, tree)


def test_first_difference_names_the_tensor(tmp_path: Path) -> None:
    state = _state()
    save_file(state, str(tmp_path / "a"))
    save_file({**state, "mask": torch.tensor([True, True, True])}, str(tmp_path / "b"))
    assert first_difference(file_lines(tmp_path / "a"), file_lines(tmp_path / "b")) == "mask"
    assert first_difference(file_lines(tmp_path / "a"), file_lines(tmp_path / "a")) is None


def test_output_digests_equal_for_equal_outputs(tmp_path: Path) -> None:
    state = _state()
    save_file(state, str(tmp_path / "a"))
    d = file_digests(tmp_path / "a", {"k": "v"}, None, tree=tmp_path)
    assert d == output_digests(state, {"k": "v"}, None, tree=tmp_path)
    assert isinstance(d, OutputDigests)


def test_digests_computed_while_reading_equal_those_of_the_tensors_read(tmp_path: Path) -> None:
    # A result-cache hit hashes each tensor as load_verified reads it (TensorHasher as on_tensor);
    # the digests from those must be exactly output_digests of what was returned, export tensors included,
    # with tensors small (batched into one read) and large (read in several 8 MiB slices).
    from securehub.verify.fast_safetensors import load_verified
    from securehub.verify.tensor_digest import TensorHasher, file_lines, lines_digest

    gen = torch.Generator().manual_seed(5)
    state = {**_state(), "big": torch.randn(3 << 20, generator=gen), f"{EXPORT_CONSTANT_PREFIX}0": torch.ones(2)}
    path = tmp_path / "s.safetensors"
    save_file(state, str(path))
    data = path.read_bytes()
    export = ExportInfo(state={}, constants={"c0": f"{EXPORT_CONSTANT_PREFIX}0"}, parameters=(), program_json=b"{}")
    with TensorHasher() as hasher:
        tensors = load_verified(path, expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data),
                                on_tensor=hasher.add)  # fmt: skip
        streamed = output_digests(tensors, {"k": 1}, export, tree=None, data_sha256=hasher.data_sha256())
    assert streamed == output_digests(tensors, {"k": 1}, export, tree=None)
    with TensorHasher() as hasher:  # the whole file's digest (the cache manifest's) covers the export tensors too
        load_verified(path, expected_sha256=None, expected_size=len(data), on_tensor=hasher.add)
        assert lines_digest(hasher.lines()) == lines_digest(file_lines(path)) != streamed.state_sha256
    assert streamed.state_sha256 == state_sha256(state)
