"""Remove a dead child's run directory: iteratively, without following symlinks.

Attack closed (issue 8, finding 4d): a hubconf built a 3000-deep directory
chain in its temp dir; ``shutil.rmtree`` recursed, raised ``RecursionError``
and left the ``securehub-sandbox-*`` directory behind. :func:`remove_tree`

- walks with directory file descriptors (``openat``/``unlinkat`` relative to
  the directory being emptied), so depth is bounded neither by the
  recursion limit nor by ``PATH_MAX``, and holds at most two descriptors;
- never follows a symlink: entries are examined with ``lstat`` semantics,
  directories are opened with ``O_NOFOLLOW``, and ``..`` is checked against
  the device/inode recorded on the way down;
- makes directories the child left unreadable/unsearchable (``mkdir`` with
  mode 0) usable again with ``fchmod`` before entering them (root does not
  need it; an unprivileged parent does), and removes files owned by the
  child's own uid (outside 65534) like any other;
- raises :class:`CleanupError` naming the path that could not be removed.

Call it only once every process of the child is dead: it is not written to
race a live writer.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["CleanupError", "remove_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class CleanupError(OSError):
    """A run directory could not be removed completely (``filename`` names where)."""


def _open_subdir(parent_fd: int, name: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError:
        # mkdir(mode=0) by the child: give ourselves access, then retry.
        # (chmod has no no-follow form on Linux; the entry was lstat'ed as a
        # directory and its writer is dead, so it cannot have become a link.)
        os.chmod(name, stat.S_IRWXU, dir_fd=parent_fd)
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)


def _first_subdir(fd: int) -> str | None:
    """Unlink every non-directory entry of ``fd``; return one subdirectory's name, if any."""
    found: str | None = None
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if found is None:
                    found = entry.name
            else:
                os.unlink(entry.name, dir_fd=fd)
    return found


def _moved() -> OSError:
    return OSError(18, "a directory was moved during removal")  # EXDEV


def _ensure_usable(fd: int) -> None:
    mode = os.fstat(fd).st_mode
    if mode & stat.S_IRWXU != stat.S_IRWXU:
        os.fchmod(fd, stat.S_IRWXU)


def remove_tree(root: Path) -> None:
    """Remove ``root`` and everything beneath it; see the module docstring.

    A missing ``root`` is not an error. ``root`` itself must not be a
    symlink (refused with :class:`CleanupError`).
    """
    try:
        fd = os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CleanupError(exc.errno, f"cannot open the run directory for removal: {exc.strerror}", str(root)) from exc
    names: list[str] = []  # path from root to the directory fd refers to
    idents: list[tuple[int, int]] = []  # (st_dev, st_ino) of each ancestor of fd
    try:
        while True:
            where = os.path.join(root, *names)  # noqa: PTH118 - for messages only
            try:
                _ensure_usable(fd)
                sub = _first_subdir(fd)
                if sub is not None:
                    st = os.fstat(fd)
                    child = _open_subdir(fd, sub)
                    os.close(fd)
                    fd = child
                    idents.append((st.st_dev, st.st_ino))
                    names.append(sub)
                    continue
                if not names:
                    break
                parent = os.open("..", _DIR_FLAGS, dir_fd=fd)
                pst = os.fstat(parent)
                if (pst.st_dev, pst.st_ino) != idents[-1]:
                    os.close(parent)
                    raise _moved()
                os.close(fd)
                fd = parent
                os.rmdir(names.pop(), dir_fd=fd)
                idents.pop()
            except OSError as exc:
                raise CleanupError(exc.errno, f"cannot remove the run directory: {exc.strerror}", where) from exc
    finally:
        os.close(fd)
    try:
        root.rmdir()
    except OSError as exc:
        raise CleanupError(exc.errno, f"cannot remove the sandbox run directory: {exc.strerror}", str(root)) from exc
