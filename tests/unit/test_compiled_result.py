"""A ``torch.compile``'d entrypoint result: no forward pass in the sandbox, one message saying why.

The child's :func:`_compiled` names an ``OptimizedModule`` (and what it wraps) and nothing else; the
parent's advice does not then ask for example inputs (they would not help), while other export errors
keep theirs. End to end: tests/integration/test_real_hub_zoo8.py::test_compiled_model_is_refused_without_running_it.
"""

from __future__ import annotations

import torch
from torch import nn

from securehub.reconstruct.rebuild import _advice
from securehub.sandbox.child.runtime import _compiled
from securehub.sandbox.wire.messages import COMPILED_EXPORT_ERROR


def test_compiled_module_is_named_without_being_called() -> None:
    inner = nn.Linear(2, 2)
    calls: list[int] = []
    inner.register_forward_pre_hook(lambda *_: calls.append(1))
    note = _compiled(torch.compile(inner))  # lazy: compiles at the first call, which never happens
    assert note is not None and note.startswith(COMPILED_EXPORT_ERROR), note
    assert "OptimizedModule wrapping torch.nn.modules.linear:Linear" in note and "uncompiled" in note
    assert calls == []


def test_eager_modules_are_not_compiled() -> None:
    assert _compiled(nn.Linear(2, 2)) is None
    assert _compiled(nn.Sequential(nn.ReLU())) is None


def test_advice_for_a_compiled_module_does_not_ask_for_inputs() -> None:
    compiled = {"export_error": f"{COMPILED_EXPORT_ERROR} (OptimizedModule wrapping net:SmallNet); ..."}
    assert _advice(compiled, None, ["trusted", "export"]) == ""
    failed = {"export_error": "TypeError: too many positional arguments"}
    assert "Check that the example inputs" in _advice(failed, None, ["trusted", "export"])
    assert "pass example_inputs" in _advice({}, None, ["trusted", "export"])
