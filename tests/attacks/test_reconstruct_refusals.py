"""Hostile configs, states and exported programs the parent must refuse without side effects.

The config, state and program come from the sandbox child, i.e. from repository
code. Each test is named after the attack and checks the error code AND that
nothing the attacker asked for happened (canary files never written).
"""

from __future__ import annotations

import copy
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from securehub.errors import ReconstructMismatch, ReconstructRefused
from securehub.reconstruct.rebuild import reconstruct
from securehub.sandbox.child import record as _record
from securehub.sandbox.child.result import collect_tensors, export_program, write_state
from securehub.sandbox.wire.messages import ExportInfo, parse_export


def record(model_fn: Any, tmp_path: Path, tree: Path | None = None) -> tuple[dict[str, Any], Path]:
    with _record.recording():
        model = model_fn()
    config = _record.describe(model, tree=tree)
    tensors, aliases = collect_tensors(model)
    config["aliases"] = aliases
    state = tmp_path / "state.safetensors"
    write_state(tensors, state)
    return json.loads(json.dumps(config)), state


def run(config: dict[str, Any], state: Path, **kw: Any) -> tuple[nn.Module, str]:
    kw.setdefault("export", None)
    kw.setdefault("strategies", ["trusted", "export"])
    kw.setdefault("trusted_modules", ["torch.nn"])
    kw.setdefault("tree", None)
    return reconstruct(config=config, state_path=state, **kw)


@pytest.fixture
def linear(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    return record(lambda: nn.Linear(3, 2), tmp_path)


# --------------------------------------------------------------------------- classes and functions


@pytest.mark.parametrize("trusted", [["torch.nn"], ["torch.nn", "os"]])
def test_config_names_os_system_as_root_class(
    linear: tuple[dict[str, Any], Path], tmp_path: Path, trusted: list[str]
) -> None:
    config, state = linear
    canary = tmp_path / "canary"
    config["root"]["class"] = "os:system"
    config["root"]["args"] = [f"touch {canary}"]
    config["root"]["kwargs"] = {}
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state, trusted_modules=trusted)
    assert exc.value.code == "reconstruct-refused"
    assert "os:system" in str(exc.value)
    assert not canary.exists()


def test_builtins_eval_as_function_argument(linear: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    config, state = linear
    canary = tmp_path / "canary"
    config["root"]["kwargs"]["bias"] = {"$function": "builtins:eval"}
    config["root"]["args"].append(f"open({str(canary)!r}, 'w')")
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state, trusted_modules=["torch.nn"])
    assert exc.value.code == "reconstruct-refused" and "builtins:eval" in str(exc.value)
    assert not canary.exists()


def test_os_system_function_inside_args_even_when_module_trusted(linear: tuple[dict[str, Any], Path]) -> None:
    config, state = linear
    config["root"]["kwargs"]["device"] = {"$function": "os:system"}
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state, trusted_modules=["torch.nn", "os"])
    assert exc.value.code == "reconstruct-refused" and "os:system" in str(exc.value)


def test_non_module_class_collections_ordereddict(linear: tuple[dict[str, Any], Path]) -> None:
    config, state = linear
    config["root"]["class"] = "collections:OrderedDict"
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state, trusted_modules=["torch.nn", "collections"])
    assert exc.value.code == "reconstruct-refused"
    assert "not a torch.nn.Module subclass" in str(exc.value)


def test_non_module_class_argument(linear: tuple[dict[str, Any], Path]) -> None:
    config, state = linear
    config["root"]["kwargs"]["dtype"] = {"$class": "torch.nn.parameter:Parameter"}
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state)
    assert "torch.nn.parameter:Parameter" in str(exc.value)


