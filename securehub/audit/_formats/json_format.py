"""The JSON audit report: one document, sorted keys, ``"schema": "securehub-audit/1"``.

The document is :meth:`AuditReport.to_dict`; strings are escaped to ASCII, so
no control character from the lock or a remote appears raw.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from securehub.audit._formats.base import Formatter

if TYPE_CHECKING:
    from securehub.audit.model import AuditReport

__all__ = ["JSONFormatter"]


class JSONFormatter(Formatter):
    """Machine-readable report for scripts and archives."""

    def render(self, report: AuditReport) -> str:
        return json.dumps(report.to_dict(), sort_keys=True, indent=2, ensure_ascii=True) + "\n"
