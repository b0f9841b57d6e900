"""The environment of every process the parent starts for the sandbox: built from scratch.

Only ``PATH``, the locale, ``HOME``/``TMPDIR`` (given by the caller) and the
thread-count variables (plain digits only) are set. Tokens, proxies,
credentials and ``SECUREHUB_*`` never reach a sandbox child or the fork server.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PASS_ENV", "scrubbed_env"]

#: Parent variables that may reach the child (thread counts only).
PASS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def scrubbed_env(home: Path, tmpdir: Path) -> dict[str, str]:
    """``PATH``, ``LANG``/``LC_ALL``, ``HOME``, ``TMPDIR`` and the thread counts of :data:`PASS_ENV`."""
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
    }
    for name in PASS_ENV:
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            env[name] = value
    return env