def test_spoofed_module_and_qualname(tmp_path: Path) -> None:
    tree = tmp_path / "repo"
    tree.mkdir()
    canary = tmp_path / "canary"
    (tree / "evil.py").write_text(
        textwrap.dedent(
            f"""
            from torch import nn

            class Linear(nn.Linear):
                def forward(self, x):
                    open({str(canary)!r}, "w").close()
                    return super().forward(x)

            Linear.__module__ = "torch.nn"
            Linear.__qualname__ = "Linear"
            """
        )
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("evil_spoof_repo", tree / "evil.py")
    assert spec is not None and spec.loader is not None
    evil = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evil)
    config, state = record(lambda: evil.Linear(3, 2), tmp_path, tree=tree)
    assert config["root"]["class"] == "torch.nn:Linear"
    assert config["root"]["origin"]["kind"] == "tree"  # the recorder stores where the class was compiled
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state, tree=tree)
    assert exc.value.code == "reconstruct-refused"
    # even with the child's evidence forged to look clean, the path does not name the class it resolves to
    config["root"]["origin"] = {"kind": "site", "path": "torch/nn/__init__.py", "resolves": True}
    with pytest.raises(ReconstructRefused) as exc2:
        run(config, state, tree=tree)
    assert "spoofs __module__/__qualname__" in str(exc2.value)
    assert not canary.exists()


@pytest.mark.parametrize(
    "path", ["torch.nn:DoesNotExist", "torch.nn.no_such_submodule:Linear", "torch.nn.modules.linear:Linear.Nope"]
)
def test_path_into_trusted_module_that_does_not_exist(linear: tuple[dict[str, Any], Path], path: str) -> None:
    config, state = linear
    config["root"]["class"] = path
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state)
    assert exc.value.code == "reconstruct-refused" and "does not exist" in str(exc.value)


@pytest.mark.parametrize(
    "path", ["torch.nn:f.<locals>.Net", "torch.nn:__class__.__init__", "torch.nn:1x", "torch..nn:X", "torch.nn"]
)
def test_locals_and_malformed_qualnames(linear: tuple[dict[str, Any], Path], path: str) -> None:
    config, state = linear
    config["root"]["class"] = path
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state)
    assert exc.value.code == "reconstruct-refused"


def test_module_ref_cycle(tmp_path: Path) -> None:
    config, state = record(lambda: nn.Sequential(nn.Linear(2, 2)), tmp_path)
    config["root"]["children"]["0"]["reconstructible"] = True
    config["root"]["args"] = [{"$module": {"ref": ""}}]
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state)
    assert "cycle" in str(exc.value)


# --------------------------------------------------------------------------- state that does not fit


def _rewrite(state: Path, change: Any) -> None:
    tensors = load_file(str(state))
    change(tensors)
    save_file(tensors, str(state))


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (lambda t: t.pop("bias"), "bias"),
        (lambda t: t.__setitem__("extra.weight", torch.zeros(1)), "extra.weight"),
        (lambda t: t.__setitem__("weight", torch.zeros(5, 5)), "weight"),
    ],
    ids=["missing-key", "extra-key", "wrong-shape"],
)
def test_state_dict_does_not_fit(linear: tuple[dict[str, Any], Path], change: Any, names: str) -> None:
    config, state = linear
    _rewrite(state, change)
    with pytest.raises(ReconstructMismatch) as exc:
        run(config, state)
    assert exc.value.code == "reconstruct-mismatch" and names in str(exc.value)


def test_alias_to_missing_tensor(linear: tuple[dict[str, Any], Path]) -> None:
    config, state = linear
    config["aliases"] = {"bias": "nope"}
    with pytest.raises(ReconstructMismatch):
        run(config, state)


# --------------------------------------------------------------------------- shadowing


