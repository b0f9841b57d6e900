"""Fuzz hub.lock parsing (securehub/config/lockfile.py): a Lockfile or ``lock-invalid``, never anything else."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from securehub.config.lockfile import Lockfile
from securehub.errors import LockInvalid
from tests.fuzz._harness import json_bytes, run_parser

_URL = "https://download.example.org/models/resnet18-f37072fd.pth"

BASE: dict[str, Any] = {
    "version": 1,
    "artifacts": {_URL: {"sha256": "a" * 64, "size": 46830571}},
    "repos": {
        "owner/repo:v1.2": {
            "remote": "https://github.com/owner/repo.git",
            "ref": "v1.2",
            "ref_type": "tag",
            "commit": "1" * 40,
            "tree_sha256": "2" * 64,
            "entrypoints": {
                "resnet18": {
                    "artifacts": [_URL],
                    "args": {"pretrained": True, "layers": [1, 2, {"x": None}]},
                    "example_inputs": [{"dtype": "float32", "shape": [1, 3, 224, 224]}],
                }
            },
        }
    },
    "signature": {"keyid": "ab" * 8, "alg": "ed25519", "sig": "AAAA"},
}


def _parse(data: bytes) -> Lockfile | None:
    lock = run_parser("lockfile", lambda: Lockfile.parse(data), (LockInvalid,))
    if lock is not None:
        # A lock that parses serialises canonically, and that form is a fixed point.
        canonical = lock.to_bytes()
        assert Lockfile.parse(canonical).to_bytes() == canonical
    return lock


@given(json_bytes(BASE))
@example(b'{"version": 1, "repos": {}, "artifacts": {}, "version": 1}')
@example(b"[" * 100_000)
@example(b'{"version": 1e400}')
@example(b'{"version": ' + b"9" * 5000 + b"}")
def test_fuzz_lockfile_mutated_documents(data: bytes) -> None:
    _parse(data)


@given(st.binary(max_size=512))
def test_fuzz_lockfile_random_bytes(data: bytes) -> None:
    _parse(data)
