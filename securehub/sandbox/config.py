"""What the confined child is allowed, and what confinement was achieved.

:class:`SandboxConfig` is built by the caller (from the policy's ``sandbox``
section plus the paths the child may read) and handed to
:func:`securehub.sandbox.parent.spawn.launch`. :class:`IsolationReport` is what the
child's bootstrap *achieved*, measured from the actual syscall results; the
parent parses it from the child's first frame (``ready``) with
:meth:`IsolationReport.from_dict`, which treats the data as hostile.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from securehub.errors import SandboxProtocol

__all__ = [
    "EXIT_CONFINE_FAILED",
    "EXIT_ENTRY_FAILED",
    "EXIT_MEMORY",
    "MECHANISMS",
    "FilesystemMode",
    "IsolationLevel",
    "IsolationMode",
    "IsolationReport",
    "Mechanism",
    "NetworkMode",
    "SandboxConfig",
]

NetworkMode = Literal["deny", "allow"]
FilesystemMode = Literal["confined", "open"]
IsolationMode = Literal["require", "best-effort"]
IsolationLevel = Literal["full", "degraded", "none"]
#: Names of the isolation mechanisms, as used in ``IsolationReport.missing``
#: and ``SandboxConfig.disable_mechanisms``.
Mechanism = Literal["netns", "userns", "pidns", "uid", "landlock", "seccomp", "no_new_privs", "rlimits", "caps"]
MECHANISMS: frozenset[str] = frozenset(get_args(Mechanism))

#: Exit status of the bootstrap when confinement failed before any repo code ran.
EXIT_CONFINE_FAILED = 85
#: Exit status when the entry (or probe) died of MemoryError / an allocator failure.
EXIT_MEMORY = 86
#: Exit status when the entry (or probe) raised any other exception.
EXIT_ENTRY_FAILED = 87


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"SandboxConfig.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and permissions of one confined child.

    ``read_paths``: files and directories the child may read (the repo tree,
    artifact files), besides the Python installation which is always readable.
    They must be absolute; they are resolved (symlinks followed) at launch.
    The child can write only in its private temp dir.

    ``tmp_parent``: directory under which the private run dir (mode 0700) is
    created; ``None`` means :func:`tempfile.gettempdir`. It must not be inside
    the securehub cache.

    ``disable_mechanisms``: FOR TESTS ONLY. Mechanisms the bootstrap and
    :func:`~securehub.sandbox.parent.spawn.check_available` pretend the kernel lacks,
    to exercise ``isolation: require`` / ``best-effort`` paths. Policies never
    set it.

    ``export_sizes``: not a limit but what the child's ``torch.export`` tries (the policy's
    ``reconstruct.export_sizes``): ``"batch"``, a symbolic batch size only; ``"any"``, every other dim too
    where torch can trace it.

    ``fork_server``: the child may be forked from the process's fork server
    (:mod:`securehub.sandbox.parent.forkserver`; ``SECUREHUB_FORK_SERVER=0``
    turns it off for every config). ``False`` always starts a fresh interpreter.
    """

    read_paths: tuple[Path, ...] = ()
    network: NetworkMode = "deny"
    filesystem: FilesystemMode = "confined"
    isolation: IsolationMode = "require"
    memory_mb: int = 8192
    cpu_s: int = 600
    timeout_s: float = 900.0
    max_procs: int = 64
    max_open_files: int = 1024
    max_file_mb: int = 16384
    max_output_mb: int = 16384
    tmp_parent: Path | None = None
    disable_mechanisms: frozenset[str] = field(default_factory=frozenset)
    fork_server: bool = True
    export_sizes: str = "batch"

    def __post_init__(self) -> None:
        if self.export_sizes not in ("batch", "any"):
            raise ValueError(f"SandboxConfig.export_sizes must be 'batch' or 'any', got {self.export_sizes!r}")
        if self.network not in get_args(NetworkMode):
            raise ValueError(f"SandboxConfig.network must be 'deny' or 'allow', got {self.network!r}")
        if self.filesystem not in get_args(FilesystemMode):
            raise ValueError(f"SandboxConfig.filesystem must be 'confined' or 'open', got {self.filesystem!r}")
        if self.isolation not in get_args(IsolationMode):
            raise ValueError(f"SandboxConfig.isolation must be 'require' or 'best-effort', got {self.isolation!r}")
        for name in ("memory_mb", "cpu_s", "max_procs", "max_open_files", "max_file_mb", "max_output_mb"):
            _positive_int(name, getattr(self, name))
        if not isinstance(self.timeout_s, (int, float)) or not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"SandboxConfig.timeout_s must be a positive number, got {self.timeout_s!r}")
        if not isinstance(self.read_paths, tuple):
            raise TypeError("SandboxConfig.read_paths must be a tuple of Path")
        for p in self.read_paths:
            if not isinstance(p, Path) or not p.is_absolute():
                raise ValueError(f"SandboxConfig.read_paths entries must be absolute Paths, got {p!r}")
        if self.tmp_parent is not None and not (isinstance(self.tmp_parent, Path) and self.tmp_parent.is_absolute()):
            raise ValueError(f"SandboxConfig.tmp_parent must be an absolute Path, got {self.tmp_parent!r}")
        unknown = set(self.disable_mechanisms) - MECHANISMS
        if unknown:
            raise ValueError(
                f"SandboxConfig.disable_mechanisms has unknown names {sorted(unknown)}; "
                f"expected a subset of {sorted(MECHANISMS)}"
            )

    def required_mechanisms(self) -> frozenset[str]:
        """Mechanisms that must all be achieved for the isolation level ``full``.

        ``netns`` only when the network is denied, ``landlock`` only when the
        filesystem is confined. ``userns`` is a means (for netns when not root,
        and to shed root's capabilities), not an end: it is reported, not required.
        ``pidns`` (the parent is not addressable from the child) is always
        required. ``uid`` (the child runs as outside uid 65534, not the
        parent's) is required when this process is root, the only case in
        which the bootstrap can map another uid; an unprivileged parent relies
        on ``pidns``, Landlock's signal scoping and seccomp instead (see
        ``_isolation/pidns.py``).
        """
        req = {"seccomp", "no_new_privs", "rlimits", "caps", "pidns"}
        if _is_root():
            req.add("uid")
        if self.network == "deny":
            req.add("netns")
        if self.filesystem == "confined":
            req.add("landlock")
        return frozenset(req)


