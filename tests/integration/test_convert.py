"""Converting pickle checkpoints inside the sandbox (SPEC section 2, section 8 strict).

Every test here runs a real confined child (op ``convert``) except the pure
checks at the end. The parent must rebuild exactly what ``torch.load`` would
have returned, without ever unpickling anything itself.
"""

from __future__ import annotations

import collections
import math
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch

from securehub.config.policy import Policy
from securehub.errors import SecureHubError
from securehub.pipeline.convert import _device, _run, convert_checkpoint, convert_in_sandbox, rebuild
from securehub.sandbox.config import SandboxConfig
from securehub.sandbox.parent.session import run_in_sandbox
from securehub.sandbox.wire import messages as m

CONFIG = SandboxConfig(timeout_s=120)


def _trained_checkpoint() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    sgd.step()
    return {"state_dict": model.state_dict(), "epoch": 3, "opt": sgd.state_dict()}


def _assert_same(got: Any, want: Any, where: str = "<root>") -> None:
    """Deep equality that also checks container types, key types and tensor dtypes."""
    assert type(got) is type(want) or (isinstance(want, torch.Tensor) and type(got) is torch.Tensor), where
    if isinstance(want, torch.Tensor):
        assert got.dtype == want.dtype and got.shape == want.shape, where
        assert torch.equal(got, want.detach()), where
    elif isinstance(want, dict):
        assert list(got) == list(want), where  # same keys, same key types, same order
        for key in want:
            _assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_same(a, b, f"{where}.{i}")
    elif isinstance(want, float) and math.isnan(want):
        assert math.isnan(got), where
    else:
        assert got == want and type(got) is type(want), where


@pytest.fixture
def no_unpickling_in_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every unpickling entry point of this (parent) process raise."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parent process unpickled something during a convert")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)

    class RefusingUnpickler(pickle.Unpickler):  # still subclassable (torch subclasses it on import)
        def load(self) -> Any:
            refuse()

    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)


def test_training_checkpoint_round_trips_under_strict_without_unpickling_in_parent(
    tmp_path: Path, no_unpickling_in_parent: None
) -> None:
    ckpt = _trained_checkpoint()
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    result = convert_checkpoint(path, policy=Policy.load("strict"))
    assert result.isolation.level == "full"  # strict: isolation require
    got = result.state
    _assert_same(got, ckpt)
    # torch.load gives OrderedDict for state dicts and int keys for optimizer state; so do we.
    assert isinstance(got["state_dict"], collections.OrderedDict)
    assert sorted(got["opt"]["state"]) == [0, 1, 2, 3]
    assert got["opt"]["param_groups"][0]["lr"] == 0.1
    assert got["opt"]["param_groups"][0]["foreach"] is None
    assert got["epoch"] == 3
    assert got["state_dict"]["1.num_batches_tracked"].dtype == torch.int64
    assert list(tmp_path.iterdir()) == [path], "convert left files next to the checkpoint"


def test_legacy_format_and_extras(tmp_path: Path) -> None:
    ckpt: dict[str, Any] = {
        "model": {"layer.weight": torch.randn(2, 2, dtype=torch.float64), "layer.bias": torch.zeros(2)},
        "best_loss": float("inf"),
        "worst": float("-inf"),
        "undefined": float("nan"),
        "name": "resnet\u00e9",
        "flags": (True, False, None),
        "sizes": [1, -(2**63), 2**64 - 1],
        "": {"dotted.key": 1, "dotted": {"key": 2}},
        "half": torch.arange(4, dtype=torch.float16),
        "empty": torch.empty(0, 3),
    }
    path = tmp_path / "legacy.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=False)
    with path.open("rb") as fh:
        assert fh.read(2) != b"PK", "the fixture must be the legacy (non-zip) format"
    got = _run(path, CONFIG).state
    _assert_same(got, ckpt)


