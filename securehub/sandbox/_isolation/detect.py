"""What the kernel offers, probed from the parent without changing the parent.

Nothing here confines the calling process: Landlock is probed with the
version query, seccomp with ``PR_GET_SECCOMP`` and the advertised actions,
namespaces with the sysctls that gate them. The child's ``ready`` report
(what it actually achieved) stays authoritative; this is the pre-flight.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable

from . import IS_LINUX, IS_X86_64, landlock, prctl

__all__ = ["offered"]

_PR_GET_SECCOMP = 21
_PR_GET_NO_NEW_PRIVS = 39


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as fh:  # noqa: PTH123 - stdlib only
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _userns_offered() -> bool:
    if not os.path.exists("/proc/self/ns/user"):  # noqa: PTH110
        return False
    max_ns = _read_int("/proc/sys/user/max_user_namespaces")
    if max_ns is not None and max_ns <= 0:
        return False
    if os.getuid() != 0:
        # Debian/Ubuntu gates; AppArmor's restriction shows up only in the child's report.
        if _read_int("/proc/sys/kernel/unprivileged_userns_clone") == 0:
            return False
        if _read_int("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == 1:
            return False
    return True


def _seccomp_offered() -> bool:
    if not IS_X86_64:
        return False
    try:
        prctl(_PR_GET_SECCOMP)
        with open("/proc/sys/kernel/seccomp/actions_avail", encoding="ascii") as fh:  # noqa: PTH123
            actions = fh.read().split()
    except OSError:
        return False
    return {"errno", "kill_process", "allow"} <= set(actions)


def _nnp_offered() -> bool:
    try:
        prctl(_PR_GET_NO_NEW_PRIVS)
    except OSError:
        return False
    return True


def offered(disabled: Iterable[str] = ()) -> dict[str, bool | int | None]:
    """Mechanism name -> offered (``landlock`` -> ABI or ``None``); ``disabled`` forced off.

    ``uid`` is offered to a root parent only: mapping another outside uid
    needs CAP_SETUID in the initial user namespace. ``pidns`` needs root or
    a user namespace.
    """
    off = set(disabled)
    if not IS_LINUX:
        return {
            "netns": False,
            "userns": False,
            "pidns": False,
            "uid": False,
            "landlock": None,
            "seccomp": False,
            "no_new_privs": False,
            "rlimits": False,
            "caps": False,
        }
    userns = "userns" not in off and _userns_offered()
    netns = "netns" not in off and os.path.exists("/proc/self/ns/net") and (userns or os.getuid() == 0)  # noqa: PTH110
    return {
        "netns": netns,
        "userns": userns,
        # CLONE_NEWPID needs CAP_SYS_ADMIN: root, or a user namespace first.
        "pidns": "pidns" not in off and os.path.exists("/proc/self/ns/pid") and (userns or os.geteuid() == 0),  # noqa: PTH110
        # Mapping outside uid 65534 needs CAP_SETUID in the initial namespace (root).
        "uid": "uid" not in off and userns and os.geteuid() == 0,
        "landlock": None if "landlock" in off else landlock.abi_version(),
        "seccomp": "seccomp" not in off and _seccomp_offered(),
        "no_new_privs": "no_new_privs" not in off and _nnp_offered(),
        "rlimits": "rlimits" not in off and hasattr(resource, "RLIMIT_AS"),
        "caps": "caps" not in off,
    }
