"""``replace_file`` writes *into* a device, FIFO or socket instead of renaming a regular file over it.

``securehub audit --output /dev/null`` (or ``cache export``, ``load --save``) renamed the report over the
node: as root, the machine's /dev/null became a regular file, and /dev/full's ENOSPC went unnoticed (red
team 15, noticed). Device nodes here are made in the test's own directory (tests run as root).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from securehub._util.atomic import is_special_file, write_bytes

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


def _node(path: Path, minor: int) -> Path:
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return path


@ROOT_ONLY
def test_a_device_is_written_into_and_stays_a_device(tmp_path: Path) -> None:
    null = _node(tmp_path / "null", 3)
    write_bytes(null, b"report")
    assert stat.S_ISCHR(null.stat().st_mode) and is_special_file(null)
    link = tmp_path / "out"
    link.symlink_to(null)  # /dev/stdout-style: a symlink to the node
    write_bytes(link, b"report")
    assert link.is_symlink() and stat.S_ISCHR(null.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null", "out"]  # no temp file left beside it


@ROOT_ONLY
def test_a_full_device_is_an_error_not_a_silent_success(tmp_path: Path) -> None:
    full = _node(tmp_path / "full", 7)
    with pytest.raises(OSError) as excinfo:
        write_bytes(full, b"report" * 1000)
    assert excinfo.value.errno == 28  # ENOSPC
    assert stat.S_ISCHR(full.stat().st_mode)


def test_a_fifo_without_a_reader_fails_at_once_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as excinfo:
        write_bytes(fifo, b"report")
    assert excinfo.value.errno == 6  # ENXIO
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_regular_file_is_still_replaced_atomically_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    target.chmod(0o600)
    write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not is_special_file(target) and not is_special_file(tmp_path / "missing")