def test_shared_and_non_contiguous_tensors(tmp_path: Path) -> None:
    base = torch.arange(12.0).reshape(3, 4)
    ckpt = {
        "a": base,
        "again": base,  # the same tensor object twice
        "row": base[1],  # a view sharing storage
        "t": base.T,  # non-contiguous
        "param": torch.nn.Parameter(torch.ones(2)),
        "shared_list": None,
    }
    inner = [base, 1]
    ckpt["shared_list"] = {"x": inner, "y": inner}
    path = tmp_path / "shared.pt"
    torch.save(ckpt, path)
    got = _run(path, CONFIG, map_location=torch.device("cpu")).state
    assert torch.equal(got["a"], base) and torch.equal(got["row"], base[1]) and torch.equal(got["t"], base.T)
    assert got["again"] is got["a"], "one tensor object stored twice must come back as one object"
    assert type(got["param"]) is torch.Tensor and torch.equal(got["param"], torch.ones(2))
    assert got["shared_list"]["x"] is got["shared_list"]["y"]
    assert got["shared_list"]["x"][0] is got["a"]
    got["row"].add_(100)  # overlapping views become independent copies
    assert torch.equal(got["a"], base)


def test_not_a_mapping_is_format_not_allowed(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(SecureHubError) as info:
        convert_in_sandbox(path, policy=Policy.load("default"))
    assert info.value.code == "format-not-allowed"
    assert "builtins.list" in info.value.message and "expected a mapping" in info.value.message


def test_handed_copy_with_wrong_digest_is_hash_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.ones(1)}, path)
    with pytest.raises(SecureHubError) as info:
        _run(path, CONFIG, sha256="0" * 64).state
    assert info.value.code == "hash-mismatch"


# --------------------------------------------------------------------- pure checks (no child)


def test_map_location_forms() -> None:
    assert _device(None) == "cpu"
    assert _device("cpu") == "cpu"
    assert _device(torch.device("cpu")) == "cpu"
    with pytest.raises(TypeError):
        _device({"cuda:0": "cpu"})
    with pytest.raises(TypeError):
        _device(lambda storage, loc: storage)
    with pytest.raises(ValueError, match="not a device"):
        _device("no-such-device")


def test_run_in_sandbox_convert_argument_misuse(tmp_path: Path) -> None:
    f = tmp_path / "x.pt"
    f.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()

    def no_fetch(request: m.FetchRequest) -> Path:
        raise AssertionError(request)

    with pytest.raises(ValueError, match="convert"):
        run_in_sandbox("convert", tmp_path, None, [], {}, config=CONFIG, broker=no_fetch, out_dir=out, convert_file=f)
    with pytest.raises(ValueError, match="convert_file"):
        run_in_sandbox(
            "convert",
            None,
            None,
            [],
            {},
            config=CONFIG,
            broker=no_fetch,
            out_dir=out,
            convert_file=tmp_path / "missing",
        )
    with pytest.raises(ValueError, match="convert_file"):
        run_in_sandbox("load", tmp_path, "m", [], {}, config=CONFIG, broker=no_fetch, out_dir=out, convert_file=f)
    assert list(out.iterdir()) == []


def test_rebuild_keeps_types_order_and_sharing() -> None:
    layout = m.parse_convert(
        {
            "format": m.CONVERT_FORMAT,
            "containers": [
                {"kind": "tuple", "items": [["x", "n"], ["t", "w"]]},
                {"kind": "odict", "keys": ["b", 0, "0"], "items": [["c", 0], ["c", 0], ["x", "f"]]},
            ],
            "root": ["c", 1],
            "extras": {"n": None, "f": {"float": "-inf"}},
        }
    )
    w = torch.ones(2)
    got = rebuild(layout, {"w": w})
    assert isinstance(got, collections.OrderedDict)
    assert list(got) == ["b", 0, "0"]
    assert got["b"] == (None, w) and got["b"] is got[0]
    assert got["0"] == float("-inf")
    assert layout.tensor_names == {"w"}


def test_call_request_for_convert() -> None:
    call = m.CallRequest(op="convert", tree="", file="/handoff/0000-ckpt.pt")
    assert m.CallRequest.from_meta(call.to_meta()) == call
    for bad in (
        {**call.to_meta(), "file": None},
        {**call.to_meta(), "tree": "/some/tree"},
        {**m.CallRequest(op="load", tree="/t", entrypoint="e").to_meta(), "file": "/x"},
    ):
        with pytest.raises(ValueError):
            m.CallRequest.from_meta(bad)
