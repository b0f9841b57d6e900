"""Shared fixtures. Servers started here bind 127.0.0.1 only; tests never touch the internet.

Also writes the fuzz suite's per-parser example counts (``SECUREHUB_FUZZ_STATS=<path>``, see
tests/fuzz/conftest.py) at the end of the session. Under pytest-xdist (``make test`` runs
``-n 2``) each worker counts only the examples it ran: a worker hands its counts to the
controller (``workeroutput``), which merges them and writes the one complete file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz import _harness

pytest_plugins = ["tests.fixtures_servers"]

_WORKER_STATS = "securehub_fuzz_stats"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Controller: merge the counts a finished xdist worker sent."""
    doc = getattr(node, "workeroutput", {}).get(_WORKER_STATS)
    if doc is not None:
        _harness.merge(json.loads(doc))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the per-parser example counts for the security report, when asked to (a worker sends them instead)."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller writes the merged file
        workeroutput[_WORKER_STATS] = json.dumps(_harness.stats(profile))
        return
    target = os.environ.get("SECUREHUB_FUZZ_STATS")
    if not target or not _harness.COUNTS:
        return
    doc = _harness.stats(profile)
    Path(target).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
