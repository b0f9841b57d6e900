"""Fetching: one pinned commit's tree, exported safely, and its ``tree_sha256`` (SPEC section 5).

- :mod:`securehub.fetch.gitfetch` - ``fetch_commit``: a bare repo holding exactly the pinned commit.
- :mod:`securehub.fetch.tree` - ``export_tree`` (safe, read-only export), ``tree_sha256``,
  ``manifest_sha256``, ``scan_tree`` (local directories) and the path rules.
- :mod:`securehub.fetch.artifacts` - artifact downloads (separate module).

The content-addressed store that ties these together is :mod:`securehub.store.cache`.

This package's ``__init__`` re-exports nothing: import from the modules
(issue 9: the re-exports made ``fetch`` and ``fetch.tree`` import each other).
"""
