"""Constructor recording (_record): what the child tells the parent about a module tree."""

from __future__ import annotations

import copy
import functools
import json

import torch
from torch import nn

from securehub.sandbox.child.record import describe, recording


def _json_roundtrip(doc: dict) -> dict:
    return json.loads(json.dumps(doc, allow_nan=False))


def test_records_args_kwargs_and_module_refs():
    with recording():
        model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(inplace=True))
    doc = _json_roundtrip(describe(model))
    root = doc["root"]
    assert doc["format"] == "securehub-config/1"
    assert root["args"] == [{"$module": {"ref": "0"}}, {"$module": {"ref": "1"}}]
    assert root["children"]["0"]["args"] == [4, 3]
    assert root["children"]["0"]["kwargs"] == {"bias": False}
    assert root["children"]["1"]["kwargs"] == {"inplace": True}
    assert root["children"]["0"]["dtype"] == "float32"
    assert all(n["reconstructible"] for n in [root, *root["children"].values()])


def test_tagged_values():
    with recording():
        conv = nn.Conv2d(3, 4, (3, 3), dtype=torch.float64, device=torch.device("cpu"))
        drop = nn.Dropout(p=float("nan"))
        act = nn.Sequential(nn.Flatten(start_dim=1))
    node = describe(conv)["root"]
    assert node["args"] == [3, 4, {"$tuple": [3, 3]}]
    assert node["kwargs"] == {"dtype": {"$dtype": "float64"}, "device": {"$device": "cpu"}}
    assert describe(drop)["root"]["kwargs"] == {"p": {"$float": "nan"}}
    assert describe(act)["root"]["children"]["0"]["kwargs"] == {"start_dim": 1}


def test_class_and_function_arguments_are_import_paths():
    class Holder(nn.Module):
        def __init__(self, act, fn):
            super().__init__()
            self.act, self.fn = act(), fn

    with recording():
        h = Holder(nn.ReLU, torch.nn.functional.relu)
    node = describe(h)["root"]
    assert node["args"] == [{"$class": "torch.nn.modules.activation:ReLU"}, {"$function": "torch.nn.functional:relu"}]
    assert node["origin"]["kind"] == "other"  # defined in this test file, not site-packages


def test_origin_of_each_node_names_tree_site_and_other_classes(tmp_path, monkeypatch):
    """Origins are worked out once per class in a describe (issue 11: 421 nodes cost 0.4 s of realpaths);
    every node still gets its own, correct origin, and a repo class defined under ``tree`` is ``tree``."""
    import importlib
    import sys

    (tmp_path / "blocks.py").write_text(
        "from torch import nn\n"
        "class Block(nn.Module):\n"
        "    def __init__(self, n):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(n, n)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    blocks = importlib.import_module("blocks")
    try:
        with recording():
            model = nn.Sequential(*[blocks.Block(2) for _ in range(3)], nn.ReLU())
        nodes = describe(model, tree=tmp_path)["root"]["children"]
    finally:
        sys.modules.pop("blocks", None)
    for i in "012":
        assert nodes[i]["origin"] == {"kind": "tree", "path": "blocks.py", "resolves": True}
        assert nodes[i]["children"]["fc"]["origin"]["kind"] == "site"
        assert nodes[i]["children"]["fc"]["origin"]["path"].endswith("torch/nn/modules/linear.py")
    assert nodes["3"]["origin"]["path"].endswith("torch/nn/modules/activation.py")
    assert nodes["0"]["origin"] is not nodes["1"]["origin"]  # one dict per node, never shared
    outside = describe(model, tree=tmp_path / "elsewhere")["root"]["children"]
    assert outside["0"]["origin"]["kind"] == "other"  # the tree is resolved per describe, not cached


def test_wraps_wrapper_in_the_originals_place_records_the_originals_path():
    """torch swaps ``torch.manual_seed`` for a functools.wraps wrapper once torch._dynamo is imported
    (the child's use_deterministic_algorithms does): the recorded path names the original, which the
    parent then checks against its allowlist -- not "not importable", which would hide the attempt."""
    from securehub.sandbox.child.record import _import_path

    def original() -> None: ...

    original.__module__ = __name__
    original.__qualname__ = "_PATCHED_TARGET"

    @functools.wraps(original)
    def wrapper() -> None: ...

    globals()["_PATCHED_TARGET"] = original
    try:
        assert _import_path(wrapper) == f"{__name__}:_PATCHED_TARGET"
        assert _import_path(original) == f"{__name__}:_PATCHED_TARGET"

        @functools.wraps(wrapper)  # two levels: only one is unwrapped
        def outer() -> None: ...

        assert _import_path(outer) is None

        def unrelated() -> None: ...

        unrelated.__module__, unrelated.__qualname__ = __name__, "_PATCHED_TARGET"
        unrelated.__wrapped__ = wrapper  # type: ignore[attr-defined]
        assert _import_path(unrelated) is None  # wraps something other than what the path names
    finally:
        del globals()["_PATCHED_TARGET"]


def test_unencodable_argument_marks_node_not_reconstructible():
    class TakesTensor(nn.Module):
        def __init__(self, t):
            super().__init__()
            self.register_buffer("t", t)

    with recording():
        m = nn.Sequential(TakesTensor(torch.zeros(2)))
    root = describe(m)["root"]
    child = root["children"]["0"]
    assert child["reconstructible"] is False
    assert "args[0]" in child["reason"] and "Tensor" in child["reason"]
    assert "args" not in child
    assert root["reconstructible"] is True


def test_module_not_built_under_recording_is_not_reconstructible():
    m = nn.Linear(1, 1)
    node = describe(m)["root"]
    assert node["reconstructible"] is False
    assert "not recorded" in node["reason"]


def test_spoofed_module_name_is_visible():
    class Linear(nn.Module):
        pass

    Linear.__module__ = "torch.nn.modules.linear"
    Linear.__qualname__ = "Linear"
    with recording():
        fake = Linear()
    node = describe(fake)["root"]
    assert node["class"] == "torch.nn.modules.linear:Linear"
    assert node["origin"]["resolves"] is False


def test_deepcopy_keeps_the_original_constructor_call():
    with recording():
        enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, dim_feedforward=16), 2, enable_nested_tensor=False)
    root = describe(enc)["root"]
    layer0 = root["children"]["layers"]["children"]["0"]
    assert layer0["args"] == [8, 2] and layer0["kwargs"] == {"dim_feedforward": 16}
    assert root["args"][0]["$module"]["node"]["class"].endswith(":TransformerEncoderLayer")


