"""Hypothesis profiles for the parser fuzz suite, and the per-parser example counter.

Profiles (``HYPOTHESIS_PROFILE`` selects one; ``ci`` is the default):

- ``ci``: bounded and deterministic (``derandomize=True``, no example database), so
  ``make test`` runs the same examples every time and stays within its time budget.
  Failures hypothesis once found are kept as explicit ``@example`` cases in the test
  files, not in a database.
- ``long``: ``make fuzz``; many more random examples per parser, with a database
  (``.hypothesis/``) so a failure found once is replayed first next time.

Every fuzz test routes its parser call through :func:`tests.fuzz._harness.run_parser`,
which counts the examples per parser; with ``SECUREHUB_FUZZ_STATS=<path>`` the counts
are written there as JSON at the end of the session (``make security-report`` reads them),
by tests/conftest.py, which also merges the counts of every pytest-xdist worker.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The machine is shared (2 cores, several test runs at once): per-example deadlines are
# generous; what they catch is a parser going super-linear (a 9**9**9 size expression
# takes minutes, not seconds), not scheduling noise. 5 s was exceeded by a first example
# under load (symexpr token soup, 8.7 s, 2026-12-07: imports and warm-up, not the parser).
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=15000,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "long",
    max_examples=3000,
    derandomize=False,
    deadline=20000,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
