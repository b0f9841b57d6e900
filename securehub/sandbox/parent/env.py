"""The environment of every process the parent starts for the sandbox: built from scratch.

Only ``PATH``, the locale, ``HOME``/``TMPDIR`` (given by the caller), the
thread-count variables (plain digits only) and ``PYTHONHASHSEED`` are set.
Tokens, proxies, credentials, ``SECUREHUB_*`` and the parent's ``PYTHON*``
variables never reach a sandbox child or the fork server.

``PYTHONHASHSEED`` (:data:`HASH_SEED`): ``str`` hashing is randomised per
interpreter, so a hubconf that builds layers while iterating a set of names
drew its seeded random init in another order in each fresh child, in the fork
server's forks and on each machine: two ``lock`` runs disagreed, or a pin made
on CI failed on a laptop (red team 13). The interpreter therefore runs with
:func:`python_flags`: isolated mode without ``-E`` (``-s -P``), which reads
the seed from this environment, built from scratch (so no other ``PYTHON*``
variable is there to read). Python 3.10 has no ``-P`` and keeps ``-I``
(randomised hashing).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["HASH_SEED", "PASS_ENV", "python_flags", "scrubbed_env"]

#: The ``str`` hash seed of every sandbox interpreter (module docstring).
HASH_SEED = "0"


def python_flags() -> tuple[str, ...]:
    """The interpreter flags of the child and the fork server (module docstring): before the script path."""
    if sys.version_info >= (3, 11):
        return ("-s", "-P", "-S", "-B")  # -I without -E: the environment is securehub's own
    return ("-I", "-S", "-B")


#: Parent variables that may reach the child (thread counts only).
PASS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def scrubbed_env(home: Path, tmpdir: Path) -> dict[str, str]:
    """``PATH``, ``LANG``/``LC_ALL``, ``HOME``, ``TMPDIR``, ``PYTHONHASHSEED``, the thread counts of ``PASS_ENV``."""
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "PYTHONHASHSEED": HASH_SEED,
    }
    for name in PASS_ENV:
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            env[name] = value
    return env