def test_module_created_without_init_is_flagged():
    with recording():
        ghost = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(ghost)
    node = describe(ghost)["root"]
    assert node["reconstructible"] is False


def test_mutation_after_construction():
    with recording():
        net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
        net[0].out_features = 5
        net[1] = nn.Linear(2, 3)
        del net._modules["0"]
    root = describe(net)["root"]
    # a replaced child is replayable (its own constructor call is recorded), and so is a removed one
    assert root["mutated"] == []
    assert root["replay"] == {"children": ["1"], "attrs": {}, "removed": {"0": "deleted"}}


class _Fusable(nn.Module):
    """yolov5's Conv: ``fuse()`` folds the BatchNorm and rebinds ``forward`` to ``forward_fuse``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) + 1

    def forward_fuse(self, x):
        return self.conv(x)


def test_forward_rebound_to_an_own_method_is_behaviour_not_a_data_attribute():
    """Not an ``attribute ... set after construction`` (which export refuses to drop): the exported
    graph traces the rebound forward, like a hook; a constructor replay (trusted) still cannot."""
    with recording():
        m = _Fusable()
        m.forward = m.forward_fuse
    root = describe(m)["root"]
    assert root["mutated"] == [
        "forward rebound to _Fusable.forward_fuse after construction (behaviour only: an exported program "
        "traces it, a constructor replay cannot)"
    ]
    assert "replay" not in root  # nothing to replay: the rebound forward is not data


def test_forward_set_to_anything_else_stays_a_refused_attribute():
    with recording():
        other, lam, foreign = _Fusable(), _Fusable(), _Fusable()
        other.forward = _Fusable().forward_fuse  # bound to another module
        lam.forward = lambda x: x
        foreign.forward = nn.Identity().forward  # another class's method
    for m in (other, lam, foreign):
        (reason,) = describe(m)["root"]["mutated"]
        assert reason.startswith("attribute 'forward' set after construction shadows _Fusable.forward"), reason


def test_recording_restores_classes_and_is_inert_afterwards():
    init = nn.Linear.__init__
    with recording():
        nn.Linear(1, 1)
    assert nn.Linear.__init__ is init
    plain = nn.Linear(3, 2)
    assert "_securehub_ctor_record" not in plain.__dict__
    assert copy.deepcopy(plain).weight.shape == (2, 3)


def test_builtin_function_is_recorded_under_its_public_path():
    import torch.nn.functional as F  # noqa: N812

    assert F.gelu.__module__ == "torch._C._nn"  # the private home that would fall outside torch.nn
    with recording():
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, activation=F.gelu)
    assert describe(layer)["root"]["kwargs"]["activation"] == {"$function": "torch.nn.functional:gelu"}


def test_builtin_function_only_in_torch_is_recorded_under_torch():
    class Takes(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

    with recording():
        m = Takes(torch.tanh)
    assert describe(m)["root"]["args"] == [{"$function": "torch:tanh"}]


def test_frozen_parameters_are_listed():
    with recording():
        m = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    m[0].weight.requires_grad_(False)
    doc = _json_roundtrip(describe(m))
    assert doc["frozen"] == ["0.weight"]
    assert describe(nn.Linear(1, 1))["frozen"] == []


def test_deepcopy_of_a_parametrized_module_works_while_recording():
    """torch's parametrized classes deep-copy with ``self.__new__(self.__class__)``: the recorder's
    ``__new__`` hook must behave as a static method there (an EMA copy of a weight-normed model in a
    hubconf failed the load with ``entrypoint-error`` before)."""
    with recording():
        layer = nn.utils.parametrizations.weight_norm(nn.Linear(4, 3))
        clone = copy.deepcopy(layer)
        plain = nn.Linear(2, 2)
    x = torch.randn(2, 4)
    assert torch.equal(clone(x), layer(x)) and clone.parametrizations.weight.original1 is not layer.weight
    assert type(plain).__new__ is type(layer).__new__  # one hook, still installed for every Module


def test_origins_name_no_machines_directories(tmp_path, monkeypatch):
    """Red team 13: the config is pinned (config_sha256), so an origin's path must be the same on a CI runner
    and a laptop: relative to the sys.path directory it was imported from (an editable install's source
    directory, Debian's dist-packages: ``site``), and a class made by exec keeps its pseudo file name
    instead of one resolved against the child's (per-run) working directory."""
    import importlib
    import sys

    configs = []
    for machine in ("ci", "laptop"):
        for root in ("src", "dist-packages"):
            pkg = tmp_path / machine / root / f"lib_{root[:3]}"
            pkg.mkdir(parents=True)
            (pkg / "__init__.py").write_text("")
            (pkg / "layers.py").write_text(
                "from torch import nn\nclass Layer(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            )
            monkeypatch.syspath_prepend(str(tmp_path / machine / root))
        ns: dict = {"nn": nn}
        exec("class Made(nn.Module):\n    def __init__(self):\n        super().__init__()\n", ns)  # noqa: S102
        monkeypatch.chdir(tmp_path / machine)
        try:
            src = importlib.import_module("lib_src.layers")
            dist = importlib.import_module("lib_dis.layers")
            with recording():
                model = nn.Sequential(src.Layer(), dist.Layer(), ns["Made"]())
            configs.append(describe(model, tree=tmp_path / "tree")["root"]["children"])
        finally:
            for name in ("lib_src", "lib_src.layers", "lib_dis", "lib_dis.layers"):
                sys.modules.pop(name, None)
            monkeypatch.undo()
    ci, laptop = configs
    assert [ci[i]["origin"] for i in "012"] == [
        {"kind": "other", "path": "lib_src/layers.py", "resolves": True},
        {"kind": "site", "path": "lib_dis/layers.py", "resolves": True},
        {"kind": "other", "path": "<string>", "resolves": False},
    ]
    assert ci == laptop


def test_scripted_submodule_is_described_not_a_crash():
    """HiFi-GAN-style ``model.resblocks = torch.jit.script(model.resblocks)`` in an entrypoint: a
    TorchScript module's ``_modules`` (``OrderedModuleDict``) cannot be iterated directly, which made
    describe() raise KeyError: 0 and the child exit early (``sandbox-protocol``). It is described: the
    replacement is a replayed child, the scripted node a class outside torch.nn (never trusted)."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.blocks(x))

    with recording():
        net = Net()
        net.blocks = torch.jit.script(net.blocks)
    root = _json_roundtrip(describe(net))["root"]
    scripted = root["children"]["blocks"]
    assert scripted["class"] == "torch.jit._script:RecursiveScriptModule"
    assert root["replay"]["children"] == ["blocks"]
    assert set(scripted["children"]) == {"0", "1"}
