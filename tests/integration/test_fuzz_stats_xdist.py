"""The fuzz suite's per-parser counts are complete under pytest-xdist (``make test`` runs ``-n 2``).

Each xdist worker counts only the examples it ran; tests/conftest.py has every worker hand its
counts to the controller, which merges them into the one ``SECUREHUB_FUZZ_STATS`` file the
security report reads. Checked by running the same fuzz tests (deterministic ``ci`` profile)
in one process and on two workers: the two files must be equal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Fuzz tests of several parsers in two files (fast ones: text parsers and hub.lock).
SELECTION = ["tests/fuzz/test_fuzz_text_parsers.py", "tests/fuzz/test_fuzz_lockfile.py", "-k", "spec or ref or lock"]


def _fuzz_stats(tmp_path: Path, *dist: str) -> tuple[dict[str, Any], str]:
    stats = tmp_path / ("stats" + "".join(dist).replace(" ", "") + ".json")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HYPOTHESIS_"))}
    env["SECUREHUB_FUZZ_STATS"] = str(stats)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *dist, *SELECTION],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(stats.read_text(encoding="utf-8")), r.stdout


@pytest.mark.slow
def test_fuzz_stats_under_two_xdist_workers_equal_a_single_process_run(tmp_path: Path) -> None:
    serial, _ = _fuzz_stats(tmp_path, "-n", "0")
    merged, out = _fuzz_stats(tmp_path, "-n", "2", "--dist", "load")

    assert set(re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED", out)) == {"gw0", "gw1"}, out[-3000:]  # both ran tests
    assert merged == serial
    assert serial["profile"] == "ci"
    assert {"spec", "ref", "lockfile"} <= set(serial["examples"]), serial["examples"]
    assert all(n > 0 for n in serial["examples"].values())
    assert {name: sum(o.values()) for name, o in serial["outcomes"].items()} == serial["examples"]
