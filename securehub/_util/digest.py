"""sha256 of a file on disk, the one way every part of securehub hashes files; and of entrypoint arguments."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from securehub._util.canonical import canonical_json

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB chunks.

    Opened with ``O_NOFOLLOW``: a symlink planted where a cached file should
    be is an error (``OSError``), never silently followed to other content.
    """
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def args_sha256(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """Digest of the entrypoint arguments as canonical JSON.

    ``sha256(json.dumps({"args": [...], "kwargs": {...}}, sort_keys=True,
    separators=(",", ":")))``: what the audit log records as ``args_sha256``
    and what keys a pinned output in hub.lock (``entrypoints.*.outputs``).
    """
    blob = canonical_json({"args": list(args), "kwargs": dict(kwargs)}, ascii_only=True, allow_nan=True, default=repr)
    return hashlib.sha256(blob).hexdigest()
