"""An entrypoint argument naming a file of the caller's machine (yolov5's ``custom(path="best.pt")``).

The sandbox cannot read it, and must not: the read stays refused (``sandbox-violation`` for an absolute
path Landlock refuses, ``entrypoint-error`` for a relative one, looked up in the child's own working
directory). Before round 10 the message named the refused ``open`` only; now it names the argument and
says what to do. End to end: tests/integration/test_real_hub_zoo10.py::test_yolov5_custom_with_a_local_checkpoint_path.
"""

from __future__ import annotations

import os
from pathlib import Path

from securehub.sandbox.child.arg_paths import LOCAL_FILE_HINT, named_by_argument, path_arguments
from securehub.sandbox.child.audit import Watch
from securehub.sandbox.child.runtime import _failure_from


def test_string_arguments_are_labelled_as_the_message_names_them() -> None:
    assert path_arguments(("best.pt", 3, ""), {"path": "/w/best.pt", "autoshape": True, "device": None}) == [
        ("positional argument 1", "best.pt"),
        ("argument 'path'", "/w/best.pt"),
    ]


def test_the_argument_a_read_came_from(tmp_path: Path) -> None:
    best = tmp_path / "weights" / "best.pt"
    args = [("argument 'device'", "cpu"), ("argument 'path'", str(best))]
    assert named_by_argument(str(best), args) == ("argument 'path'", str(best))
    # a directory argument holding the file; a prefix of a name is not a directory holding it
    runs = [("argument 'weights_dir'", str(tmp_path / "weights"))]
    assert named_by_argument(str(best), runs) == runs[0]
    assert named_by_argument(str(tmp_path / "weights-old" / "best.pt"), runs) is None
    # a relative value matches only as spelled (the child resolves it in its own working directory)
    assert named_by_argument("best.pt", [("positional argument 1", "best.pt")]) == ("positional argument 1", "best.pt")
    assert named_by_argument(str(tmp_path / "best.pt"), [("positional argument 1", "best.pt")]) is None
    assert named_by_argument(str(best), [("argument 'device'", "cpu")]) is None


def _refused_read(path: Path) -> PermissionError:
    err = PermissionError(13, "Permission denied")
    err.filename = str(path)
    return err


def test_a_refused_read_of_an_argument_is_a_violation_saying_what_to_do(tmp_path: Path) -> None:
    best = tmp_path / "best.pt"
    watch = Watch(write_roots=(), read_roots=(), active=True)
    watch.on_event("open", (str(best), "rb", os.O_RDONLY))
    assert watch.attempts == [f"open {best.resolve()}"] and watch.violations == []
    wrapped = Exception("Cache may be out of date")
    wrapped.__cause__ = _refused_read(best)  # yolov5's _create re-raises with `from e`
    failure = _failure_from(wrapped, watch, "entrypoint 'custom'", tmp_path / "tree",
                            path_arguments((), {"path": str(best)}))  # fmt: skip
    assert failure.code == "sandbox-violation"
    assert failure.message.startswith(f"the repository's code attempted a forbidden action: open {best.resolve()}")
    assert failure.message.endswith(f". The entrypoint's argument 'path' names {str(best)!r}{LOCAL_FILE_HINT}")
    # the same refusal without an argument naming the file: named as before, no hint
    watch = Watch(write_roots=(), read_roots=(), active=True)
    watch.on_event("open", (str(best), "rb", os.O_RDONLY))
    failure = _failure_from(wrapped, watch, "entrypoint 'custom'", tmp_path / "tree", [("argument 'x'", "cpu")])
    assert failure.code == "sandbox-violation" and LOCAL_FILE_HINT not in failure.message


def test_a_missing_relative_file_an_argument_named_says_where_it_was_looked_up(tmp_path: Path) -> None:
    missing = FileNotFoundError(2, "No such file or directory")
    missing.filename = "best.pt"
    wrapped = Exception("Cache may be out of date")
    wrapped.__cause__ = missing
    watch = Watch(write_roots=(), read_roots=(), active=True)
    failure = _failure_from(wrapped, watch, "entrypoint 'custom'", tmp_path / "tree",
                            path_arguments(("best.pt",), {}))  # fmt: skip
    assert failure.code == "entrypoint-error"
    assert (
        "positional argument 1 names 'best.pt', a file of this machine: a relative path is looked up in the "
        "sandbox's own empty working directory, not yours" in failure.message
    )
    assert failure.message.endswith(LOCAL_FILE_HINT)
    # a file the repository itself misses (no argument names it) is the entrypoint's error, as before
    failure = _failure_from(wrapped, watch, "entrypoint 'custom'", tmp_path / "tree", path_arguments(("x.pt",), {}))
    assert failure.code == "entrypoint-error" and LOCAL_FILE_HINT not in failure.message
