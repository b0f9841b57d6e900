"""Attacks: example-input shapes that would make the parent allocate (finding 7b).

A tampered hub.lock recording ``example_inputs`` of shape ``[2**20]*3`` used to reach
``torch.rand`` (a RuntimeError, or for a realistic large shape a real multi-GB allocation). Shapes
are now bounded in elements and bytes from the shape alone: ``lock-invalid`` for hub.lock (before
anything is fetched or allocated, hub.lock byte-identical), a usage error for ``--example-input``
and ``ValueError`` for ``example_inputs=``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import securehub
import securehub.pipeline.sandbox_run
from securehub.cli import app as cli
from securehub.config.lockfile import (
    MAX_EXAMPLE_INPUT_ELEMENTS,
    MAX_EXAMPLE_INPUTS,
    InputSpec,
    Lockfile,
)
from securehub.errors import SecureHubError
from tests._lock_helpers import one_repo_lock

BOMBS = {
    "2**20 cubed": [2**20] * 3,
    "realistic 3.2 GB": [64, 3, 2048, 2048],
    "one over the element cap": [MAX_EXAMPLE_INPUT_ELEMENTS + 1],
}


def _tampered_lock(path: Path, shape: list[int]) -> bytes:
    lock = one_repo_lock("a" * 40, "b" * 64, example_inputs=(InputSpec((1, 3, 224, 224), "float32"),))
    doc = lock.to_json()
    doc["repos"]["owner/repo:v1"]["entrypoints"]["resnet18"]["example_inputs"][0]["shape"] = shape
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    path.write_bytes(data)
    return data


@pytest.mark.parametrize("shape", list(BOMBS.values()), ids=list(BOMBS))
def test_tampered_lock_example_input_shape_is_lock_invalid(
    shape: list[int], tmp_path: Path, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")  # any network access would be a different error
    lock = tmp_path / "hub.lock"
    data = _tampered_lock(lock, shape)
    allocated: list[object] = []
    monkeypatch.setattr(securehub.pipeline.sandbox_run, "example_tensors", lambda specs: allocated.append(specs))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: allocated.append(a))
    with pytest.raises(SecureHubError) as info:
        securehub.load("owner/repo:v1", "resnet18", policy="default", lock=lock, verbose=False)
    assert info.value.code == "lock-invalid", info.value.message
    assert "example_inputs[0].shape" in info.value.message
    assert allocated == [], "example tensors were built from the tampered lock"
    assert lock.read_bytes() == data, "hub.lock changed"
    assert not (hub_dir / "trees").exists() or not any((hub_dir / "trees").iterdir())


def test_too_many_example_inputs_in_the_lock_is_lock_invalid(tmp_path: Path) -> None:
    specs = tuple(InputSpec((1,), "float32") for _ in range(MAX_EXAMPLE_INPUTS + 1))
    data = one_repo_lock("a" * 40, "b" * 64, example_inputs=specs).to_bytes()
    with pytest.raises(SecureHubError) as info:
        Lockfile.parse(data)
    assert info.value.code == "lock-invalid"
    assert f"at most {MAX_EXAMPLE_INPUTS} example inputs" in info.value.message


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1, 3, 1024, 1024), "float32"), ((8, 512), "int64"), ((MAX_EXAMPLE_INPUT_ELEMENTS,), "uint8")],
)
def test_real_model_inputs_fit_the_bounds(shape: tuple[int, ...], dtype: str) -> None:
    """Control: the bounds admit a large image batch, token ids, and exactly the element cap."""
    data = one_repo_lock("a" * 40, "b" * 64, example_inputs=(InputSpec(shape, dtype),)).to_bytes()
    entry = Lockfile.parse(data).repo("owner/repo:v1")
    assert entry is not None and entry.entrypoints["resnet18"].example_inputs == (InputSpec(shape, dtype),)


def test_cli_example_input_bomb_is_a_usage_error(
    tmp_path: Path, hub_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    code = cli.main(["load", "owner/repo:v1", "m", "--example-input", "1048576x1048576x1048576:float32"])
    assert code == 2
    err = capsys.readouterr().err
    assert "error[usage]" in err and "per example input" in err
    assert not (tmp_path / "hub.lock").exists()


def test_api_example_inputs_bomb_is_refused_before_anything(
    tmp_path: Path, hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECUREHUB_OFFLINE", "1")
    huge = torch.zeros(1).expand(2**20, 2**20, 2**20)  # a view: costs nothing until it is copied
    with pytest.raises(ValueError, match="per example input"):
        securehub.load("owner/repo:v1", "m", example_inputs=(huge,), policy="default", verbose=False)
    with pytest.raises(ValueError, match="example inputs of at most"):
        securehub.load(
            "owner/repo:v1",
            "m",
            example_inputs=(torch.zeros(1).expand(MAX_EXAMPLE_INPUT_ELEMENTS),) * 3,
            policy="default",
            verbose=False,
        )
    assert not any(hub_dir.iterdir())