_BOOL_FIELDS = ("netns", "userns", "pidns", "uid", "seccomp", "no_new_privs", "rlimits", "caps")


@dataclass(frozen=True)
class IsolationReport:
    """Isolation achieved (or, from ``check_available``, offered by the kernel).

    ``level`` is ``full`` when every mechanism the config requires was
    achieved, ``none`` when none of them was, ``degraded`` otherwise.
    ``missing`` names the required mechanisms that were not achieved, sorted.
    ``caps``: all capabilities were dropped (the child holds none, except
    ``CAP_DAC_READ_SEARCH`` inside its own user namespace when it runs as
    outside uid 65534 and the Python installation sits below a directory
    that uid cannot search). ``pidns``: the child runs in its own PID
    namespace (the parent has no pid there). ``uid``: the child's outside
    uid and gid differ from the parent's (measured by the parent in /proc).
    """

    netns: bool
    userns: bool
    landlock_abi: int | None
    seccomp: bool
    no_new_privs: bool
    rlimits: bool
    level: IsolationLevel
    missing: tuple[str, ...]
    caps: bool = False
    pidns: bool = False
    uid: bool = False

    @classmethod
    def build(
        cls,
        config_required: frozenset[str],
        *,
        netns: bool,
        userns: bool,
        landlock_abi: int | None,
        seccomp: bool,
        no_new_privs: bool,
        rlimits: bool,
        caps: bool,
        pidns: bool,
        uid: bool,
    ) -> IsolationReport:
        """Compute ``level`` and ``missing`` from what was achieved."""
        achieved = {
            "netns": netns,
            "userns": userns,
            "pidns": pidns,
            "uid": uid,
            "landlock": landlock_abi is not None,
            "seccomp": seccomp,
            "no_new_privs": no_new_privs,
            "rlimits": rlimits,
            "caps": caps,
        }
        missing = tuple(sorted(m for m in config_required if not achieved[m]))
        level: IsolationLevel
        if not missing:
            level = "full"
        elif len(missing) == len(config_required):
            level = "none"
        else:
            level = "degraded"
        return cls(
            netns=netns,
            userns=userns,
            landlock_abi=landlock_abi,
            seccomp=seccomp,
            no_new_privs=no_new_privs,
            rlimits=rlimits,
            level=level,
            missing=missing,
            caps=caps,
            pidns=pidns,
            uid=uid,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (used in the ``ready`` frame and the audit log)."""
        return {
            "netns": self.netns,
            "userns": self.userns,
            "pidns": self.pidns,
            "uid": self.uid,
            "landlock_abi": self.landlock_abi,
            "seccomp": self.seccomp,
            "no_new_privs": self.no_new_privs,
            "rlimits": self.rlimits,
            "caps": self.caps,
            "level": self.level,
            "missing": list(self.missing),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> IsolationReport:
        """Parse an untrusted mapping; anything malformed raises ``SandboxProtocol``."""
        expected = {*_BOOL_FIELDS, "landlock_abi", "level", "missing"}
        if set(data) != expected:
            raise SandboxProtocol(
                f"isolation report keys {sorted(data)} do not match the expected {sorted(expected)}; "
                "the sandbox child is broken or hostile"
            )
        bools: dict[str, bool] = {}
        for name in _BOOL_FIELDS:
            value = data[name]
            if not isinstance(value, bool):
                raise SandboxProtocol(f"isolation report field {name!r} must be a bool, got {value!r}")
            bools[name] = value
        abi = data["landlock_abi"]
        if abi is not None and (not isinstance(abi, int) or isinstance(abi, bool) or not 0 < abi < 1000):
            raise SandboxProtocol(f"isolation report landlock_abi must be null or 1..999, got {abi!r}")
        level = data["level"]
        if level not in ("full", "degraded", "none"):
            raise SandboxProtocol(f"isolation report level must be full/degraded/none, got {level!r}")
        missing = data["missing"]
        if not isinstance(missing, list) or not all(isinstance(m, str) and m in MECHANISMS for m in missing):
            raise SandboxProtocol(f"isolation report missing must be a list of mechanism names, got {missing!r}")
        return cls(
            netns=bools["netns"],
            userns=bools["userns"],
            landlock_abi=abi,
            seccomp=bools["seccomp"],
            no_new_privs=bools["no_new_privs"],
            rlimits=bools["rlimits"],
            caps=bools["caps"],
            pidns=bools["pidns"],
            uid=bools["uid"],
            level=level,
            missing=tuple(missing),
        )
