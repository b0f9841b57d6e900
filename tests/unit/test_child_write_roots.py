"""The child's audit hook names writes outside the directory Landlock lets it write, and only those.

Before round 9 its write roots were ``TMPDIR`` alone, so a repository writing under ``HOME`` (inside
the child's directory, writable by Landlock and by docs/sandbox.md) -- ProxylessNAS's and
once-for-all's ``download_url`` into ``~/.torch`` -- failed as a ``sandbox-violation`` ("open
.../child/home/.torch/... for writing") although the OS allowed it. End to end:
tests/integration/test_real_hub_zoo9.py::test_proxyless_fork_builds_from_its_downloaded_net_config.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from securehub.sandbox.child.audit import Watch
from securehub.sandbox.child.runtime import _write_roots


@pytest.fixture
def child_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run directory laid out as the parent makes it: cwd ``child/`` holding ``home/`` and ``tmp/``."""
    child = tmp_path / "child"
    (child / "home").mkdir(parents=True)
    (child / "tmp").mkdir()
    monkeypatch.chdir(child)
    monkeypatch.setenv("HOME", str(child / "home"))
    monkeypatch.setenv("TMPDIR", str(child / "tmp"))
    monkeypatch.setattr("tempfile.tempdir", str(child / "tmp"))
    return child


def _writes(watch: Watch, path: Path) -> list[str]:
    watch.violations.clear()
    watch.on_event("open", (str(path), "wb", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    return list(watch.violations)


def test_home_and_tmp_inside_the_child_directory_are_writable(child_dir: Path) -> None:
    assert _write_roots() == (str(child_dir.resolve()), str((child_dir / "tmp").resolve()))
    watch = Watch(write_roots=_write_roots(), read_roots=(), active=True)
    for inside in (child_dir / "home" / ".torch" / "proxyless_nas" / "proxyless_cpu.config",
                   child_dir / "home" / ".cache" / "torch" / "hub" / "checkpoints" / "w.pth",
                   child_dir / "tmp" / "x.bin", child_dir / "scratch.json"):  # fmt: skip
        assert _writes(watch, inside) == [], inside


def test_writes_outside_the_child_directory_are_still_named(child_dir: Path) -> None:
    watch = Watch(write_roots=_write_roots(), read_roots=(), active=True)
    outside = child_dir.parent / "dropped.py"
    assert _writes(watch, outside) == [f"open {outside.resolve()} for writing"]
    sibling = child_dir.parent / "child-other" / "home" / "x"  # a prefix of the root's name is not inside it
    assert _writes(watch, sibling) == [f"open {sibling.resolve()} for writing"]
