"""Where securehub keeps its cache: set_dir() -> $SECUREHUB_DIR -> $XDG_CACHE_HOME/securehub -> ~/.cache/securehub."""

from __future__ import annotations

import os
from pathlib import Path

_override: Path | None = None


def set_dir(d: str | os.PathLike[str]) -> None:
    """Use ``d`` as the hub dir for this process (like ``torch.hub.set_dir``)."""
    global _override  # noqa: PLW0603 - process-wide setting, as in torch.hub
    _override = Path(os.fspath(d)).expanduser().absolute()


def get_dir() -> str:
    """The hub dir: ``set_dir()`` -> ``SECUREHUB_DIR`` -> ``$XDG_CACHE_HOME/securehub`` -> ``~/.cache/securehub``."""
    return str(hub_dir())


def hub_dir() -> Path:
    """Same as :func:`get_dir`, as a ``Path``."""
    if _override is not None:
        return _override
    env = os.environ.get("SECUREHUB_DIR")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).absolute() / "securehub"
    return Path.home() / ".cache" / "securehub"
