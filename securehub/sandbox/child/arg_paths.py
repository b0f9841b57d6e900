"""What to tell the user when an entrypoint argument names a file of their machine (runs in the child).

yolov5's ``custom(path="runs/train/exp/weights/best.pt")`` and many hubconfs like it take a local
checkpoint path and ``torch.load`` it. The sandbox reads only the repository tree, the Python
installation and the artifacts securehub handed over, so that read fails: with ``EACCES`` (Landlock)
for an absolute path, or as a missing file for a relative one (the child's working directory is its
private temporary directory, not the caller's). Neither is widened: an argument cannot make the
child read the caller's files. These helpers only find the argument the failed read came from, so
the message says which argument it was and what to do instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["LOCAL_FILE_HINT", "named_by_argument", "path_arguments"]

LOCAL_FILE_HINT = (
    "; the sandbox cannot read files of this machine (only the repository tree and the artifacts "
    "securehub downloaded and verified), whatever an argument names. Serve the file over https (or "
    "http on loopback) and download it in the entrypoint with torch.hub.load_state_dict_from_url or "
    "torch.hub.download_url_to_file (verified and recorded in hub.lock), or commit it to the repository "
    "you load and read it relative to hubconf.py (Path(__file__).parent); or build the model without it "
    "(e.g. pretrained=False) and load your weights into it in your own process"
)


def path_arguments(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(label, value)`` of every string argument, ``label`` as the message names it
    (``argument 'path'``, ``positional argument 1``)."""
    found = [(f"positional argument {i + 1}", v) for i, v in enumerate(args) if isinstance(v, str) and v]
    found += [(f"argument {k!r}", v) for k, v in kwargs.items() if isinstance(v, str) and v]
    return found


def named_by_argument(opened: str, arguments: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The argument whose value is the file ``opened`` (a resolved absolute path) or a directory holding
    it, or whose relative value is how the failed open spelled it; None when none is."""
    for label, value in arguments:
        if value == opened:
            return label, value
        if not value.startswith(("/", "~")):
            continue
        try:
            resolved = str(Path(value).expanduser().resolve())
        except (OSError, RuntimeError, ValueError):
            continue
        if opened == resolved or opened.startswith(resolved.rstrip("/") + "/"):
            return label, value
    return None
