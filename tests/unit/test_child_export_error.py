"""The child's ``export_error`` text (round 11): a TorchScript submodule is named as the likely cause."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from securehub.sandbox.child.runtime import _export_error


def _net(scripted: bool) -> nn.Module:
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    if scripted:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            net[2] = torch.jit.script(net[2])
    return net


def test_export_error_names_scripted_submodules_and_what_to_do() -> None:
    said = _export_error(_net(True), TypeError("Linear.forward() takes 2 positional arguments but 3 were given"))
    assert said.startswith("TypeError: Linear.forward() takes 2 positional arguments but 3 were given; ")
    assert "the model holds TorchScript submodules (2), which torch.export does not trace" in said
    assert "leaves them unscripted" in said and "source strategy" in said


def test_export_error_of_an_eager_model_is_the_exception_alone() -> None:
    assert _export_error(_net(False), ValueError("bad")) == "ValueError: bad"
