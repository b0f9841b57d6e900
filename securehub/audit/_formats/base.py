"""The :class:`Formatter` interface every audit report format implements, and the atomic writer."""

from __future__ import annotations

import abc
from pathlib import Path

from securehub._util.atomic import write_bytes
from securehub.audit.model import AuditReport

__all__ = ["Formatter", "write_atomic"]


class Formatter(abc.ABC):
    """Turns an audit report into one document (text ending with a newline)."""

    @abc.abstractmethod
    def render(self, report: AuditReport) -> str:
        """The whole document for ``report``."""


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (old file or new one, never a partial report);
    an existing file's permission bits are kept, a new file gets 0644."""
    write_bytes(target, data)
