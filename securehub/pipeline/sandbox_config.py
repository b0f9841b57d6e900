"""The one place a policy becomes the sandbox's configuration.

The sandbox never sees a :class:`~securehub.config.policy.Policy`: it gets a
:class:`~securehub.sandbox.config.SandboxConfig` built here, so what crosses
into ``sandbox/`` is exactly the enumerated limits and permissions below.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from securehub.config.policy import Policy
from securehub.sandbox.config import SandboxConfig

__all__ = ["sandbox_config"]


def sandbox_config(policy: Policy, read_paths: Sequence[Path] = ()) -> SandboxConfig:
    """The child's limits and permissions, straight from ``policy.sandbox``."""
    sb = policy.sandbox
    return SandboxConfig(
        read_paths=tuple(read_paths),
        network=sb.network,
        filesystem=sb.filesystem,
        isolation=sb.isolation,
        memory_mb=sb.memory_mb,
        cpu_s=sb.cpu_s,
        timeout_s=float(sb.timeout_s),
        max_procs=sb.max_procs,
        max_open_files=sb.max_open_files,
        max_file_mb=sb.max_file_mb,
        max_output_mb=sb.max_output_mb,
        export_sizes=policy.reconstruct.export_sizes,
    )
