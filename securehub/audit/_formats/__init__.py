"""Audit report formats: one :class:`Formatter` per ``--format`` value, chosen by :func:`formatter_for`.

Every formatter is a pure function of the :class:`~securehub.audit.model.AuditReport`:
the same report renders to the same text (no timestamps, no random ids). No
format emits a raw control character: the text format sanitises every string
from the lock or a remote, the JSON formats escape everything outside ASCII.
"""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from typing import assert_never
else:  # pragma: no cover - Python 3.10; typing_extensions comes with torch
    from typing_extensions import assert_never

from securehub.audit._formats.base import Formatter, write_atomic
from securehub.audit._formats.cyclonedx import CycloneDXFormatter
from securehub.audit._formats.json_format import JSONFormatter
from securehub.audit._formats.sarif import SARIFFormatter
from securehub.audit._formats.text import TextFormatter
from securehub.audit.model import ReportFormat

__all__ = ["Formatter", "formatter_for", "write_atomic"]


def formatter_for(fmt: ReportFormat) -> Formatter:
    """The formatter for ``fmt``; mypy proves every :class:`ReportFormat` member has one (``assert_never``)."""
    if fmt is ReportFormat.TEXT:
        return TextFormatter()
    if fmt is ReportFormat.JSON:
        return JSONFormatter()
    if fmt is ReportFormat.SARIF:
        return SARIFFormatter()
    if fmt is ReportFormat.CYCLONEDX:
        return CycloneDXFormatter()
    assert_never(fmt)
