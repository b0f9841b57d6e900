"""PID namespace and a distinct outside uid for the child (issue 8, finding 2).

Attack closed: a hubconf running as the parent's uid, in the parent's PID
namespace, called ``prlimit64(getppid(), RLIMIT_CPU, (1, 1))`` and killed the
parent (kill(2)/prlimit(2)/setpriority(2) permission checks compare uids).
Two layers now stand between the child and its parent:

- **pidns**: the bootstrap calls ``unshare(CLONE_NEWPID)`` and forks; the
  forked process is pid 1 of a new namespace in which no pid of the parent
  (or of any other outside process) exists, and ``getppid()`` is 0. When
  pid 1 exits the kernel kills everything else in the namespace, so no
  daemon outlives the child.
- **uid**: the child enters a new user namespace whose maps are written by
  the still-privileged bootstrap: inside 0 -> outside :data:`CHILD_UID`
  (65534, ``nobody``) and inside 1 -> outside 0. The child then switches to
  inside 0, i.e. outside uid/gid 65534: no outside process of the parent's
  uid can be signalled, re-limited or re-niced by it. Outside 0 is mapped
  only so that ``CAP_DAC_READ_SEARCH`` (the one capability the child keeps,
  in its own namespace, and only when the Python installation sits below a
  directory ``nobody`` cannot search, e.g. ``/root`` 0700) applies to
  root-owned directories; reads stay confined by Landlock. ``CAP_SETUID``/
  ``CAP_SETGID`` are dropped from every set and the bounding set, and the
  seccomp filter refuses the whole set*id family, so the child has no way
  back to outside uid 0.

Standard library only (loaded before confinement, see ``child/bootstrap.py``).
"""

from __future__ import annotations

import ctypes
import os

from . import libc, prctl, syscall

__all__ = [
    "CAP_DAC_READ_SEARCH",
    "CHILD_GID",
    "CHILD_UID",
    "become_mapped_root",
    "capabilities_at_most",
    "drop_capabilities_except",
    "unshare_pid",
    "unshare_user",
    "write_id_maps",
]

#: Outside uid/gid of the child (``nobody``/``nogroup``).
CHILD_UID = 65534
CHILD_GID = 65534
CAP_DAC_READ_SEARCH = 2

CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_SYS_CAPSET = 126
_CAP_VERSION_3 = 0x20080522
_CAP_LAST_FALLBACK = 63


def _unshare(flags: int) -> None:
    ctypes.set_errno(0)
    if libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(0x{flags:x}): {os.strerror(err)}")


def unshare_pid() -> None:
    """Make the caller's *next* child pid 1 of a new PID namespace.

    Root unshares it directly. An unprivileged caller first enters a user
    namespace with identity maps (which grants CAP_SYS_ADMIN over the new
    PID namespace only); it cannot map another uid, so ``uid`` stays missing.
    """
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        _unshare(CLONE_NEWUSER)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
        _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
    _unshare(CLONE_NEWPID)


def unshare_user(*, net: bool) -> None:
    """Enter new user + IPC (+ network) namespaces, leaving the id maps unwritten.

    The caller then waits for a privileged process to call :func:`write_id_maps`.
    """
    _unshare(CLONE_NEWUSER | CLONE_NEWIPC | (CLONE_NEWNET if net else 0))


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def write_id_maps(pid: int) -> None:
    """Map inside 0 -> outside 65534 and inside 1 -> outside 0 for ``pid``'s user namespace.

    Needs CAP_SETUID/CAP_SETGID in the initial user namespace (the parent is
    root); raises ``OSError`` otherwise. ``setgroups`` stays ``allow`` so the
    child can clear its supplementary groups (root's group 0) itself.
    """
    maps = f"0 {CHILD_UID} 1\n1 0 1\n"
    _write(f"/proc/{pid}/uid_map", maps)
    _write(f"/proc/{pid}/gid_map", maps.replace(str(CHILD_UID), str(CHILD_GID)))


def become_mapped_root() -> None:
    """Drop supplementary groups and switch to inside 0 (outside 65534); verify it took.

    Being the namespace's root (inside 0), the caller keeps its namespace
    capabilities across the switch; :func:`drop_capabilities_except` sheds them.
    """
    os.setgroups([])
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    with open("/proc/self/status", encoding="ascii") as fh:  # noqa: PTH123 - stdlib only
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    # /proc shows ids as seen from the reader's namespace: inside 0 everywhere.
    if fields["Uid"].split() != ["0"] * 4 or fields["Gid"].split() != ["0"] * 4 or fields["Groups"].split():
        raise OSError(1, f"uid switch did not take: Uid {fields['Uid'].split()} Gid {fields['Gid'].split()}")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:  # noqa: PTH123
            return int(fh.read().strip())
    except (OSError, ValueError):
        return _CAP_LAST_FALLBACK


def drop_capabilities_except(keep: frozenset[int]) -> None:
    """Drop every capability but ``keep`` from the bounding set, and all but ``keep``
    from the effective and permitted sets; clear inheritable and ambient.

    Capabilities in ``keep`` must be < 32. Raises ``OSError`` on failure.
    """
    if any(c >= 32 for c in keep):
        raise ValueError("only capabilities below 32 can be kept")
    for cap in range(_last_cap() + 1):
        if cap not in keep:
            prctl(_PR_CAPBSET_DROP, cap)
    try:
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as exc:
        if exc.errno != 22:  # EINVAL: kernel without ambient capabilities
            raise
    mask = 0
    for cap in keep:
        mask |= 1 << cap
    header = _CapHeader(version=_CAP_VERSION_3, pid=0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = mask
    syscall(_SYS_CAPSET, ctypes.addressof(header), ctypes.addressof(data))


def capabilities_at_most(keep: frozenset[int]) -> bool:
    """True when /proc/self/status shows no capability outside ``keep`` in any set
    (effective, permitted, inheritable, ambient, bounding)."""
    allowed = 0
    for cap in keep:
        allowed |= 1 << cap
    with open("/proc/self/status", encoding="ascii") as fh:  # noqa: PTH123 - stdlib only
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    names = ("CapEff", "CapPrm", "CapBnd")
    if any(int(fields[n].strip(), 16) & ~allowed for n in names):
        return False
    return all(int(fields[n].strip(), 16) == 0 for n in ("CapInh", "CapAmb"))
