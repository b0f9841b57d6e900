"""What the real-repo zoo worlds of rounds 6-8 share: repo files with URL placeholders filled in, weights
served at upstream-like paths on the loopback artifact server, and entrypoints built directly (the
reference every load is compared with)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
from torch import nn

from securehub._util.determinism import preserved_rng, seed_all
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv
from tests._hubconf_import import imported_like_the_child

__all__ = ["ZOO_MARKS", "ZooWorld", "substituted"]

#: The marks of a real-repo zoo test module: a full sandbox, a generous per-test timeout (a module's first
#: test builds and locks the shared world), and the warnings upstream model code raises on import.
ZOO_MARKS = [
    NEEDS_FULL_SANDBOX,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def substituted(files: Mapping[str, str | bytes | None], names: Mapping[str, str]) -> dict[str, str | bytes]:
    """``files`` without ``None`` entries, each ``@NAME@`` in a text file replaced by ``names[NAME]``."""
    out: dict[str, str | bytes] = {k: v for k, v in files.items() if v is not None}
    for name, value in names.items():
        out = {k: v.replace(f"@{name}@", value) if isinstance(v, str) else v for k, v in out.items()}
    return out


class ZooWorld:
    """A module's repos and served weights. Subclasses set :attr:`url_paths` (name -> upstream-like path,
    ``@`` standing for the blob's hash prefix) and fill :attr:`files` (repo -> files) in ``__init__``."""

    url_paths: ClassVar[Mapping[str, str]] = {}

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.blobs: dict[str, bytes] = {}
        self.urls: dict[str, str] = {}
        self.files: dict[str, Any] = {}

    def _serve(self, name: str, blob: bytes) -> None:
        url = self.env.put(self.url_paths[name].replace("@", hashlib.sha256(blob).hexdigest()[:8]), blob)
        self.urls[name] = url
        self.blobs[url] = blob

    def direct(self, repo: str, entry: str, **kw: Any) -> nn.Module:
        """The entrypoint built here, as the child imports the repo (seeded like the sandbox)."""
        with preserved_rng(), imported_like_the_child(self.files[repo], self.tmp, self.blobs) as module:
            seed_all()
            model: nn.Module = getattr(module, entry)(**kw)
            return model
