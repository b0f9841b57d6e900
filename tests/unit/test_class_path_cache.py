"""The memoised class-path checks (issue 11 item 6) decide exactly like the uncached ones.

Only ``realpath`` of existing paths (keyed by the path and the identity of its
target) and the raw sysconfig dirs are memoised; these tests change what a
memoised path names, or ``sys.path``, between two checks and expect the second
check to see the change.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import securehub.reconstruct.paths as paths
from securehub.errors import ReconstructRefused


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An extra installed root (like a second site-packages)."""
    root = tmp_path / "site"
    root.mkdir()
    real_roots = paths.installed_roots()
    monkeypatch.setattr(paths, "installed_roots", lambda: (*real_roots, root.resolve()))
    yield root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = tmp_path / "tree"
    t.mkdir()
    (t / "evil.py").write_text("X = 1\n")
    return t


def test_memoised_resolve_equals_a_fresh_resolve(site: Path, tree: Path) -> None:
    (site / "real").mkdir()
    (site / "real" / "m.py").write_text("")
    (site / "link").symlink_to(site / "real")
    for p in [site / "link" / "m.py", site / "link", tree / "evil.py", Path(sys.executable), site / "nope" / "x.py"]:
        for _ in range(2):  # second round is served from the memo where the path exists
            assert paths._resolve(str(p)) == p.resolve()


def test_missing_path_under_a_repointed_symlink_is_resolved_again(site: Path, tree: Path) -> None:
    """A sys.path entry that does not exist (python311.zip) resolves through its parent's memo entry."""
    (site / "real").mkdir()
    link = site / "lib"
    link.symlink_to(site / "real")
    missing = link / "python311.zip"
    assert paths._resolve(str(missing)) == (site / "real" / "python311.zip").resolve()
    link.unlink()
    link.symlink_to(tree)
    assert paths._resolve(str(missing)) == missing.resolve() == tree.resolve() / "python311.zip"
    dangling = site / "dangling"
    dangling.symlink_to(tree / "absent")
    assert paths._resolve(str(dangling / "x")) == (dangling / "x").resolve()


def test_replaced_file_is_not_served_from_the_memo(site: Path, tree: Path) -> None:
    target = site / "pkg" / "mod.py"
    target.parent.mkdir()
    target.write_text("")
    paths.check_installed_file(str(target), tree=tree, what="t")
    paths.check_installed_file(str(target), tree=tree, what="t")  # memoised now
    # the installed file is swapped for a symlink into the repository tree
    target.unlink()
    target.symlink_to(tree / "evil.py")
    with pytest.raises(ReconstructRefused) as exc:
        paths.check_installed_file(str(target), tree=tree, what="t")
    assert exc.value.code == "reconstruct-refused" and str(tree.resolve()) in str(exc.value)


def test_repointed_directory_symlink_is_not_served_from_the_memo(site: Path, tree: Path) -> None:
    (site / "real").mkdir()
    (site / "real" / "evil.py").write_text("X = 1\n")
    link = site / "pkgdir"
    link.symlink_to(site / "real")
    paths.check_installed_file(str(link / "evil.py"), tree=tree, what="t")
    link.unlink()
    link.symlink_to(tree)  # same file name, now inside the tree
    with pytest.raises(ReconstructRefused):
        paths.check_installed_file(str(link / "evil.py"), tree=tree, what="t")


def test_changed_sys_path_is_scrubbed_again(site: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = site.parent / "entry"
    entry.symlink_to(site)
    monkeypatch.setattr(sys, "path", [*sys.path, str(entry)])
    with paths._scrubbed_sys_path(paths._Scope.now(tree)):
        assert str(entry) in sys.path  # resolves into an installed root: kept
    # the same entry string now leads into the tree, and the tree itself is added
    entry.unlink()
    entry.symlink_to(tree)
    sys.path.append(str(tree))
    with paths._scrubbed_sys_path(paths._Scope.now(tree)):
        assert str(entry) not in sys.path and str(tree) not in sys.path
    assert str(entry) in sys.path and str(tree) in sys.path  # restored afterwards


def test_refused_path_stays_refused(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repo package on sys.path (and even imported) is refused on every call, not only the first."""
    (tree / "cachedevilpkg").mkdir()
    (tree / "cachedevilpkg" / "__init__.py").write_text("from torch import nn\nclass Net(nn.Module):\n    pass\n")
    monkeypatch.syspath_prepend(str(tree))
    try:
        for _ in range(2):
            with pytest.raises(ReconstructRefused) as exc:
                paths.resolve_installed(
                    "cachedevilpkg:Net", kind="module", trusted_modules=["cachedevilpkg"], tree=tree, what="t"
                )
            assert exc.value.code == "reconstruct-refused"
        import cachedevilpkg  # type: ignore[import-not-found]  # now in sys.modules: the file check refuses

        assert cachedevilpkg.Net is not None
        for _ in range(2):
            with pytest.raises(ReconstructRefused) as exc:
                paths.resolve_installed(
                    "cachedevilpkg:Net", kind="module", trusted_modules=["cachedevilpkg"], tree=tree, what="t"
                )
            assert str(tree.resolve()) in str(exc.value)
    finally:
        sys.modules.pop("cachedevilpkg", None)


def test_cwd_change_is_seen(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cwd is a forbidden dir: a file fine from one cwd is refused once the cwd contains it."""
    target = site / "pkg2" / "m.py"
    target.parent.mkdir()
    target.write_text("")
    monkeypatch.chdir(tmp_path)  # tmp_path contains site: but site is an installed root inside the cwd, fine
    paths.check_installed_file(str(target), tree=None, what="t")
    monkeypatch.chdir(target.parent)  # the cwd is now inside the installed root, around the file
    with pytest.raises(ReconstructRefused):
        paths.check_installed_file(str(target), tree=None, what="t")


_TRUSTED_REBUILD_WITHOUT_SYMPY = """
import sys, tempfile
from pathlib import Path
from torch import nn
from securehub.reconstruct.rebuild import reconstruct
from tests._reconstruct_helpers import record

_, config, state = record(lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), Path(tempfile.mkdtemp()))
model, strategy = reconstruct(config=config, state_path=state, export=None, strategies=["trusted", "export"],
                              tree=None, trusted_modules=["torch.nn"])
assert strategy == "trusted"
print("sympy" in sys.modules)
"""


def test_trusted_rebuild_does_not_import_the_export_strategy() -> None:
    """A warm hit of a torch.nn model spent 0.2-0.6 s importing sympy for the export strategy it never used."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _TRUSTED_REBUILD_WITHOUT_SYMPY], cwd=root, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


def test_non_string_sys_path_entries_are_judged_or_dropped(
    site: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Path object on sys.path is judged like its string; bytes (importlib ignores them) are dropped."""
    junk: list[object] = [site, tree, b"/usr/lib"]
    monkeypatch.setattr(sys, "path", [*sys.path, *junk])
    with paths._scrubbed_sys_path(paths._Scope.now(tree)):
        assert site in sys.path and tree not in sys.path and b"/usr/lib" not in sys.path
