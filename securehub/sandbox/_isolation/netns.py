"""User, network and IPC namespaces; dropping every capability.

``unshare(CLONE_NEWUSER | CLONE_NEWIPC [| CLONE_NEWNET])`` works without
privilege. A fresh network namespace holds only a down loopback, so TCP/UDP
to any address, 127.0.0.1 included, fails with ENETUNREACH, and abstract UNIX
sockets of the host are out of reach. The user namespace maps the caller's
uid/gid onto themselves, so file ownership checks are unchanged, while the
capabilities the process holds (also root's) are confined to the new
namespace; :func:`drop_capabilities` then clears them all.
"""

from __future__ import annotations

import ctypes
import os

from . import libc, prctl, syscall

__all__ = ["capabilities_clear", "drop_capabilities", "unshare"]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000
_SYS_CAPSET = 126
_CAP_VERSION_3 = 0x20080522
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


def _write(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def unshare(*, user: bool, net: bool) -> None:
    """Enter new namespaces; raises ``OSError`` if the kernel refuses.

    ``user``: new user + IPC namespaces, identity uid/gid maps. ``net``: new
    network namespace. Without ``user`` the caller needs CAP_SYS_ADMIN.
    """
    uid, gid = os.getuid(), os.getgid()
    flags = 0
    if user:
        flags |= CLONE_NEWUSER | CLONE_NEWIPC
    if net:
        flags |= CLONE_NEWNET
    if not flags:
        return
    ctypes.set_errno(0)
    if libc().unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(0x{flags:x}): {os.strerror(err)}")
    if user:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
        _write("/proc/self/gid_map", f"{gid} {gid} 1\n")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def drop_capabilities() -> None:
    """Clear the effective, permitted, inheritable and ambient capability sets."""
    try:
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as exc:
        if exc.errno != 22:  # EINVAL: kernel without ambient capabilities
            raise
    header = _CapHeader(version=_CAP_VERSION_3, pid=0)
    data = (_CapData * 2)()
    syscall(_SYS_CAPSET, ctypes.addressof(header), ctypes.addressof(data))


def capabilities_clear() -> bool:
    """True when /proc/self/status shows no effective, permitted or ambient capability."""
    with open("/proc/self/status", encoding="ascii") as fh:  # noqa: PTH123 - stdlib only, no pathlib
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    return all(int(fields[name].strip(), 16) == 0 for name in ("CapEff", "CapPrm", "CapAmb"))
