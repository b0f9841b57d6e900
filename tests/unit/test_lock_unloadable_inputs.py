"""``lock -e`` with example inputs that torch.export cannot take (real-code round 6).

pytorchvideo's ``slowfast_r50`` takes one list ``[slow, fast]``; given its two clips as two
``--example-input``, the export failed in the sandbox (``TypeError: too many positional arguments``),
yet ``lock -e`` recorded the inputs and pinned the output, and every later strict/default load was
``reconstruct-refused``, its advice asking for the example inputs the user had given. Now
:func:`securehub.pipeline.lock_entrypoints._unloadable` says why such a lock could never load (the
lock is refused, nothing written) unless another strategy of the policy rebuilds the model, and the
load's refusal says what to check instead of asking for inputs again.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from securehub.errors import ReconstructRefused
from securehub.pipeline.lock_entrypoints import _unloadable
from securehub.reconstruct.rebuild import POSITIONAL_INPUTS_ADVICE, reconstruct
from securehub.sandbox.child import record as _record
from securehub.sandbox.child.result import collect_tensors, export_program
from securehub.sandbox.wire.messages import parse_export
from tests.unit.test_reconstruct_export import record_with_export

ERROR = "TypeError: too many positional arguments"


def _ctx(strategies: list[str]) -> Any:
    return SimpleNamespace(policy=SimpleNamespace(reconstruct=SimpleNamespace(
        strategies=tuple(strategies), trusted_modules=("torch.nn",))))  # fmt: skip


def _result(config: dict[str, Any], state: dict[str, torch.Tensor], export: Any = None) -> Any:
    return SimpleNamespace(config=config, export=export, state=SimpleNamespace(tensors=state))


def _repo_model(tmp_path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
    _, config, state_path, export = record_with_export(tmp_path, (torch.randn(1, 3, 5, 5),))
    return config, load_file(str(state_path)), export


def test_repo_class_whose_export_failed_cannot_be_locked_under_trusted_and_export(tmp_path: Path) -> None:
    config, state, _ = _repo_model(tmp_path)
    config["export_error"] = ERROR
    reason = _unloadable(_ctx(["trusted", "export"]), _result(config, state))
    assert reason is not None
    assert ERROR in reason and "(trusted)" in reason and "nothing was recorded" in reason
    assert POSITIONAL_INPUTS_ADVICE in reason and "list" in reason and "source strategy" in reason
    assert _unloadable(_ctx(["export"]), _result(config, state)) is not None  # no other strategy: "none"


def test_lock_stays_possible_when_the_policy_can_still_rebuild(tmp_path: Path) -> None:
    config, state, export = _repo_model(tmp_path)
    failed = {**config, "export_error": ERROR}
    assert _unloadable(_ctx(["trusted", "export", "source"]), _result(failed, state)) is None  # source runs it
    assert _unloadable(_ctx(["trusted", "export"]), _result(config, state, export)) is None  # exported fine
    assert _unloadable(_ctx(["trusted", "export"]), _result(config, state)) is None  # no export was wanted
    # a torch.nn model: trusted rebuilds it whatever the export did
    with _record.recording():
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    plain = _record.describe(model, tree=tmp_path)
    tensors, aliases = collect_tensors(model)
    plain["aliases"] = aliases
    plain["export_error"] = ERROR
    assert _unloadable(_ctx(["trusted", "export"]), _result(plain, dict(tensors))) is None


def test_load_refusal_after_a_failed_export_does_not_ask_for_example_inputs_again(tmp_path: Path) -> None:
    config, state, _ = _repo_model(tmp_path)
    config["export_error"] = ERROR
    with pytest.raises(ReconstructRefused) as excinfo:
        reconstruct(config=config, state=state, export=None, strategies=["trusted", "export"],
                    trusted_modules=["torch.nn"], tree=None)  # fmt: skip
    message = str(excinfo.value)
    assert f"export: torch.export failed in the sandbox: {ERROR}" in message
    assert "pass example_inputs=(tensor" not in message, message
    assert "Check that the example inputs are what the model's forward takes" in message
    assert "separate positional arguments" in message and "source strategy" in message


YOLO_LIKE = """
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.Upsample(scale_factor=2.0)

    def forward(self, x):
        return self.up(self.conv(x))
"""


def _yolo_like(tmp_path: Path, *, index: bool) -> tuple[dict[str, Any], dict[str, torch.Tensor], Any]:
    """A repo class exported fine; with ``index``, YOLOP's ``block_.index = i`` set on its parameter-free
    ``nn.Upsample`` after construction."""
    src = tmp_path / "repo" / "yolo_like.py"
    src.parent.mkdir(parents=True)
    src.write_text(YOLO_LIKE)
    spec = importlib.util.spec_from_file_location("yolo_like_for_lock_test", src)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        with _record.recording():
            model = module.Net()
        if index:
            model.up.index = 1
        config = _record.describe(model.eval(), tree=src.parent)
        tensors, aliases = collect_tensors(model)
        config["aliases"] = aliases
        package = export_program(model, (torch.randn(1, 3, 6, 6),), tensors, aliases)
    finally:
        sys.modules.pop(spec.name, None)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    return json.loads(json.dumps(config)), dict(tensors), export


def test_exported_program_the_parent_would_refuse_cannot_be_locked(tmp_path: Path) -> None:
    """hustvl/YOLOP (real-code round 7): torch.export succeeds, but the layers carry attributes set after
    construction on parameter-free children (``m.inplace = True``, ``block_.index``) that the exported
    module cannot carry. ``lock -e`` pinned such outputs and every load was refused; now the lock is
    refused with the load's reason (the rebuild a load makes, no repository code run)."""
    config, state, export = _yolo_like(tmp_path / "plain", index=False)
    assert _unloadable(_ctx(["trusted", "export"]), _result(config, state, export)) is None
    config, state, export = _yolo_like(tmp_path / "indexed", index=True)
    reason = _unloadable(_ctx(["trusted", "export"]), _result(config, state, export))
    assert reason is not None and reason.startswith("every load would be refused, so nothing was recorded"), reason
    assert "module up: attributes were set on this submodule after construction" in reason, reason
    assert "source strategy" in reason, reason
    # a policy listing source rebuilds it by re-running the repository's code: the lock is allowed
    assert _unloadable(_ctx(["trusted", "export", "source"]), _result(config, state, export)) is None
