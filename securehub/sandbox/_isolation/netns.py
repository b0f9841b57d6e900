"""User, network and IPC namespaces (identity uid map).

``unshare(CLONE_NEWUSER | CLONE_NEWIPC [| CLONE_NEWNET])`` works without
privilege. A fresh network namespace holds only a down loopback, so TCP/UDP
to any address, 127.0.0.1 included, fails with ENETUNREACH, and abstract UNIX
sockets of the host are out of reach. The user namespace maps the caller's
uid/gid onto themselves, so file ownership checks are unchanged, while the
capabilities the process holds (also root's) are confined to the new
namespace (``pidns.drop_capabilities_except`` then sheds them). The
distinct-uid map lives in :mod:`.pidns`.
"""

from __future__ import annotations

import ctypes
import os

from . import libc

__all__ = ["unshare", "write_identity_maps"]

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWIPC = 0x08000000


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
        write_identity_maps(uid, gid)


def write_identity_maps(uid: int, gid: int) -> None:
    """Map the caller's outside ``uid``/``gid`` onto themselves in its new user namespace."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
    _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
