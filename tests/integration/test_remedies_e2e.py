"""Remedies run for real: each failure's message names a command; running it (placeholders filled with
this fixture's values) fixes exactly that failure (issue 12: "make every error's remedy a command that
works"). The CLI runs as a subprocess against the loopback git server.

Every backticked command in securehub/ is parsed by tests/unit/test_remedy_commands.py; the artifact
re-pin remedy of audit (``lock --url URL --upgrade``) and ``load --force-reload`` / ``cache prune`` run
end to end in tests/integration/test_cli_contract.py.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from tests._servers import RepoHandle
from tests.integration.test_lock_cli import REPO, Cli, Result, cli, repo

__all__ = ["cli", "repo"]  # fixtures, re-exported for pytest

_COMMAND = re.compile(r"`securehub ([^`]+)`")


def run_remedy(cli: Cli, failure: Result, **values: str) -> Result:
    """Run the (last) command ``failure``'s error line suggests, with ``values`` for its placeholders."""
    assert failure.errors, failure.err
    commands = _COMMAND.findall(failure.errors[0])
    assert commands, f"no remedy command in {failure.errors[0]!r}"
    argv = shlex.split(commands[-1])
    argv = [values.get(word, word) for word in argv]
    assert not [w for w in argv if w.isupper() and w not in values], f"unfilled placeholder in {argv}"
    return cli(*argv)


def test_missing_lock_path_remedy_creates_that_lock(cli: Cli, repo: RepoHandle) -> None:
    target = cli.cwd / "locks dir" / "ci.lock"
    target.parent.mkdir()
    failed = cli("lock", "--check", "--lock", str(target))
    assert (failed.code, failed.codes()) == (1, ["lock-invalid"])
    assert str(target) in failed.errors[0]

    fixed = run_remedy(cli, failed, SPEC=f"{REPO}:v1")

    assert fixed.code == 0, fixed.err
    assert target.is_file() and not cli.lock_path.exists()
    assert cli("lock", "--check", "--lock", str(target)).code == 0


def test_moved_branch_remedy_repins_it(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:main").code == 0
    repo.commit({"pkg/net.py": "X = 2\n"})
    failed = cli("lock", "--check")
    assert (failed.code, failed.codes()) == (1, ["lock-drift"])

    fixed = run_remedy(cli, failed)

    assert fixed.code == 0, fixed.err
    assert cli.entry(f"{REPO}:main")["commit"] == repo.head_commit()
    assert cli("lock", "--check").code == 0


def test_repointed_tag_remedy_is_given_only_after_review_and_works(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    new = repo.commit({"pkg/net.py": "X = 3\n"})
    repo.force_tag("v1", new)
    failed = cli("lock", "--check")
    assert (failed.code, failed.codes()) == (1, ["lock-drift"])
    assert failed.errors[0].startswith("error[lock-drift]: critical:")
    assert "ask the publisher why" in failed.errors[0]

    fixed = run_remedy(cli, failed)

    assert fixed.code == 0, fixed.err
    assert cli("lock", "--check").code == 0


def test_spec_missing_from_lock_remedy_adds_it(cli: Cli, repo: RepoHandle) -> None:
    repo.tag("v2")
    assert cli("lock", f"{REPO}:v1").code == 0
    failed = cli("lock", "--check", f"{REPO}:v2")
    assert (failed.code, failed.codes()) == (1, ["lock-drift"])

    assert run_remedy(cli, failed).code == 0
    assert cli("lock", "--check", f"{REPO}:v2").code == 0


def test_unsigned_lock_remedy_signs_it(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    assert cli("keygen", "k").code == 0
    policy = tmp_path / "signed.yaml"
    pub = (cli.cwd / "k.pub").read_text().strip()
    policy.write_text(f"version: 1\nextends: strict\nsignatures:\n  trusted_keys: [{json.dumps(pub)}]\n")
    failed = cli("lock", "--check", "--policy", str(policy))
    assert (failed.code, failed.codes()) == (1, ["signature-invalid"])

    fixed = run_remedy(cli, failed, PRIVATE_KEY="k.key")

    assert fixed.code == 0, fixed.err
    assert cli("lock", "--check", "--policy", str(policy)).code == 0
