"""Shared fixtures. Servers started here bind 127.0.0.1 only; tests never touch the internet.

Orders the collection longest file first (:data:`LONGEST_FIRST`): ``make test`` hands whole
files to two xdist workers in collection order (``--dist loadfile --no-loadscope-reorder``), so
the files that take minutes start first and many short ones fill the gaps at the end, instead of
one worker finishing a two-minute file alone while the other is idle. Within a file the order is
unchanged.

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

#: Test files by measured duration on the 2-core VM (junit of a fresh `.ci/run`, 2026-12-07), longest first.
LONGEST_FIRST: tuple[str, ...] = (
    "tests/integration/test_real_repo_patterns.py",
    "tests/integration/test_real_hub_zoo5.py",
    "tests/integration/test_real_hub_zoo6.py",
    "tests/integration/test_real_hub_zoo7.py",
    "tests/integration/test_real_hub_zoo8.py",
    "tests/integration/test_real_hub_zoo9.py",
    "tests/integration/test_real_hub_zoo10.py",
    "tests/integration/test_real_hub_zoo.py",
    "tests/integration/test_real_hub_models.py",
    "tests/integration/test_real_hub_styles.py",
    "tests/integration/test_example_input_auto.py",
    "tests/integration/test_lock_entrypoints.py",
    "tests/integration/test_result_cache.py",
    "tests/integration/test_rebuilt_models_save.py",
    "tests/integration/test_cli_contract.py",
    "tests/attacks/test_time_bomb_audit_rerun.py",
    "tests/attacks/test_parent_work_outlives_the_deadline.py",
    "tests/integration/test_concurrency.py",
    "tests/attacks/test_example_input_auto_attacks.py",
    "tests/attacks/test_source_strategy_attacks.py",
    "tests/integration/test_api_load.py",
    "tests/attacks/test_malicious_hubconf.py",
    "tests/integration/test_session.py",
    "tests/attacks/test_export_kernel_trust_attacks.py",
    "tests/integration/test_crash.py",
    "tests/attacks/test_refusal_side_effects.py",
    "tests/attacks/test_export_program_attacks.py",
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest files first (see the module docstring); a stable sort, so every other order is kept."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    root = Path(str(config.rootpath))

    def key(item: pytest.Item) -> int:
        try:
            name = Path(str(item.path)).relative_to(root).as_posix()
        except ValueError:
            return len(rank)
        return rank.get(name, len(rank))

    items.sort(key=key)


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
