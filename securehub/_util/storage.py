"""Local storage exhaustion (disk full, quota, file-size limit) as a clean ``network`` refusal.

A full disk while the parent writes what a load produced (the sandbox's state file under the
cache's ``tmp/``, the result entry, the extracted tree) used to escape as a raw ``OSError``
traceback. :func:`storage_exhaustion` turns exactly those errnos into
:class:`~securehub.errors.NetworkError` -- the code SPEC section 9 already uses for a disk full
during a download ("the transfer into the cache failed") -- with what was being written, where,
and what to do. Every other ``OSError`` passes through unchanged: only storage exhaustion is
unambiguous whichever write raised it. Callers clean up their own partial work (temp dirs);
nothing here deletes anything.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from pathlib import Path

from securehub.errors import NetworkError

__all__ = ["STORAGE_ERRNOS", "storage_exhaustion"]

#: No space, no quota, over RLIMIT_FSIZE (SIGXFSZ ignored): the local storage is exhausted.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def storage_exhaustion(what: str, where: Path) -> Iterator[None]:
    """Raise ``NetworkError`` naming ``what`` and ``where`` if the block hits storage exhaustion."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise NetworkError(
            f"could not write {what} to {where} ({exc.strerror or type(exc).__name__}, errno {exc.errno}); "
            "expected free space in the securehub cache. Nothing was cached. Free disk space (or point "
            "SECUREHUB_DIR at a larger disk) and try again"
        ) from exc
