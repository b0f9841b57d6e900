"""Memory and file-size bounds on every git process :func:`securehub.resolve.git.run_git` starts.

A hostile git server is bounded in time by ``repos.git_timeout_s``; this bounds what git may use
meanwhile. Each git call starts through a tiny trampoline (``python -I -S -c``) that sets, for
itself and therefore for git and every helper git forks (``git-remote-http``, ``index-pack``):

- ``RLIMIT_AS`` = ``repos.git_memory_mb``: an endless ref advertisement (which ``ls-remote``
  collects in memory before printing anything) or a pack crafted to make ``index-pack`` allocate
  ends in an allocation failure, not in the machine swapping;
- ``RLIMIT_FSIZE`` = the largest file git may write, derived from ``repos.max_tree_bytes``: an
  endless pack's write fails (``EFBIG``) at that size instead of filling the disk
  (``fetch.unpackLimit=1`` keeps every fetched pack in that one file, never exploded into loose
  objects);
- ``RLIMIT_CORE`` = 0: a killed helper leaves no core file.

The trampoline exists because ``subprocess``'s ``preexec_fn`` is unsafe in a threaded process
(a lock held by another thread at ``fork`` time deadlocks the child). Limits are set before
``exec``, so no git process ever runs without them.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "GitLimits", "git_limits", "limit_hint", "limited_command", "pack_file_cap"]

_MIB = 1024 * 1024


def pack_file_cap(max_tree_bytes: int, max_files: int) -> int:
    """The largest file a fetch of one commit may write: its pack, for a tree within the limits.

    A depth-1 pack holds every blob once, zlib-compressed (at worst a fraction of a percent
    larger than the blob), plus per-object headers and the tree objects (bounded per file).
    A pack past this cap could only export to a tree over ``max_tree_bytes`` or ``max_files``,
    which the tree limits refuse anyway.
    """
    return max_tree_bytes + max_tree_bytes // 100 + 1024 * max_files + _MIB


@dataclass(frozen=True)
class GitLimits:
    """Per-process bounds for git: address space and largest file, in bytes."""

    memory_bytes: int
    max_file_bytes: int

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or self.max_file_bytes <= 0:
            raise ValueError(f"git limits must be positive, got {self!r}")


#: The bounds of the policy defaults (``repos.git_memory_mb: 4096``, ``max_tree_bytes`` 2 GiB,
#: ``max_files`` 100000), in force when no :func:`git_limits` block is active.
DEFAULT_LIMITS = GitLimits(memory_bytes=4096 * _MIB, max_file_bytes=pack_file_cap(2 * 1024**3, 100_000))

_LIMITS: contextvars.ContextVar[GitLimits] = contextvars.ContextVar("securehub_git_limits", default=DEFAULT_LIMITS)

# argv: <as bytes> <fsize bytes> <git path> <git args...>. -I -S: no site, no PYTHON* variables.
# Python ignores SIGPIPE and SIGXFSZ, and exec keeps an ignored signal ignored. SIGPIPE gets its
# default back (as subprocess's restore_signals gives git); SIGXFSZ stays ignored on purpose, so a
# write past RLIMIT_FSIZE fails with EFBIG, which git reports ("File too large"), instead of
# killing index-pack silently.
_TRAMPOLINE = (
    "import os,resource as r,signal as s,sys\n"
    "s.signal(s.SIGPIPE,s.SIG_DFL)\n"
    "a,f=int(sys.argv[1]),int(sys.argv[2])\n"
    "r.setrlimit(r.RLIMIT_AS,(a,a))\n"
    "r.setrlimit(r.RLIMIT_FSIZE,(f,f))\n"
    "r.setrlimit(r.RLIMIT_CORE,(0,0))\n"
    "os.execv(sys.argv[3],sys.argv[3:])\n"
)


@contextlib.contextmanager
def git_limits(memory_mb: int, max_file_bytes: int) -> Iterator[GitLimits]:
    """While active, every git process gets ``memory_mb`` MiB of address space and writes no file
    over ``max_file_bytes`` (the pipeline enters it with the policy's ``repos`` bounds)."""
    limits = GitLimits(memory_bytes=memory_mb * _MIB, max_file_bytes=max_file_bytes)
    token = _LIMITS.set(limits)
    try:
        yield limits
    finally:
        _LIMITS.reset(token)


def limited_command(git_path: str, args: Sequence[str]) -> list[str]:
    """The argv that runs ``git_path args...`` under the active limits (see the module docstring)."""
    limits = _LIMITS.get()
    return [
        sys.executable, "-I", "-S", "-c", _TRAMPOLINE,
        str(limits.memory_bytes), str(limits.max_file_bytes), git_path, *args,
    ]  # fmt: skip


def limit_hint(stderr: str) -> str:
    """A sentence naming the bound git hit, judged from its stderr, or ``""``."""
    limits = _LIMITS.get()
    low = stderr.lower()
    if "signal 25" in low or "file size limit" in low or "file too large" in low:
        return (
            f" git was stopped writing a file over {limits.max_file_bytes} bytes (the largest pack a tree "
            "within repos.max_tree_bytes and repos.max_files can need): the remote sent more than any "
            "allowed tree; nothing was kept."
        )
    if "out of memory" in low or "cannot allocate" in low or "mmap failed" in low:
        return (
            f" git ran out of its {limits.memory_bytes // _MIB} MiB of memory (repos.git_memory_mb): the "
            "remote's answer is too large; raise repos.git_memory_mb only if the repository needs it."
        )
    return ""
