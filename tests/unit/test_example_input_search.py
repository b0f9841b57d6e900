"""``--example-input auto``: the child's candidate order and budget, and the parent's checks (pure logic).

The search itself runs in the sandbox child (end to end: tests/integration/test_example_input_auto.py);
here its functions run on local modules, and the parent-side parsers on hand-built frames.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.api import format_example_inputs
from securehub.config.lockfile import MAX_EXAMPLE_INPUTS, InputSpec
from securehub.errors import SecureHubError, UsageError
from securehub.pipeline.lock_entrypoints import _wants_auto
from securehub.sandbox.child import inputs as ci
from securehub.sandbox.wire import messages as m


def _shapes(cands: list[ci.Candidate]) -> list[tuple[tuple[int, ...], str]]:
    return [(c[0].shape, c[0].dtype) for c in cands]


# ---------------------------------------------------------------------------------- candidate order


def test_candidates_start_with_the_model_hints_then_its_first_layer_then_the_fixed_list() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    model.default_cfg = {"input_size": (3, 40, 40)}  # type: ignore[assignment]

    shapes = _shapes(ci.candidates(model))

    assert shapes[0] == ((1, 3, 40, 40), "float32")
    assert shapes[1:4] == [((1, 3, 224, 224), "float32"), ((1, 3, 64, 64), "float32"), ((1, 3, 32, 32), "float32")]
    assert shapes[4:] == [((1, 1, 28, 28), "float32"), ((1, 16), "int64")]  # the rest of the fixed list
    assert len(shapes) == len(set(shapes))  # no candidate is tried twice


@pytest.mark.parametrize(
    ("layer", "first"),
    [
        (nn.Conv1d(7, 2, 3), ((1, 7, 128), "float32")),
        (nn.Conv3d(2, 2, 3), ((1, 2, 8, 224, 224), "float32")),
        (nn.Linear(12, 3), ((1, 12), "float32")),
        (nn.Embedding(100, 8), ((1, 16), "int64")),
    ],
    ids=["conv1d", "conv3d", "linear", "embedding"],
)
def test_first_leaf_layer_gives_the_first_candidate(layer: nn.Module, first: tuple[Any, ...]) -> None:
    model = nn.Sequential(nn.Dropout(), nn.Sequential(layer))
    assert _shapes(ci.candidates(model))[0] == first


def test_video_clip_candidates_find_a_head_pooling_eight_frames_at_224() -> None:
    """pytorchvideo's slow_r50 pools its last stage with an AvgPool3d((8, 7, 7)): only a clip of at
    least 8 frames at 224x224 passes its forward (16x112x112 and 8x32x32, the only clips tried
    before, left --example-input auto with nothing); 8 frames come before 16, the clip it is built for."""
    model = nn.Sequential(
        nn.Conv3d(3, 2, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3)),
        nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        nn.Conv3d(2, 2, (1, 3, 3), stride=(1, 8, 8), padding=(0, 1, 1)),
        nn.AvgPool3d((8, 7, 7)),
        nn.Flatten(),
    )
    cands = ci.candidates(model)
    assert _shapes(cands)[:4] == [
        ((1, 3, 8, 224, 224), "float32"),
        ((1, 3, 16, 224, 224), "float32"),
        ((1, 3, 16, 112, 112), "float32"),
        ((1, 3, 8, 32, 32), "float32"),
    ]
    found = ci.search(model, cands, budget_s=60.0)
    assert found is not None and found.specs == (InputSpec((1, 3, 8, 224, 224), "float32"),)
    # without the 224x224 clips nothing the search tries fits the (8, 7, 7) pool
    assert ci.search(model, cands[2:], budget_s=60.0) is None


def test_parametrized_layer_counts_as_a_leaf_layer() -> None:
    """``weight_norm`` via parametrizations gives the Linear a ``parametrizations`` child: still the first layer."""
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 5)), nn.ReLU(), nn.Linear(5, 2))
    assert _shapes(ci.candidates(model))[:3] == [
        ((1, 4), "float32"),
        ((1, 16, 4), "float32"),
        ((1, 5), "float32"),
    ]


class _Conv2dStaticSamePadding(nn.Conv2d):
    """lukemelas/EfficientNet-PyTorch's stem: the padding module a child of the conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, stride=2, bias=False)
        self.static_padding = nn.ZeroPad2d((0, 1, 0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.static_padding(x))


def test_conv_holding_its_padding_module_counts_as_a_leaf_layer() -> None:
    """Before round 13, ``efficientnet_b0(in_channels=1)`` found no input: every conv of the model holds a
    padding child, so the first "layer" was the head's Linear and the fixed candidates are 3-channel."""
    model = nn.Sequential(_Conv2dStaticSamePadding(1, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    shapes = _shapes(ci.candidates(model))
    assert shapes[0] == ((1, 1, 224, 224), "float32")
    found = ci.search(model.eval(), ci.candidates(model), budget_s=60.0)
    assert found is not None and found.specs == (InputSpec((1, 1, 224, 224), "float32"),)
    # an Identity child is as stateless; a child with parameters is a layer of its own, found on its own
    ident = nn.Conv2d(2, 4, 3)
    ident.add_module("static_padding", nn.Identity())
    assert _shapes(ci.candidates(nn.Sequential(ident)))[0] == ((1, 2, 224, 224), "float32")
    stateful = nn.Conv2d(2, 4, 3)
    stateful.add_module("norm", nn.BatchNorm2d(2))  # buffers and parameters: not a stateless leaf
    assert _shapes(ci.candidates(nn.Sequential(stateful)))[0] != ((1, 2, 224, 224), "float32")


def test_layer_with_other_children_is_not_a_leaf_layer() -> None:
    outer = nn.Linear(9, 9)
    outer.add_module("inner", nn.Linear(3, 3))  # a Linear subclass-like container: its child is the layer
    assert _shapes(ci.candidates(nn.Sequential(outer)))[0] == ((1, 3), "float32")


def test_linear_also_gives_a_token_sequence_candidate() -> None:
    assert ((1, 16, 12), "float32") in _shapes(ci.candidates(nn.Linear(12, 3)))


def test_patch_embed_img_size_and_image_size_attributes_are_hints() -> None:
    class Vit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 8, 16, stride=16)
            self.patch_embed.img_size = (96, 96)  # type: ignore[assignment]

    model = Vit()
    assert _shapes(ci.candidates(model))[0] == ((1, 3, 96, 96), "float32")
    model.image_size = 48  # type: ignore[assignment]
    assert _shapes(ci.candidates(model))[0] == ((1, 3, 48, 48), "float32")


def test_hints_beyond_the_lock_bounds_or_malformed_are_skipped_not_allocated() -> None:
    """A hostile hint (img_size 10**6, negative, a string) never becomes a candidate."""

    class Liar(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.default_cfg = {"input_size": (3, 10**6, 10**6)}
            self.img_size = -5
            self.input_size = "224"
            self.fc = nn.Linear(4, 2)

        @property
        def image_size(self) -> int:
            raise RuntimeError("a hint that cannot be read is no hint")

    shapes = _shapes(ci.candidates(Liar()))
    assert shapes[0] == ((1, 4), "float32")
    assert all(max(s) < 10**6 for s, _ in shapes)


def test_embedding_with_a_single_id_gives_no_id_candidate() -> None:
    """Ids are filled with 0/1: a vocabulary of 1 would be out of range, so the layer gives nothing."""
    shapes = _shapes(ci.candidates(nn.Embedding(1, 4)))
    assert shapes == _shapes(list(ci._FIXED))


def test_candidates_are_capped() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    model.default_cfg = {"input_size": (3, 40, 40)}  # type: ignore[assignment]
    assert len(ci.candidates(model, limit=2)) == 2
    assert ci.MAX_HINT_CANDIDATES < ci.MAX_CANDIDATES


# ---------------------------------------------------------------------------------- search


class _OnlyTokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, _ = x.shape  # needs (batch, tokens, features)
        return self.fc(x)


def test_search_returns_the_first_candidate_the_forward_accepts_in_eval_mode() -> None:
    model = _OnlyTokens().train()
    found = ci.search(model, ci.candidates(model), budget_s=60)
    assert found is not None
    assert found.specs == (InputSpec((1, 16, 12), "float32"),)
    assert found.exported is None and not model.training


def test_search_tries_the_next_candidate_when_export_fails_and_caps_exports() -> None:
    model = nn.Linear(12, 3)
    tried: list[tuple[int, ...]] = []

    def export(inputs: tuple[torch.Tensor, ...]) -> str | None:
        tried.append(tuple(inputs[0].shape))
        return "program" if inputs[0].dim() == 3 else None

    found = ci.search(model, ci.candidates(model), budget_s=60, export=export)
    assert found is not None and found.exported == "program"
    assert tried == [(1, 12), (1, 16, 12)]

    never: list[object] = []
    anything = nn.Identity()  # every fixed candidate passes the forward; none exports
    assert ci.search(anything, ci.candidates(anything), budget_s=60, export=lambda x: never.append(x)) is None
    assert len(never) == ci.MAX_EXPORTS


def test_search_stops_when_its_budget_is_spent() -> None:
    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            time.sleep(0.2)
            raise ValueError("never fits")

    model = Slow()
    start = time.monotonic()
    assert ci.search(model, list(ci._FIXED), budget_s=0.1) is None
    assert time.monotonic() - start < 0.2 * 2.5  # stopped after the first candidate, not all four


def test_has_repo_class(tmp_path: Path) -> None:
    assert not ci.has_repo_class(nn.Sequential(nn.Linear(2, 2)), tmp_path)
    cls = type("Net", (nn.Module,), {"__module__": "_securehub_hubconf_abc"})
    assert ci.has_repo_class(nn.Sequential(cls()), tmp_path)


# ---------------------------------------------------------------------------------- parent side


def test_parse_found_inputs_accepts_bounded_specs() -> None:
    meta = {"config": {}, "found_inputs": [{"shape": [1, 3, 224, 224], "dtype": "float32"}]}
    assert m.parse_found_inputs(meta, "auto") == (InputSpec((1, 3, 224, 224), "float32"),)
    assert m.parse_found_inputs({"config": {}}, "auto") is None


@pytest.mark.parametrize(
    "found",
    [
        [{"shape": [2**40, 2**40], "dtype": "float32"}],
        [{"shape": [-1], "dtype": "float32"}],
        [{"shape": [1.0], "dtype": "float32"}],
        [{"shape": [False], "dtype": "float32"}],
        [{"shape": [1], "dtype": "object"}],
        [{"shape": [1], "dtype": 7}],
        [{"shape": [1], "dtype": "float32", "x": 1}],
        [{"shape": [1]}],
        [{"shape": [1], "dtype": "float32"}] * (MAX_EXAMPLE_INPUTS + 1),
        [{"shape": [1 << 24], "dtype": "float32"}] * 3,
        [],
        {"shape": [1], "dtype": "float32"},
        ["1x4"],
    ],
)
def test_parse_found_inputs_refuses_hostile_values(found: object) -> None:
    with pytest.raises(SecureHubError) as info:
        m.parse_found_inputs({"config": {}, "found_inputs": found}, "auto")
    assert info.value.code == "sandbox-protocol"


def test_parse_found_inputs_refuses_an_unrequested_report() -> None:
    with pytest.raises(SecureHubError) as info:
        m.parse_found_inputs({"config": {}, "found_inputs": [{"shape": [1], "dtype": "float32"}]}, "off")
    assert info.value.code == "sandbox-protocol"


def test_result_meta_admits_found_inputs_and_nothing_else() -> None:
    config = {"format": m.CONFIG_FORMAT, "root": {}, "aliases": {}}
    with pytest.raises(SecureHubError):
        m.parse_result_config({"config": config, "inputs": []})


@pytest.mark.parametrize(
    "meta",
    [
        {"op": "load", "tree": "/t", "entrypoint": "e", "args": [], "kwargs": {}, "find_inputs": "yes"},
        {"op": "list", "tree": "/t", "args": [], "kwargs": {}, "find_inputs": "auto"},
        {"op": "load", "tree": "/t", "entrypoint": "e", "args": [], "kwargs": {}, "find_inputs": "auto",
         "has_example_inputs": True},
    ],
)  # fmt: skip
def test_call_request_find_inputs_is_schema_checked(meta: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="find_inputs"):
        m.CallRequest.from_meta(meta)


def test_call_request_find_inputs_round_trips() -> None:
    call = m.CallRequest(op="load", tree="/t", entrypoint="e", find_inputs="hint")
    assert m.CallRequest.from_meta(call.to_meta()).find_inputs == "hint"
    old_parent = {k: v for k, v in call.to_meta().items() if k != "find_inputs"}
    assert m.CallRequest.from_meta(old_parent).find_inputs == "off"


def test_example_input_auto_must_be_alone() -> None:
    assert _wants_auto(["auto"])
    assert not _wants_auto(["1x4:float32"])
    with pytest.raises(UsageError, match="alone"):
        _wants_auto(["auto", "1x4:float32"])


def test_load_refuses_an_example_inputs_string_other_than_auto() -> None:
    with pytest.raises(ValueError, match="'auto'"):
        securehub.load("owner/repo:v1", "m", example_inputs="automatic", verbose=False)  # type: ignore[arg-type]


def test_format_example_inputs_gives_cli_flags() -> None:
    specs = (InputSpec((1, 3, 224, 224), "float32"), InputSpec((1, 16), "int64"))
    assert format_example_inputs(specs) == "--example-input 1x3x224x224:float32 --example-input 1x16:int64"
