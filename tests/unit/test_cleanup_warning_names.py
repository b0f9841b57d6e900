"""Red team 11 (hardening): the run-dir cleanup warning quotes a path the child may have named.

``CleanupError.filename`` is the directory being emptied, which can be one the child created, with
an escape sequence in its name. Not reachable as root or with the identity uid map (the parent can
always remove what the child left), so the failure is simulated; the warning is printed raw by
Python's ``warnings`` machinery, hence sanitised where it is made.
"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path

import pytest

from securehub.sandbox.parent import spawn
from securehub.sandbox.parent.cleanup import CleanupError


def test_cleanup_warning_shows_a_child_chosen_directory_name_without_its_escape_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = str(tmp_path / "run" / "\x1b]52;c;b3duZWQ=\x07\x1b[2Kdir\u202e")

    def fail(path: Path) -> None:
        raise CleanupError(errno.EACCES, "cannot remove the run directory: Permission denied", hostile)

    monkeypatch.setattr(spawn, "remove_tree", fail)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spawn._rmtree(tmp_path / "run")
    [warning] = caught
    text = str(warning.message)
    assert issubclass(warning.category, spawn.SandboxCleanupWarning)
    assert not any(ch in text for ch in "\x1b\x07\u202e"), text
    assert "dir" in text and str(tmp_path / "run") in text
