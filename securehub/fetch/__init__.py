"""Fetching: one pinned commit's tree, exported safely, and its ``tree_sha256`` (SPEC section 5).

- :mod:`securehub.fetch.gitfetch` - ``fetch_commit``: a bare repo holding exactly the pinned commit.
- :mod:`securehub.fetch.tree` - ``export_tree`` (safe, read-only export), ``tree_sha256``,
  ``manifest_sha256``, ``scan_tree`` (local directories) and the path rules.
- :mod:`securehub.fetch.artifacts` - artifact downloads (separate module).

The content-addressed store that ties these together is :mod:`securehub.store.cache`.
"""

from __future__ import annotations

from securehub.fetch.gitfetch import fetch_commit
from securehub.fetch.tree import (
    TreeEntry,
    TreeManifest,
    check_tree_path,
    export_tree,
    manifest_sha256,
    scan_tree,
    tree_sha256,
)

__all__ = [
    "TreeEntry",
    "TreeManifest",
    "check_tree_path",
    "export_tree",
    "fetch_commit",
    "manifest_sha256",
    "scan_tree",
    "tree_sha256",
]
