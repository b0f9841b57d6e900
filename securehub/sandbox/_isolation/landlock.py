"""Landlock filesystem (and TCP, signal, abstract-socket) restriction via raw syscalls.

:func:`restrict` handles every access right the running kernel's ABI knows,
grants read(+execute) beneath ``read_paths`` and everything but device
creation beneath ``write_paths``, and restricts the calling thread (call it
while single-threaded: the domain is inherited only by threads created
afterwards). It needs ``PR_SET_NO_NEW_PRIVS`` first.

What Landlock does NOT cover (closed elsewhere): pathname UNIX socket
``connect`` (seccomp: no AF_UNIX sockets), chmod/chown/utime/xattr on files
outside the rules (seccomp), ``stat`` of paths outside (not closed: existence
and metadata of outside paths remain observable), and file descriptors opened
before restriction (the bootstrap checks ``/proc/self/fd`` first).
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable

from . import IS_LINUX, IS_X86_64, syscall

__all__ = ["abi_version", "restrict"]

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5

NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

_FILE_ONLY = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
_READ = EXECUTE | READ_FILE | READ_DIR
_WRITE = (
    _READ
    | WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_SYM
    | REFER
    | TRUNCATE
)


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def abi_version() -> int | None:
    """The Landlock ABI the kernel offers, or ``None`` (not Linux/x86_64, or disabled)."""
    if not (IS_LINUX and IS_X86_64):
        return None
    try:
        return syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    except OSError:
        return None


def _handled_fs(abi: int) -> int:
    mask = (1 << 13) - 1
    if abi >= 2:
        mask |= REFER
    if abi >= 3:
        mask |= TRUNCATE
    if abi >= 5:
        mask |= IOCTL_DEV
    return mask


def _add_path(ruleset_fd: int, path: str, access: int, handled: int) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_ONLY
        attr = _PathBeneathAttr(allowed_access=access & handled, parent_fd=fd)
        syscall(_SYS_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, ctypes.addressof(attr), 0)
    finally:
        os.close(fd)
    return True


def restrict(
    *,
    read_paths: Iterable[str],
    write_paths: Iterable[str],
    read_write_files: Iterable[str] = (),
    deny_tcp: bool,
) -> int:
    """Restrict the calling thread; return the ABI used. Raises ``OSError`` on any failure.

    Missing paths are skipped (e.g. ``/lib64`` on some systems). With
    ``deny_tcp`` and ABI >= 4, TCP bind/connect are denied to every port.
    With ABI >= 6, signals and abstract UNIX sockets are scoped to the domain.
    """
    abi = abi_version()
    if abi is None:
        raise OSError(38, "Landlock is not available on this kernel")
    handled = _handled_fs(abi)
    attr = _RulesetAttr(handled_access_fs=handled, handled_access_net=0, scoped=0)
    size = 8
    if abi >= 4:
        size = 16
        if deny_tcp:
            attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
    if abi >= 6:
        size = 24
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
    ruleset_fd = syscall(_SYS_CREATE_RULESET, ctypes.addressof(attr), size, 0)
    try:
        for path in read_paths:
            _add_path(ruleset_fd, path, _READ, handled)
        for path in read_write_files:
            _add_path(ruleset_fd, path, READ_FILE | WRITE_FILE, handled)
        for path in write_paths:
            if not _add_path(ruleset_fd, path, _WRITE, handled):
                raise FileNotFoundError(2, f"writable sandbox directory {path} does not exist")
        syscall(_SYS_RESTRICT_SELF, ruleset_fd, 0)
    finally:
        os.close(ruleset_fd)
    return abi
