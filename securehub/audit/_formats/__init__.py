"""Audit report formats: one :class:`Formatter` per ``--format`` value, chosen by :func:`formatter_for`.

Every formatter is a pure function of the :class:`~securehub.audit.report.AuditReport`:
the same report renders to the same text (no timestamps, no random ids). No
format emits a raw control character: the text format sanitises every string
from the lock or a remote, the JSON formats escape everything outside ASCII.
"""

from __future__ import annotations

import abc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - Python 3.10; typing_extensions comes with torch
    from typing_extensions import assert_never

from securehub._util.atomic import write_bytes
from securehub.audit.report import ReportFormat

if TYPE_CHECKING:
    from securehub.audit.report import AuditReport

__all__ = ["Formatter", "formatter_for", "write_atomic"]


class Formatter(abc.ABC):
    """Turns an audit report into one document (text ending with a newline)."""

    @abc.abstractmethod
    def render(self, report: AuditReport) -> str:
        """The whole document for ``report``."""


def formatter_for(fmt: ReportFormat) -> Formatter:
    """The formatter for ``fmt``."""
    from securehub.audit._formats.cyclonedx import CycloneDXFormatter
    from securehub.audit._formats.json_format import JSONFormatter
    from securehub.audit._formats.sarif import SARIFFormatter
    from securehub.audit._formats.text import TextFormatter

    if fmt is ReportFormat.TEXT:
        return TextFormatter()
    if fmt is ReportFormat.JSON:
        return JSONFormatter()
    if fmt is ReportFormat.SARIF:
        return SARIFFormatter()
    if fmt is ReportFormat.CYCLONEDX:
        return CycloneDXFormatter()
    assert_never(fmt)


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically (old file or new one, never a partial report);
    an existing file's permission bits are kept, a new file gets 0644."""
    write_bytes(target, data)
