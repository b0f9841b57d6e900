"""``securehub lock`` end to end (SPEC sections 4 and 10), run as a real subprocess.

Every test drives ``python -m securehub`` against the loopback git smart-HTTP server, with
``SECUREHUB_GITHUB_URL`` at the server, ``SECUREHUB_DIR`` at a fresh hub dir,
``SECUREHUB_AUDIT_LOG`` at a temp file and a temp working directory. Assertions are on exact
exit codes, ``error[<code>]:`` lines on stderr and file contents.

The ``Cli`` helper and the ``cli``/``repo`` fixtures are imported by the other CLI test files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from securehub.fetch.tree import tree_sha256
from tests._servers import Exec, GitServer, RepoFactory, RepoHandle, Symlink, clean_git_env

REPO = "acme/models"
HUBCONF = 'dependencies = ["torch"]\n\ndef tiny():\n    """A tiny model."""\n    return None\n'


# --------------------------------------------------------------------------------------------
# helpers shared with test_cli_basics.py and tests/attacks/test_lock_drift_attacks.py
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One CLI run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def errors(self) -> list[str]:
        """The ``error[...]`` lines on stderr."""
        return [line for line in self.err.splitlines() if line.startswith("error[")]

    def codes(self) -> list[str]:
        """The error codes of :attr:`errors`, in order."""
        return [line[len("error[") : line.index("]")] for line in self.errors]


@dataclass
class Cli:
    """Runs ``python -m securehub`` (or the console script) with a controlled environment."""

    cwd: Path
    env: dict[str, str]
    hub: Path
    audit_log: Path
    server: GitServer
    extra: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, *args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None, script: bool = False
    ) -> Result:
        prog = [str(Path(sys.executable).parent / "securehub")] if script else [sys.executable, "-m", "securehub"]
        proc = subprocess.run(
            [*prog, *args],
            cwd=cwd or self.cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return Result(proc.returncode, proc.stdout, proc.stderr)

    @property
    def lock_path(self) -> Path:
        return self.cwd / "hub.lock"

    def lock_json(self) -> dict[str, object]:
        doc = json.loads(self.lock_path.read_bytes())
        assert isinstance(doc, dict)
        return doc

    def entry(self, key: str) -> dict[str, str]:
        repos = self.lock_json()["repos"]
        assert isinstance(repos, dict)
        entry = repos[key]
        assert isinstance(entry, dict)
        return entry

    def trees(self) -> list[str]:
        d = self.hub / "trees"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def audit_records(self) -> list[dict[str, object]]:
        if not self.audit_log.exists():
            return []
        return [json.loads(line) for line in self.audit_log.read_text().splitlines()]


@pytest.fixture
def cli(github_url: str, hub_dir: Path, git_server: GitServer, tmp_path: Path) -> Cli:
    """A CLI runner: cwd ``tmp/work``, hub dir ``hub_dir``, audit log ``tmp/audit.jsonl``."""
    work = tmp_path / "work"
    work.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    audit = tmp_path / "audit.jsonl"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "SECUREHUB_GITHUB_URL": github_url,
        "SECUREHUB_DIR": str(hub_dir),
        "SECUREHUB_AUDIT_LOG": str(audit),
    }
    return Cli(work, env, hub_dir, audit, git_server)


@pytest.fixture
def repo(repo_factory: RepoFactory) -> RepoHandle:
    """``acme/models`` with an annotated tag ``v1`` on its first commit (branch ``main``)."""
    handle = repo_factory.make_repo(
        REPO,
        {
            "hubconf.py": HUBCONF,
            "pkg/net.py": "X = 1\n",
            "run.sh": Exec("#!/bin/sh\necho hi\n"),
            "link": Symlink("pkg/net.py"),
        },
    )
    handle.tag("v1", annotated=True)
    return handle


def peeled(repo: RepoHandle, tag: str) -> str:
    return repo.git("rev-parse", f"refs/tags/{tag}^{{commit}}")


def exported_tree_sha256(repo: RepoHandle, commit: str, dest: Path) -> str:
    """Export ``commit`` with ``git archive`` (independently of securehub) and digest it."""
    dest.mkdir()
    archive = subprocess.run(
        ["git", "--git-dir", str(repo.path), "archive", "--format=tar", commit],
        capture_output=True,
        env=clean_git_env(),
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return tree_sha256(dest)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every regular file under ``directory`` with its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# the hub.lock format
# --------------------------------------------------------------------------------------------


def test_lock_writes_spec_section_4_format(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    tag_object = repo.git("rev-parse", "refs/tags/v1")
    commit = peeled(repo, "v1")
    assert tag_object != commit  # annotated: the lock must hold the peeled commit, not the tag object

    r = cli("lock", f"{REPO}:v1")

    assert (r.code, r.errors) == (0, [])
    raw = cli.lock_path.read_bytes()
    digest = exported_tree_sha256(repo, commit, tmp_path / "export")
    expected = {
        "artifacts": {},
        "repos": {
            f"{REPO}:v1": {
                "commit": commit,
                "entrypoints": {},
                "ref": "v1",
                "ref_type": "tag",
                "remote": f"{cli.server.base_url}/{REPO}.git",
                "tree_sha256": digest,
            }
        },
        "version": 1,
    }
    assert json.loads(raw) == expected
    assert raw == (json.dumps(expected, sort_keys=True, indent=2) + "\n").encode()
    assert cli.trees() == [digest]
    assert tree_sha256(cli.hub / "trees" / digest) == digest


def test_relock_is_byte_identical(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    first = cli.lock_path.read_bytes()

    r = cli("lock", f"{REPO}:v1")

    assert r.code == 0
    assert cli.lock_path.read_bytes() == first
    assert cli("lock").code == 0  # no SPEC: re-lock every entry
    assert cli.lock_path.read_bytes() == first


def test_locking_a_second_spec_keeps_the_first(cli: Cli, repo: RepoHandle) -> None:
    repo.commit({"pkg/net.py": "X = 2\n"})
    repo.tag("v2")
    assert cli("lock", f"{REPO}:v1").code == 0
    first = cli.entry(f"{REPO}:v1")

    assert cli("lock", f"{REPO}:v2").code == 0

    assert cli.entry(f"{REPO}:v1") == first
    assert cli.entry(f"{REPO}:v2")["commit"] == repo.head_commit()
    assert len(cli.trees()) == 2


def test_moved_tag_is_kept_without_upgrade_and_updated_with_it(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    before = cli.lock_path.read_bytes()
    old = peeled(repo, "v1")
    new = repo.commit({"pkg/net.py": "X = 3\n"})
    repo.force_tag("v1", new, annotated=True)

    kept = cli("lock", f"{REPO}:v1")

    assert kept.code == 0
    assert f"kept: {REPO}:v1" in kept.out
    assert cli.lock_path.read_bytes() == before
    assert cli.entry(f"{REPO}:v1")["commit"] == old

    upgraded = cli("lock", "--upgrade", f"{REPO}:v1")

    assert upgraded.code == 0
    assert f"upgraded: {REPO}:v1" in upgraded.out
    entry = cli.entry(f"{REPO}:v1")
    assert entry["commit"] == new
    assert entry["tree_sha256"] != json.loads(before)["repos"][f"{REPO}:v1"]["tree_sha256"]
    assert cli("lock", "--check").code == 0


# --------------------------------------------------------------------------------------------
# spec forms
# --------------------------------------------------------------------------------------------


def test_spec_without_ref_records_default_branch(cli: Cli, repo: RepoHandle) -> None:
    repo.branch("trunk")
    repo.set_head("trunk")

    r = cli("lock", REPO)

    assert r.code == 0
    entry = cli.entry(REPO)
    assert (entry["ref"], entry["ref_type"], entry["commit"]) == ("trunk", "branch", repo.head_commit())


def test_spec_without_ref_is_refused_under_strict(cli: Cli, repo: RepoHandle) -> None:
    r = cli("lock", "--policy", "strict", REPO)

    assert r.code == 1
    assert r.codes() == ["ref-not-allowed"]
    assert not cli.lock_path.exists()
    assert cli.trees() == []


def test_name_that_is_branch_and_tag_needs_a_prefix(cli: Cli, repo: RepoHandle) -> None:
    tag_commit = repo.head_commit()
    repo.tag("x")
    branch_commit = repo.commit({"pkg/net.py": "X = 4\n"}, branch="x", parent=tag_commit)

    ambiguous = cli("lock", f"{REPO}:x")

    assert ambiguous.code == 1
    assert ambiguous.codes() == ["ref-ambiguous"]
    assert not cli.lock_path.exists()
    assert cli.trees() == []

    assert cli("lock", f"{REPO}:heads/x", f"{REPO}:tags/x").code == 0
    heads, tags = cli.entry(f"{REPO}:heads/x"), cli.entry(f"{REPO}:tags/x")
    assert (heads["ref"], heads["ref_type"], heads["commit"]) == ("x", "branch", branch_commit)
    assert (tags["ref"], tags["ref_type"], tags["commit"]) == ("x", "tag", tag_commit)


def test_git_http_loopback_spec(cli: Cli, repo: RepoHandle) -> None:
    spec = f"git+{repo.url}@v1"

    assert cli("lock", spec).code == 0

    entry = cli.entry(spec)
    assert entry["remote"] == repo.url
    assert not entry["remote"].startswith("git+") and "@" not in entry["remote"]
    assert (entry["ref"], entry["ref_type"], entry["commit"]) == ("v1", "tag", peeled(repo, "v1"))
    assert list(cli.lock_json()["repos"]) == [spec]  # type: ignore[call-overload]


def test_git_file_spec(cli: Cli, repo: RepoHandle) -> None:
    spec = f"git+file://{repo.path}@v1"

    assert cli("lock", spec).code == 0

    entry = cli.entry(spec)
    assert entry["remote"] == f"file://{repo.path}"
    assert (entry["ref"], entry["ref_type"], entry["commit"]) == ("v1", "tag", peeled(repo, "v1"))


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        pytest.param("git+http://example.com/x.git@v1", "repo-not-allowed", id="plain-http-remote-host"),
        pytest.param("SHA", "ref-not-allowed", id="commit-sha-ref"),
        pytest.param("SHORTSHA", "ref-not-allowed", id="abbreviated-sha-ref"),
        pytest.param(f"{REPO}:v9", "ref-not-found", id="missing-tag"),
        pytest.param(f"{REPO}:pull/1/head", "ref-not-allowed", id="pull-ref"),
        pytest.param(f"{REPO}:refs/tags/v1", "ref-not-allowed", id="refs-prefix"),
        pytest.param(f"{REPO}:HEAD", "ref-not-allowed", id="HEAD"),
    ],
)
def test_refused_specs_write_nothing(cli: Cli, repo: RepoHandle, spec: str, code: str) -> None:
    repo.fork_commit({"evil.py": "import os\n"})
    sha = repo.head_commit()
    spec = {"SHA": f"{REPO}:{sha}", "SHORTSHA": f"{REPO}:{sha[:12]}"}.get(spec, spec)

    r = cli("lock", spec)

    assert r.code == 1
    assert r.codes() == [code]
    assert not cli.lock_path.exists()
    assert cli.trees() == []


def test_refused_spec_leaves_existing_lock_byte_identical(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    before = cli.lock_path.read_bytes()
    trees = cli.trees()

    r = cli("lock", f"{REPO}:v9", f"{REPO}:pull/1/head")

    assert r.code == 1
    assert r.codes() in (["ref-not-found"], ["ref-not-allowed"])
    assert cli.lock_path.read_bytes() == before
    assert cli.trees() == trees


def test_one_bad_spec_among_good_ones_writes_nothing(cli: Cli, repo: RepoHandle) -> None:
    r = cli("lock", f"{REPO}:v1", f"{REPO}:v9")

    assert r.code == 1
    assert r.codes() == ["ref-not-found"]
    assert not cli.lock_path.exists()
    # Nothing was pinned, so the only audit line is the failure (no "ok" for v1).
    assert [(rec["spec"], rec["code"]) for rec in cli.audit_records()] == [(f"{REPO}:v9", "ref-not-found")]


def test_example_input_without_entrypoint_is_usage_error(cli: Cli, repo: RepoHandle) -> None:
    """``--example-input`` belongs to ``-e`` (sandboxed recording, tested with the sandbox); alone it is misuse."""
    r = cli("lock", f"{REPO}:v1", "--example-input", "1x3x8x8:float32")

    assert r.code == 2
    assert r.codes() == ["usage"]
    assert not cli.lock_path.exists()
    assert cli.trees() == []
    assert cli.server.requests == []


# --------------------------------------------------------------------------------------------
# lock --check
# --------------------------------------------------------------------------------------------


def test_check_clean_lock(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1", REPO).code == 0
    before = snapshot(cli.cwd)

    r = cli("lock", "--check")

    assert (r.code, r.errors) == (0, [])
    assert snapshot(cli.cwd) == before


def test_check_moved_branch_is_non_critical_drift(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", REPO).code == 0
    before = cli.lock_path.read_bytes()
    repo.commit({"pkg/net.py": "X = 5\n"})

    r = cli("lock", "--check")

    assert r.code == 1
    assert r.codes() == ["lock-drift"]
    assert not r.errors[0].startswith("error[lock-drift]: critical:")
    assert "branch moved" in r.errors[0]
    assert cli.lock_path.read_bytes() == before


def test_check_reports_a_branch_that_now_shadows_a_locked_tag(cli: Cli, repo: RepoHandle) -> None:
    """A branch created with a locked tag's name (a known way to confuse users of the bare name): loads keep
    the pinned commit, but the bare name is now ambiguous, so `lock --check` says so (non-critical drift);
    specs that chose their kind (`tags/x`) are not reported."""
    assert cli("lock", f"{REPO}:v1", f"{REPO}:tags/v1").code == 0
    before = cli.lock_path.read_bytes()
    repo.commit({"pkg/net.py": "X = 6\n"}, branch="v1", parent=repo.head_commit())

    r = cli("lock", "--check")

    assert r.code == 1
    assert r.codes() == ["lock-drift"]
    assert not r.errors[0].startswith("error[lock-drift]: critical:")
    assert f"{REPO}:v1: branch 'v1' now exists next to the locked tag 'v1'" in r.errors[0]
    assert f"write {REPO}:tags/v1" in r.errors[0]
    assert cli.lock_path.read_bytes() == before


def test_check_spec_missing_from_lock(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    before = snapshot(cli.cwd)

    r = cli("lock", "--check", REPO)

    assert r.code == 1
    assert r.codes() == ["lock-drift"]
    assert snapshot(cli.cwd) == before


def test_check_without_lock_is_lock_invalid(cli: Cli, repo: RepoHandle) -> None:
    r = cli("lock", "--check")

    assert r.code == 1
    assert r.codes() == ["lock-invalid"]
    assert list(cli.cwd.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        pytest.param("trailing-comma", lambda t: t.replace('"version": 1', '"version": 1,', 1), id="trailing-comma"),
        pytest.param(
            "duplicate-key",
            lambda t: t.replace('"version": 1', '"version": 1,\n  "version": 1', 1),
            id="duplicate-key",
        ),
        pytest.param("bad-commit", lambda t: t.replace('"commit": "', '"commit": "zz', 1), id="bad-commit-hex"),
    ],
)
def test_check_malformed_lock_names_a_line(cli: Cli, repo: RepoHandle, name: str, mutate: object) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    text = cli.lock_path.read_text()
    assert callable(mutate)
    bad = mutate(text)
    assert bad != text
    cli.lock_path.write_text(bad)

    r = cli("lock", "--check")

    assert r.code == 1, name
    assert r.codes() == ["lock-invalid"]
    assert " line " in r.errors[0]
    assert cli.lock_path.read_text() == bad


# --------------------------------------------------------------------------------------------
# policy errors
# --------------------------------------------------------------------------------------------


def test_policy_file_with_unknown_key_is_exit_2(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nextends: default\nrepos:\n  alow: ['*']\n")

    r = cli("lock", "--policy", str(bad), f"{REPO}:v1")

    assert r.code == 2
    assert r.codes() == ["policy-invalid"]
    assert "alow" in r.errors[0]
    assert not cli.lock_path.exists()
    assert cli.trees() == []


def test_builtin_policy_name_works_from_any_cwd(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli("lock", "--policy", "strict", f"{REPO}:v1", cwd=elsewhere).code == 0

    r = cli("lock", "--check", "--policy", "strict", cwd=elsewhere)

    assert (r.code, r.errors) == (0, [])
    assert (elsewhere / "hub.lock").is_file()


# --------------------------------------------------------------------------------------------
# signatures through the CLI
# --------------------------------------------------------------------------------------------


def _signed_setup(cli: Cli, tmp_path: Path) -> Path:
    """Lock v1, make a key pair, sign; return a policy file trusting the key."""
    assert cli("lock", f"{REPO}:v1").code == 0
    assert cli("keygen", "k").code == 0
    assert cli("sign", "--key", "k.key").code == 0
    policy = tmp_path / "signed.yaml"
    pub = (cli.cwd / "k.pub").read_text().strip()
    policy.write_text(f"version: 1\nextends: strict\nsignatures:\n  trusted_keys: [{json.dumps(pub)}]\n")
    return policy


def test_keygen_writes_private_0600_and_raw_public_key(cli: Cli) -> None:
    import base64

    r = cli("keygen", "k")

    assert r.code == 0
    assert (cli.cwd / "k.key").stat().st_mode & 0o777 == 0o600
    assert len(base64.b64decode((cli.cwd / "k.pub").read_text().strip(), validate=True)) == 32


def test_keygen_refuses_to_overwrite(cli: Cli) -> None:
    assert cli("keygen", "k").code == 0
    before = snapshot(cli.cwd)

    r = cli("keygen", "k")

    assert r.code == 2
    assert r.errors
    assert snapshot(cli.cwd) == before


def test_signed_lock_checks_under_trusting_policy(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    policy = _signed_setup(cli, tmp_path)
    assert set(cli.lock_json()["signature"]) == {"keyid", "alg", "sig"}  # type: ignore[arg-type]

    r = cli("lock", "--check", "--policy", str(policy))

    assert (r.code, r.errors) == (0, [])


def test_unsigned_lock_is_refused_under_trusting_policy(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    policy = _signed_setup(cli, tmp_path)
    doc = cli.lock_json()
    del doc["signature"]
    cli.lock_path.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")

    r = cli("lock", "--check", "--policy", str(policy))

    assert r.code == 1
    assert r.codes() == ["signature-invalid"]


def test_relocking_signed_lock_drops_signature_and_warns(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    _signed_setup(cli, tmp_path)
    signed = cli.lock_path.read_bytes()
    assert cli("lock", f"{REPO}:v1").code == 0
    assert cli.lock_path.read_bytes() == signed  # nothing changed: the signature stays

    r = cli("lock", REPO)

    assert r.code == 0
    assert "signature" in r.err and "warning" in r.err
    doc = cli.lock_json()
    assert "signature" not in doc
    assert set(doc["repos"]) == {REPO, f"{REPO}:v1"}  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# audit log and secrets
# --------------------------------------------------------------------------------------------

AUDIT_KEYS = {
    "time",
    "action",
    "spec",
    "ref",
    "commit",
    "tree_sha256",
    "entrypoint",
    "args_sha256",
    "artifacts",
    "policy",
    "isolation",
    "strategy",
    "outcome",
    "code",
}


def test_audit_log_records_lock_and_refusal(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    assert cli("lock", f"{REPO}:pull/1/head").code == 1

    records = cli.audit_records()

    assert len(records) == 2
    assert all(set(rec) == AUDIT_KEYS for rec in records)
    ok, refused = records
    entry = cli.entry(f"{REPO}:v1")
    assert ok["action"] == "lock"
    assert (ok["outcome"], ok["code"], ok["spec"], ok["ref"]) == ("ok", None, f"{REPO}:v1", "v1")
    assert (ok["commit"], ok["tree_sha256"]) == (entry["commit"], entry["tree_sha256"])
    assert ok["policy"]["name"] == "default"  # type: ignore[index]
    assert len(ok["policy"]["sha256"]) == 64  # type: ignore[index]
    assert refused["action"] == "lock"
    assert (refused["outcome"], refused["code"], refused["spec"]) == (
        "refused",
        "ref-not-allowed",
        f"{REPO}:pull/1/head",
    )
    assert refused["commit"] is None


def test_token_never_appears_in_output_or_audit_log(cli: Cli, repo: RepoHandle) -> None:
    token = "ghp_" + "S3cr3tT0k3nV4lu3" * 2
    env = {"GITHUB_TOKEN": token, "SECUREHUB_GITHUB_TOKEN": token}
    results = [
        cli("lock", f"{REPO}:v1", env=env),
        cli("lock", f"{REPO}:nope", env=env),
        cli("lock", "--check", env=env),
        cli("lock", "--check", REPO, env=env),
    ]

    assert [r.code for r in results] == [0, 1, 0, 1]
    for r in results:
        assert token not in r.out and token not in r.err
    assert token not in cli.audit_log.read_text()
    assert token not in cli.lock_path.read_text()
    assert "S3cr3t" not in cli.audit_log.read_text()


# --------------------------------------------------------------------------------------------
# offline
# --------------------------------------------------------------------------------------------


def test_offline_check_needs_the_network(cli: Cli, repo: RepoHandle) -> None:
    """``--check`` re-resolves every ref, so offline it cannot conclude: ``offline``, exit 1.

    The cached tree is still verified (a drift-free answer needs the remote; nothing is assumed).
    """
    assert cli("lock", f"{REPO}:v1").code == 0
    before = cli.lock_path.read_bytes()
    cli.server.clear_log()

    r = cli("lock", "--check", env={"SECUREHUB_OFFLINE": "1"})

    assert r.code == 1
    assert r.codes() == ["offline"]
    assert cli.server.requests == []
    assert cli.lock_path.read_bytes() == before


def test_offline_lock_of_new_spec_makes_no_request(cli: Cli, repo: RepoHandle) -> None:
    cli.server.clear_log()

    r = cli("lock", f"{REPO}:v1", env={"SECUREHUB_OFFLINE": "1"})

    assert r.code == 1
    assert r.codes() == ["offline"]
    assert cli.server.requests == []
    assert cli.server.connections == 0
    assert not cli.lock_path.exists()
    assert cli.trees() == []


# --------------------------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------------------------


def test_concurrent_locks_share_one_cache(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    dirs = [tmp_path / f"w{i}" for i in range(8)]
    procs = []
    for d in dirs:
        d.mkdir()
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "securehub", "lock", f"{REPO}:v1"],
                cwd=d,
                env=cli.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=120) for p in procs]

    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outputs]
    locks = {(d / "hub.lock").read_bytes() for d in dirs}
    assert len(locks) == 1
    digest = json.loads(locks.pop())["repos"][f"{REPO}:v1"]["tree_sha256"]
    assert cli.trees() == [digest]
    assert tree_sha256(cli.hub / "trees" / digest) == digest
    assert cli("cache", "verify").code == 0


# --------------------------------------------------------------------------------------------
# where the lock lives
# --------------------------------------------------------------------------------------------


def test_lock_path_option_and_env(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    custom = tmp_path / "custom.lock"
    assert cli("lock", "--lock", str(custom), f"{REPO}:v1").code == 0
    assert custom.is_file()
    assert list(cli.cwd.iterdir()) == []

    assert cli("lock", "--check", "--lock", str(custom)).code == 0
    via_env = cli("lock", "--check", env={"SECUREHUB_LOCK": str(custom)})
    assert (via_env.code, via_env.errors) == (0, [])
    missing = cli("lock", "--check", "--lock", str(tmp_path / "missing.lock"))
    assert (missing.code, missing.codes()) == (1, ["lock-invalid"])
