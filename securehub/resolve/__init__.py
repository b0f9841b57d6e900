"""Spec parsing, ref rules and ref resolution (SPEC sections 2 and 3).

- :mod:`~securehub.resolve.spec` - ``repo_or_dir`` -> :class:`RepoSpec` (no network)
- :mod:`~securehub.resolve.refs` - ref syntax rules (no network)
- :mod:`~securehub.resolve.git` - the hardened git runner and ``ls-remote``
- :mod:`~securehub.resolve.resolver` - ref -> commit under the ref policy
"""

from __future__ import annotations

from securehub.resolve.git import RemoteRefs, ls_remote, run_git
from securehub.resolve.refs import check_ref_syntax, looks_like_commit_id
from securehub.resolve.resolver import ResolvedRef, resolve
from securehub.resolve.spec import RepoSpec, github_base_url, parse_spec

__all__ = [
    "RemoteRefs",
    "RepoSpec",
    "ResolvedRef",
    "check_ref_syntax",
    "github_base_url",
    "looks_like_commit_id",
    "ls_remote",
    "parse_spec",
    "resolve",
    "run_git",
]
