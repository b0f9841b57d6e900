"""A repository that changes its own files (silero-models' ``init_jit_model`` makes ``<repo>/src/silero/model``).

torch.hub lets hubconf write into its checkout; securehub's tree is the pinned, verified content and
Landlock refuses the ``mkdir`` (``EACCES``). Before round 13 the audit hook did not see ``os.mkdir``, so
the load failed as ``entrypoint-error: ... raised PermissionError: [Errno 13] Permission denied: '<tree>/...'``,
naming neither the refused action nor what to do. Now file system changes outside the write roots are
recorded as attempts (not violations: ``os.makedirs(..., exist_ok=True)`` on an existing directory fails
with ``EEXIST`` and the code goes on), named when the entrypoint then fails with a permission error,
with what to do when they touch the tree. End to end:
tests/integration/test_real_hub_zoo13.py::test_silero_init_jit_model_mkdir_in_the_tree_is_a_named_violation.
"""

from __future__ import annotations

import os
from pathlib import Path

from securehub.sandbox.child.audit import Watch
from securehub.sandbox.child.runtime import _TREE_HINT, _failure_from


def _refused(path: Path) -> PermissionError:
    err = PermissionError(13, "Permission denied")
    err.filename = str(path)
    return err


def test_file_system_changes_outside_the_write_roots_are_attempts(tmp_path: Path) -> None:
    child = tmp_path / "child"
    watch = Watch(write_roots=(str(child.resolve()),), read_roots=(), active=True)
    tree = tmp_path / "tree"
    watch.on_event("os.mkdir", (str(tree / "src" / "model"), 0o777, None))
    watch.on_event("os.rename", (str(child / "a.part"), str(tree / "w.pt"), None, None))
    watch.on_event("os.remove", (os.fsencode(tree / "hubconf.py"), None))
    watch.on_event("os.chmod", (3, 0o644, None))  # a file descriptor: not a path to name
    # inside the child's own directory: nothing recorded
    watch.on_event("os.mkdir", (str(child / "home" / ".torch"), 0o777, None))
    watch.on_event("os.rename", (str(child / "a.part"), str(child / "a"), None, None))
    assert watch.violations == []  # attempts only: an entrypoint that goes on after EEXIST still loads
    assert watch.attempts == [
        f"mkdir {(tree / 'src' / 'model').resolve()}",
        f"rename {(tree / 'w.pt').resolve()}",
        f"remove {(tree / 'hubconf.py').resolve()}",
    ]


def test_a_refused_mkdir_in_the_tree_is_a_violation_saying_what_to_do(tmp_path: Path) -> None:
    tree = tmp_path / "trees" / "abc"
    model_dir = tree / "src" / "silero" / "model"
    watch = Watch(write_roots=(str(tmp_path / "child"),), read_roots=(str(tree),), active=True)
    watch.on_event("os.mkdir", (str(model_dir), 0o777, None))
    failure = _failure_from(_refused(model_dir), watch, "entrypoint 'silero_stt'", tree)
    assert failure.code == "sandbox-violation"
    assert failure.message.startswith(
        f"the repository's code attempted a forbidden action: mkdir {model_dir.resolve()}; "
        "entrypoint 'silero_stt' then failed with PermissionError"
    )
    assert failure.message.endswith(_TREE_HINT)
    assert "read-only in the sandbox" in failure.message and "torch.hub.get_dir()" in failure.message


def test_a_write_into_the_tree_gets_the_hint_and_one_elsewhere_does_not(tmp_path: Path) -> None:
    tree = tmp_path / "trees" / "abc"
    watch = Watch(write_roots=(str(tmp_path / "child"),), read_roots=(), active=True)
    watch.on_event("open", (str(tree / "latest_silero_models.yml"), "w", os.O_WRONLY | os.O_CREAT))
    failure = _failure_from(_refused(tree / "latest_silero_models.yml"), watch, "entrypoint 'e'", tree)
    assert failure.code == "sandbox-violation" and failure.message.endswith(_TREE_HINT)
    # a sibling whose name starts with the tree's is not in it; /etc is not the repository's
    for outside in (tmp_path / "trees" / "abcd" / "x", Path("/etc/x")):
        watch = Watch(write_roots=(str(tmp_path / "child"),), read_roots=(), active=True)
        watch.on_event("os.mkdir", (str(outside), 0o777, None))
        failure = _failure_from(_refused(outside), watch, "entrypoint 'e'", tree)
        assert failure.code == "sandbox-violation"
        assert f"mkdir {outside.resolve()}" in failure.message and _TREE_HINT not in failure.message
    # no permission error: the attempt alone is not a refusal (makedirs' EEXIST is caught by the code)
    watch = Watch(write_roots=(), read_roots=(), active=True)
    watch.on_event("os.mkdir", (str(tree / "model"), 0o777, None))
    failure = _failure_from(ValueError("bad config"), watch, "entrypoint 'e'", tree)
    assert failure.code == "entrypoint-error" and "mkdir" not in failure.message
