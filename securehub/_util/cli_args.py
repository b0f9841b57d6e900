"""``--arg K=V`` options written into remedies: a command securehub suggests parses back to the same values.

The CLI reads V as JSON when it parses as JSON, otherwise as a string
(SPEC section 10). So a remedy must write V as JSON (the string ``"8"``
written bare would come back as the number 8) and quote it for the shell
(``[1, 2]`` or ``a b`` unquoted would split into several words).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from typing import Any

__all__ = ["arg_options"]


def arg_options(kwargs: Mapping[str, Any]) -> list[str]:
    """One ``--arg K=V`` per keyword, sorted by name, that a POSIX shell and ``securehub`` read back as ``kwargs``.

    V is compact JSON; the ``K=V`` word is shell-quoted only when it needs it
    (``--arg depth=2`` stays readable). The values must be JSON-serialisable
    (hub.lock records arguments as JSON).
    """
    return [
        "--arg " + shlex.quote(f"{key}={json.dumps(value, separators=(',', ':'))}")
        for key, value in sorted(kwargs.items())
    ]
