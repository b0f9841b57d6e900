"""The ``source`` strategy: the entrypoint re-run from the tree under a private prefix, isolated, checked."""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from securehub.errors import ReconstructMismatch, ReconstructRefused
from securehub.reconstruct.rebuild import SourceCall, reconstruct
from securehub.reconstruct.source_guard import ArtifactSource
from securehub.sandbox.child import record as _record
from securehub.sandbox.child.result import collect_tensors, write_state

PLAIN_NAMES = ("utils", "models", "hubconf")


def make_tree(root: Path, width: int, scale: float) -> Path:
    tree = root / f"tree-{width}"
    (tree / "models").mkdir(parents=True)
    (tree / "utils.py").write_text(f"WIDTH = {width}\nSCALE = {scale}\n")
    (tree / "models" / "__init__.py").write_text("from .net import Net\n")
    (tree / "models" / "net.py").write_text(
        "import torch\nfrom torch import nn\nimport utils\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, n_in):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(n_in, utils.WIDTH)\n"
        "        self.register_buffer('offset', torch.full((utils.WIDTH,), 0.5), persistent=False)\n"
        "    def forward(self, x):\n"
        "        import utils as u  # a lazy import must also resolve to this tree\n"
        "        return self.fc(x) * u.SCALE + self.offset\n"
    )
    (tree / "hubconf.py").write_text("from models import Net\n\ndef net(**kw):\n    return Net(3)\n")
    return tree


X = torch.randn(2, 3)


def net_call(tmp_path: Path) -> SourceCall:
    """The sandbox's call of ``net()``; it fetched no artifacts."""
    return SourceCall("net", (), {}, ArtifactSource((), {}, lambda sha: tmp_path / "no-blobs" / sha))


def record_in_child_style(tree: Path, tmp_path: Path) -> tuple[torch.Tensor, dict[str, Any], Path]:
    """Import hubconf the way the child does (tree on sys.path), record, then clean up everything.

    Returns the original model's output on ``X`` (computed while the child-style imports work).
    """
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    name = f"_securehub_hubconf_{uuid.uuid4().hex}"
    try:
        sys.path.insert(0, str(tree))
        spec = importlib.util.spec_from_file_location(name, tree / "hubconf.py")
        assert spec is not None and spec.loader is not None
        hub = importlib.util.module_from_spec(spec)
        sys.modules[name] = hub
        spec.loader.exec_module(hub)
        torch.manual_seed(0)
        with _record.recording():
            model = hub.net()
        config = _record.describe(model.eval(), tree=tree)
        tensors, aliases = collect_tensors(model)
        config["aliases"] = aliases
        state = tmp_path / f"{tree.name}.safetensors"
        write_state(tensors, state)
        with torch.no_grad():
            expected = model(X)
    finally:
        sys.path[:] = saved_path
        for key in set(sys.modules) - saved_modules:
            del sys.modules[key]
    return expected, json.loads(json.dumps(config)), state


def test_two_trees_with_their_own_utils_do_not_collide(tmp_path: Path) -> None:
    tree_a, tree_b = make_tree(tmp_path, 4, 2.0), make_tree(tmp_path, 6, -1.0)
    orig_a, config_a, state_a = record_in_child_style(tree_a, tmp_path)
    orig_b, config_b, state_b = record_in_child_style(tree_b, tmp_path)
    assert config_a["root"]["class"] == "models.net:Net"
    for name in PLAIN_NAMES:
        assert name not in sys.modules

    kw: dict[str, Any] = {
        "export": None, "strategies": ["trusted", "export", "source"], "trusted_modules": ["torch.nn"]
    }  # fmt: skip
    call = net_call(tmp_path)
    model_a, strategy_a = reconstruct(config=config_a, state_path=state_a, tree=tree_a, source_call=call, **kw)
    model_b, strategy_b = reconstruct(config=config_b, state_path=state_b, tree=tree_b, source_call=call, **kw)
    assert strategy_a == strategy_b == "source"
    with torch.no_grad():
        assert torch.equal(model_a(X), orig_a) and orig_a.shape == (2, 4)
        assert torch.equal(model_b(X), orig_b) and orig_b.shape == (2, 6)
    for name in PLAIN_NAMES:
        assert name not in sys.modules, f"{name} leaked into sys.modules"
    private = {k.split(".")[0] for k in sys.modules if k.startswith("_securehub_src_")}
    assert {type(model_a).__module__.split(".")[0], type(model_b).__module__.split(".")[0]} <= private
    assert type(model_a).__module__ != type(model_b).__module__


