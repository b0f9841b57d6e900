"""What the sandbox child does before the parent rebuilds, for tests of the trusted strategy."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from securehub.sandbox.child import record as _record
from securehub.sandbox.child.result import collect_tensors, write_state


def record(
    build: Callable[[], nn.Module], tmp_path: Path, *, seed: int | None = None
) -> tuple[nn.Module, dict[str, Any], Path]:
    """Build under recording, describe, write the state; the config round-trips through JSON.

    ``seed`` seeds torch first (deterministic weights); ``None`` leaves the RNG alone, for attack
    tests that assert the parent's RNG state is unchanged.
    """
    if seed is not None:
        torch.manual_seed(seed)
    with _record.recording():
        model = build()
    config = _record.describe(model)
    tensors, aliases = collect_tensors(model)
    config["aliases"] = aliases
    state_path = tmp_path / "state.safetensors"
    write_state(tensors, state_path)
    return model, json.loads(json.dumps(config)), state_path
