"""securehub: a security-first, sandboxed replacement for torch.hub.

The public API mirrors ``torch.hub`` (SPEC section 2). Importing this package
is cheap: the functions that need torch, and the policy and lock models,
are imported on first use.
"""

from __future__ import annotations

import builtins
import importlib
from typing import TYPE_CHECKING, Any

from securehub._util.gc_pause import gc_paused
from securehub._util.hubdir import get_dir, set_dir
from securehub._util.version import __version__ as __version__  # `securehub.__version__` keeps working
from securehub.errors import SecureHubError
from securehub.verify.hashprefix import HASH_REGEX

if TYPE_CHECKING:
    from securehub.api import download_url_to_file, help, list, load, load_state_dict_from_url
    from securehub.config.lockfile import Lockfile
    from securehub.config.policy import Policy
    from securehub.pipeline.lock import check_lock, lock_repos

__all__ = [
    "HASH_REGEX",
    "Lockfile",
    "Policy",
    "SecureHubError",
    "check_lock",
    "download_url_to_file",
    "get_dir",
    "help",
    "list",
    "load",
    "load_state_dict_from_url",
    "lock_repos",
    "set_dir",
]

# Imported on first use: the sandbox child and the fork server import this package (its
# subpackages) but never need the policy or lock models (yaml and their schemas: ~60 ms a child).
_LAZY = {
    "Lockfile": "securehub.config.lockfile",
    "Policy": "securehub.config.policy",
    "load": "securehub.api",
    "list": "securehub.api",
    "help": "securehub.api",
    "load_state_dict_from_url": "securehub.api",
    "download_url_to_file": "securehub.api",
    "lock_repos": "securehub.pipeline.lock",
    "check_lock": "securehub.pipeline.lock",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'securehub' has no attribute {name!r}")

    with gc_paused():  # importing the pipeline with torch loaded: see securehub._util.gc_pause
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> builtins.list[str]:
    return sorted(__all__)
