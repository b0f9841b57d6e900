"""Linux isolation mechanisms used by the child's bootstrap (and probed by the parent).

Every module here imports only the standard library: the bootstrap loads them
before anything else, without running ``securehub/__init__.py``. Functions
either achieve what they say or raise ``OSError``; none falls back silently.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

__all__ = ["IS_LINUX", "IS_X86_64", "libc", "prctl", "syscall"]

IS_LINUX = sys.platform.startswith("linux")
IS_X86_64 = platform.machine() in ("x86_64", "AMD64")

_LIBC: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, with errno captured (``ctypes.get_errno``)."""
    global _LIBC  # noqa: PLW0603 - one handle per process
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
        _LIBC.syscall.restype = ctypes.c_long
        _LIBC.prctl.restype = ctypes.c_int
        _LIBC.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return _LIBC


def syscall(nr: int, *args: int | ctypes.c_void_p | ctypes.Array[ctypes.c_char] | None) -> int:
    """Raw ``syscall(nr, *args)``; raises ``OSError`` with the errno on failure."""
    # Variadic call: every int must be widened to a C long explicitly (ctypes
    # would pass a 32-bit int and truncate pointers).
    cargs = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    ctypes.set_errno(0)
    ret = int(libc().syscall(ctypes.c_long(nr), *cargs))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"syscall {nr}: {os.strerror(err)}")
    return ret


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """``prctl(2)``; raises ``OSError`` on failure."""
    ctypes.set_errno(0)
    ret = int(libc().prctl(option, arg2, arg3, arg4, arg5))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return ret