def test_plain_named_user_module_is_not_used_or_replaced(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    sentinel = type(sys)("utils")
    sentinel.WIDTH = 999  # type: ignore[attr-defined]
    sys.modules["utils"] = sentinel
    try:
        model, _ = reconstruct(
            config=config, state_path=state, export=None, strategies=["source"], trusted_modules=["torch.nn"],
            tree=tree, source_call=net_call(tmp_path),
        )  # fmt: skip
        assert model(torch.randn(1, 3)).shape == (1, 4)
        assert sys.modules["utils"] is sentinel
    finally:
        del sys.modules["utils"]


def test_shipped_pycache_is_not_used(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    # A bytecode file the source does not match (unchecked-hash pycs are used without looking at the source).
    import py_compile

    evil = tmp_path / "evil_utils.py"
    evil.write_text("raise RuntimeError('bytecode from the repository was executed')\n")
    pyc = tree / "__pycache__" / f"utils.{sys.implementation.cache_tag}.pyc"
    py_compile.compile(
        str(evil), cfile=str(pyc), dfile=str(tree / "utils.py"),
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )  # fmt: skip
    model, _ = reconstruct(
        config=config, state_path=state, export=None, strategies=["source"], trusted_modules=["torch.nn"], tree=tree,
        source_call=net_call(tmp_path),
    )  # fmt: skip
    assert model(torch.randn(1, 3)).shape == (1, 4)


def test_source_not_tried_unless_listed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    with pytest.raises(ReconstructRefused) as exc:
        reconstruct(
            config=config, state_path=state, export=None, strategies=["trusted", "export"],
            trusted_modules=["torch.nn"], tree=tree, source_call=net_call(tmp_path),
        )  # fmt: skip
    assert "source: not allowed by the policy" in str(exc.value)
    assert "models" not in sys.modules and "utils" not in sys.modules


def test_source_without_the_call_to_rerun_does_not_apply(tmp_path: Path) -> None:
    """The constructor replay is the trusted strategy's; source only ever re-runs the entrypoint."""
    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    with pytest.raises(ReconstructRefused, match="source: no entrypoint call to re-run"):
        reconstruct(
            config=config, state_path=state, export=None, strategies=["source"], trusted_modules=["torch.nn"],
            tree=tree,
        )  # fmt: skip


def test_state_differing_in_one_value_is_a_mismatch(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    tensors = load_file(str(state))
    tensors["fc.bias"] = tensors["fc.bias"].clone()
    tensors["fc.bias"][0] += 1.0
    save_file(tensors, str(state))
    with pytest.raises(ReconstructMismatch, match=r"fc\.bias \(values differ\)"):
        reconstruct(
            config=config, state_path=state, export=None, strategies=["source"], trusted_modules=["torch.nn"],
            tree=tree, source_call=net_call(tmp_path),
        )  # fmt: skip


def test_rerun_leaves_the_callers_rng_state_unchanged(tmp_path: Path) -> None:
    import random

    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    torch.manual_seed(1234)
    random.seed(1234)
    torch_before, py_before = torch.get_rng_state(), random.getstate()
    reconstruct(
        config=config, state_path=state, export=None, strategies=["source"], trusted_modules=["torch.nn"],
        tree=tree, source_call=net_call(tmp_path),
    )  # fmt: skip
    assert torch.equal(torch.get_rng_state(), torch_before)
    assert random.getstate() == py_before


@pytest.mark.parametrize("how", ["append", "rebind"])
def test_rerun_leaves_the_import_path_as_it_was(tmp_path: Path, how: str) -> None:
    """NVIDIA's hubconf appends ``os.path.join(sys.path[0], 'PyTorch/Detection/SSD')``: here ``sys.path[0]`` is
    not the tree, so the entry would name a directory under the caller's cwd; it stayed in sys.path before."""
    tree = make_tree(tmp_path, 4, 2.0)
    _, config, state = record_in_child_style(tree, tmp_path)
    edit = {
        "append": "import os, sys\nsys.path.append(os.path.join(sys.path[0], 'PyTorch/Detection/SSD'))\n",
        "rebind": "import sys\nsys.path = ['/repo-chosen'] + sys.path\n",
    }[how]
    (tree / "hubconf.py").write_text(edit + (tree / "hubconf.py").read_text())
    path_list, before = sys.path, list(sys.path)
    model, strategy = reconstruct(
        config=config, state_path=state, export=None, strategies=["source"], trusted_modules=["torch.nn"],
        tree=tree, source_call=net_call(tmp_path),
    )  # fmt: skip
    assert strategy == "source" and model(X).shape == (2, 4)  # its lazy import still resolves to the tree
    assert sys.path is path_list and sys.path == before
