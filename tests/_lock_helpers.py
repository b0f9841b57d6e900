"""Shared builders for lock-signature tests: a one-repo hub.lock and Ed25519 key pairs."""

from __future__ import annotations

import pathlib
from typing import Any

from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, Lockfile, RepoEntry
from securehub.verify.signature import generate_keypair

URL = "https://download.example.org/m/resnet18-f37072fd.pth"


def one_repo_lock(commit: str, tree_sha256: str, **entrypoint: Any) -> Lockfile:
    """A lock with artifact ``URL`` and repo ``owner/repo:v1`` (tag v1 at ``commit``) whose
    entrypoint ``resnet18`` may fetch ``URL``; ``entrypoint`` adds EntrypointEntry fields."""
    return (
        Lockfile.empty()
        .with_artifact(URL, ArtifactEntry(sha256="a" * 64, size=1234))
        .with_repo(
            "owner/repo:v1",
            RepoEntry(
                remote="https://github.com/owner/repo.git",
                ref="v1",
                ref_type="tag",
                commit=commit,
                tree_sha256=tree_sha256,
                entrypoints={"resnet18": EntrypointEntry(artifacts=(URL,), **entrypoint)},
            ),
        )
    )


def keypair(directory: pathlib.Path, name: str) -> tuple[pathlib.Path, str]:
    """A fresh Ed25519 key pair ``directory/name.key``: the private key path and the public key text."""
    key, pub = generate_keypair(directory / name)
    return key, pub.read_text().strip()
