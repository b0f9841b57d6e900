"""CLI basics (SPEC section 10): both entry points, usage errors, ``cache dir|verify|prune``.

Run as real subprocesses with the same controlled environment as ``test_lock_cli.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests._servers import RepoHandle
from tests.integration.test_lock_cli import REPO, Cli, cli, repo, snapshot

__all__ = ["cli", "repo"]  # fixtures, re-exported for pytest


def test_console_script_and_module_behave_the_same(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1", script=True).code == 0
    locked = cli.lock_path.read_bytes()
    assert cli("lock", f"{REPO}:v1").code == 0
    assert cli.lock_path.read_bytes() == locked
    repo.force_tag("v1", repo.commit({"pkg/net.py": "X = 9\n"}), annotated=True)

    for args in (("lock", "--check"), ("cache", "dir"), ("lock", "--check", "--policy", "nope.yaml"), ("frobnicate",)):
        via_module, via_script = cli(*args), cli(*args, script=True)
        assert (via_script.code, via_script.out, via_script.err) == (via_module.code, via_module.out, via_module.err)
    assert cli("lock", "--check", script=True).codes() == ["lock-drift"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("frobnicate",), id="unknown-verb"),
        pytest.param((), id="no-verb"),
        pytest.param(("sign",), id="sign-without-key"),
        pytest.param(("keygen",), id="keygen-without-prefix"),
        pytest.param(("cache",), id="cache-without-action"),
        pytest.param(("cache", "explode"), id="cache-unknown-action"),
        pytest.param(("lock", "--bogus"), id="unknown-option"),
        pytest.param(("lock", "--check", "--upgrade"), id="check-with-upgrade"),
        pytest.param(("lock", f"{REPO}:v1", "--arg", "not-a-pair"), id="arg-without-equals"),
        pytest.param(("lock", f"{REPO}:v1", "--arg", "1x=2"), id="arg-bad-key"),
        pytest.param(("lock",), id="lock-nothing-to-lock"),
    ],
)
def test_usage_errors_exit_2_and_write_nothing(cli: Cli, repo: RepoHandle, args: tuple[str, ...]) -> None:
    r = cli(*args)

    assert r.code == 2
    assert r.codes() == ["usage"]
    assert list(cli.cwd.iterdir()) == []
    assert not (cli.hub / "trees").exists() or list((cli.hub / "trees").iterdir()) == []


def test_cache_dir_prints_securehub_dir(cli: Cli) -> None:
    r = cli("cache", "dir")

    assert (r.code, r.err) == (0, "")
    assert r.out == f"{cli.hub}\n"


def test_cache_verify_clean_then_tampered(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    assert (clean := cli("cache", "verify")).code == 0
    assert clean.errors == []
    digest = cli.entry(f"{REPO}:v1")["tree_sha256"]
    victim = cli.hub / "trees" / digest / "pkg" / "net.py"
    os.chmod(victim, 0o644)
    victim.write_text("X = 666\n")

    r = cli("cache", "verify")

    assert r.code == 1
    assert r.codes() == ["hash-mismatch"]
    assert digest in r.errors[0]
    assert victim.read_text() == "X = 666\n"


def test_cache_prune(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    before = snapshot(cli.hub / "trees")

    r = cli("cache", "prune")

    assert (r.code, r.errors) == (0, [])
    assert snapshot(cli.hub / "trees") == before  # prune without a keep-set only clears stale tmp/
    assert cli("lock", "--check").code == 0


def test_cache_verify_on_empty_cache(cli: Cli, tmp_path: Path) -> None:
    r = cli("cache", "verify")

    assert (r.code, r.errors) == (0, [])


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_an_unwritable_audit_log_is_a_configuration_error_not_a_bug_or_a_hang(
    cli: Cli, repo: RepoHandle, tmp_path: Path, kind: str
) -> None:
    """SPEC section 11: every action appends a line; when it cannot (the log is a FIFO -- which would block
    the load forever -- or a directory), the command fails as a configuration error naming the file and what
    to do (exit 2), never as an "internal error" or a hang, and writes no hub.lock."""
    log = tmp_path / "audit-log"
    os.mkfifo(log) if kind == "fifo" else log.mkdir()
    r = cli("lock", f"{REPO}:v1", env={"SECUREHUB_AUDIT_LOG": str(log)})
    assert r.code == 2, r.errors
    assert r.errors == [
        f"error[usage]: cannot append to the audit log {log}: "
        + ("not a regular file (found a FIFO or socket)" if kind == "fifo" else "Is a directory")
        + "; expected a writable regular file (set SECUREHUB_AUDIT_LOG to one, or fix the hub directory); "
        "securehub does not act without its audit trail"
    ]
    assert not cli.lock_path.exists()
