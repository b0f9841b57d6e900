"""Resource limits of the child.

Memory is capped with ``RLIMIT_AS`` (address space). Measured here: importing
torch reserves about 0.65 GB of address space, so the default 8 GB cap leaves
room; cgroup v2 ``memory.max`` would cap resident memory more precisely but is
not delegated to us on the target machines (cgroup v1 hierarchy), so it is
not used. ``RLIMIT_CPU`` soft = ``cpu_s`` (SIGXCPU), hard = soft + 5 (SIGKILL).
``RLIMIT_NPROC`` counts threads too; as root in the initial user namespace
the kernel does not enforce it, which is why forks are stopped by seccomp.
A limit is never raised above the hard limit the child inherited.
"""

from __future__ import annotations

import resource

__all__ = ["apply"]

_MB = 1024 * 1024


def _set(which: int, soft: int, hard: int) -> None:
    _cur_soft, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY:
        hard = min(hard, cur_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def apply(
    *,
    memory_mb: int,
    cpu_s: int,
    max_procs: int,
    max_open_files: int,
    max_file_mb: int,
) -> None:
    """Set every limit; raises ``OSError``/``ValueError`` if one cannot be set."""
    _set(resource.RLIMIT_AS, memory_mb * _MB, memory_mb * _MB)
    _set(resource.RLIMIT_CPU, cpu_s, cpu_s + 5)
    _set(resource.RLIMIT_FSIZE, max_file_mb * _MB, max_file_mb * _MB)
    _set(resource.RLIMIT_NOFILE, max_open_files, max_open_files)
    _set(resource.RLIMIT_NPROC, max_procs, max_procs)
    _set(resource.RLIMIT_CORE, 0, 0)
