"""securehub.reconstruct.schema_dataclass builds exactly the schema objects torch's own converter builds.

The parent converts a checked program with its own walker (type hints resolved once per class) instead of
``torch._export.serde.serialize._dict_to_dataclass``; every class, field and value must be the same, for
programs using the schema's unions, optionals, lists, dicts, floats and symbolic sizes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch
from torch import nn
from torch._export.serde import serialize as serde
from torch._export.serde.schema import ExportedProgram as SerializedProgram
from torch._export.serde.union import _Union

from securehub.reconstruct.schema_dataclass import to_program


def _structure(obj: Any) -> Any:
    """Every object's class and fields, recursively (schema unions compare by identity otherwise)."""
    if isinstance(obj, _Union):  # one field is set: reading another raises
        return (type(obj).__qualname__, obj.type, _structure(obj.value))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return (type(obj).__qualname__, {f.name: _structure(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    if isinstance(obj, list):
        return [_structure(item) for item in obj]
    if isinstance(obj, dict):
        return {key: _structure(value) for key, value in obj.items()}
    return (type(obj).__name__, obj)


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.body(x), 1)) * 0.5


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8, eps=1e-6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, weights = self.attn(x, x, x, key_padding_mask=x[..., 0] > 10.0)
        return self.norm(out + x), weights


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 6, num_layers=2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return torch.clamp(out[:, -1], min=-1.5, max=float("inf"))


def _program_json(module: nn.Module, example: torch.Tensor, dynamic: bool) -> dict[str, Any]:
    shapes = ({0: torch.export.Dim("batch", min=1, max=64)},) if dynamic else None
    program = torch.export.export(module.eval(), (example,), dynamic_shapes=shapes)
    data: dict[str, Any] = json.loads(serde.serialize(program).exported_program.decode())
    return data


@pytest.mark.parametrize(
    ("module", "example", "dynamic"),
    [
        (_Conv(), torch.randn(2, 3, 8, 8), False),
        (_Conv(), torch.randn(2, 3, 8, 8), True),
        (_Attention(), torch.randn(2, 5, 8), True),
        (_Recurrent(), torch.randn(2, 3, 4), False),
    ],
    ids=["conv", "conv-dynamic-batch", "attention-dynamic-batch", "lstm"],
)
def test_schema_objects_equal_torchs_converter(module: nn.Module, example: torch.Tensor, dynamic: bool) -> None:
    data = _program_json(module, example, dynamic)
    ours = to_program(data)
    theirs = serde._dict_to_dataclass(SerializedProgram, data)  # type: ignore[no-untyped-call]
    assert isinstance(ours, SerializedProgram)
    assert _structure(ours) == _structure(theirs)
    assert serde._dataclass_to_dict(ours) == serde._dataclass_to_dict(theirs)  # type: ignore[no-untyped-call]


def test_an_unknown_union_field_is_a_type_error_not_a_silent_default() -> None:
    data = _program_json(_Conv(), torch.randn(1, 3, 8, 8), False)
    node = data["graph_module"]["graph"]["nodes"][0]
    node["inputs"][0]["arg"] = {"as_nothing_known": 1}
    with pytest.raises(KeyError):
        to_program(data)
