"""``securehub scan FILE...``: the static checkpoint scan from the command line (SPEC section 10).

Exit 0 when every file is clean, 1 when any has findings (naming the global), 2 for usage errors.
The scan never executes anything: the payloads below would create a canary file if unpickled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from tests._pickle_fixtures import reduce_call, torch_zip_bytes


def _scan(*files: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "securehub", "scan", *map(str, files)], cwd=cwd, capture_output=True, text=True
    )


def test_clean_checkpoints_exit_0(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "ok.pth")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "ok.safetensors"))
    proc = _scan(tmp_path / "ok.pth", tmp_path / "ok.safetensors", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ok.pth: ok" in proc.stdout and "ok.safetensors: ok" in proc.stdout


def test_reduce_payload_exit_1_names_global_and_runs_nothing(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    bad = tmp_path / "model.safetensors"  # extension spoofing: it is a pickle
    bad.write_bytes(reduce_call("posix", "system", f"touch {canary}"))
    good = tmp_path / "good.pth"
    good.write_bytes(torch_zip_bytes({"w": torch.ones(2)}))
    proc = _scan(good, bad, cwd=tmp_path)
    assert proc.returncode == 1
    assert "posix.system" in proc.stderr
    assert "good.pth: ok" in proc.stdout
    assert not canary.exists()


def test_missing_file_is_usage_error(tmp_path: Path) -> None:
    proc = _scan(tmp_path / "nope.pth", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error[usage]" in proc.stderr