def test_repo_torch_folder_in_cwd_does_not_shadow_torch(
    linear: tuple[dict[str, Any], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = linear
    repo = tmp_path / "repo"
    canary = tmp_path / "canary"
    for pkg in ("torch", "torch/nn", "torch/nn/modules"):
        (repo / pkg).mkdir(parents=True)
        (repo / pkg / "__init__.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    (repo / "torch/nn/modules/linear.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend("")
    model, strategy = run(config, state, tree=repo)
    assert strategy == "trusted"
    assert (
        Path(sys.modules[type(model).__module__].__file__ or "")
        .resolve()
        .is_relative_to(Path(torch.__file__).parent.resolve())
    )
    assert not canary.exists()


def test_repo_folder_shadowing_a_not_yet_imported_trusted_package(
    linear: tuple[dict[str, Any], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = linear
    repo = tmp_path / "repo"
    canary = tmp_path / "canary"
    (repo / "shadowpkg").mkdir(parents=True)
    (repo / "shadowpkg" / "__init__.py").write_text(f"open({str(canary)!r}, 'w').close()\n")
    config["root"]["class"] = "shadowpkg:Net"
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend("")
    monkeypatch.syspath_prepend(str(repo))  # even when the tree itself is on sys.path
    with pytest.raises(ReconstructRefused) as exc:
        run(config, state, trusted_modules=["torch.nn", "shadowpkg"], tree=repo)
    assert "shadowpkg" in str(exc.value)
    assert "shadowpkg" not in sys.modules
    assert not canary.exists()


# --------------------------------------------------------------------------- hostile exported programs


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


def exported(tmp_path: Path) -> tuple[dict[str, Any], Path, ExportInfo, dict[str, Any]]:
    with _record.recording():
        model = _Net()
    config = _record.describe(model)
    tensors, aliases = collect_tensors(model)
    config["aliases"] = aliases
    package = export_program(model, (torch.randn(2, 3),), tensors, aliases)
    state = tmp_path / "state.safetensors"
    write_state(tensors, state)
    export = parse_export(json.loads(json.dumps(package.meta())), package.program_json)
    return json.loads(json.dumps(config)), state, export, json.loads(package.program_json)


def _with_program(export: ExportInfo, program: dict[str, Any]) -> ExportInfo:
    return ExportInfo(export.state, export.constants, export.parameters, json.dumps(program).encode())


def _refused_export(tmp_path: Path, mutate: Any) -> ReconstructRefused:
    config, state, export, program = exported(tmp_path)
    program = copy.deepcopy(program)
    mutate(program)
    model: Any = None
    with pytest.raises(ReconstructRefused) as exc:
        model, _ = run(config, state, export=_with_program(export, program))
        model(torch.randn(2, 3))  # only reached if not refused: the payload would run here
    assert exc.value.code == "reconstruct-refused"
    return exc.value


def test_exported_program_guards_code_injection(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    payload = f"__import__('os').system('touch {canary}') == 0"
    # guards are dropped, so the program itself is fine and loads -- without running the payload
    config, state, export, program = exported(tmp_path)
    program["guards_code"] = [payload]
    model, strategy = run(config, state, export=_with_program(export, program))
    assert strategy == "export"
    model(torch.randn(2, 3))
    assert not canary.exists()


def test_exported_program_target_torch_os_system(tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    def mutate(p: dict[str, Any]) -> None:
        node = p["graph_module"]["graph"]["nodes"][0]
        node["target"] = "torch.os.system"
        node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {canary}"}, "kind": 1}]

    err = _refused_export(tmp_path, mutate)
    assert "torch.os.system" in str(err)
    assert not canary.exists()


def test_exported_program_aten_save_refused(tmp_path: Path) -> None:
    def mutate(p: dict[str, Any]) -> None:
        p["graph_module"]["graph"]["nodes"][0]["target"] = "torch.ops.aten.save.default"

    assert "aten.save" in str(_refused_export(tmp_path, mutate))


def test_exported_program_sympify_injection(tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    def mutate(p: dict[str, Any]) -> None:
        p["graph_module"]["graph"]["sym_int_values"] = {
            "s0": {"as_expr": {"expr_str": f"__import__('os').system('touch {canary}')", "hint": None}}
        }

    _refused_export(tmp_path, mutate)
    assert not canary.exists()


def test_exported_program_treespec_defaultdict_import(tmp_path: Path) -> None:
    def mutate(p: dict[str, Any]) -> None:
        spec = json.dumps(
            [1, {"type": "collections.defaultdict", "context": json.dumps(
                {"default_factory_module": "antigravity", "default_factory_name": "x", "dict_context": []}
            ), "children_spec": []}]
        )  # fmt: skip
        p["graph_module"]["module_call_graph"][0]["signature"]["in_spec"] = spec

    _refused_export(tmp_path, mutate)
    assert "antigravity" not in sys.modules


def test_exported_program_node_name_code_injection(tmp_path: Path) -> None:
    canary = tmp_path / "canary"

    def mutate(p: dict[str, Any]) -> None:
        p["graph_module"]["graph"]["nodes"][0]["name"] = f"x\nopen({str(canary)!r}, 'w')\n"

    _refused_export(tmp_path, mutate)
    assert not canary.exists()


def test_exported_program_not_json(tmp_path: Path) -> None:
    config, state, export, _ = exported(tmp_path)
    bad = ExportInfo(export.state, export.constants, export.parameters, b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(ReconstructRefused):
        run(config, state, export=bad)
