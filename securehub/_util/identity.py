"""Which file, in which state: the identity a digest computed earlier may be reused for.

A digest read from a file is reused (not recomputed) only while the file still has the
identity it had when it was read: the same inode and the same size and times that any
write, ``chmod`` or ``utime`` would change. Plain data, no torch: the result store checks
identities in commands that never load a tensor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["FileIdentity"]


@dataclass(frozen=True)
class FileIdentity:
    """Which file, in which state: an inode and the times any write, ``chmod`` or ``utime`` would change."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        """The identity of the file ``st`` describes."""
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
