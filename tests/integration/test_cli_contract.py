"""The SPEC section 10 CLI contract items of issue 12, run as real subprocesses (``python -m securehub``
and the console script) against the loopback git and artifact servers and the real sandbox.

``--version``; ``load --force-reload``; ``lock --url URL [--sha256 HEX]``; ``audit --exit-zero``;
``cache prune`` removing everything that fails verification; ``--lock PATH`` that does not exist
(``lock-invalid``, never created, except by ``securehub lock`` which says it created it); a failed
``load`` leaving hub.lock byte-identical; ``lock -e`` audit lines naming the entrypoint and artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import save
from torch import nn

import securehub
from tests._hub_helpers import NEEDS_FULL_SANDBOX, write_policy
from tests._servers import ArtifactServer, RepoFactory, RepoHandle
from tests.integration.test_lock_cli import REPO, Cli, cli, repo

__all__ = ["cli", "repo"]  # fixtures, re-exported for pytest

MODELS = "acme/dropin-cli"
HUBCONF = textwrap.dedent(
    '''
    import torch
    from torch import nn

    dependencies = ["torch"]

    W_URL = "@W_URL@"
    P_URL = W_URL.replace("weights.safetensors", "weights-@PREFIX@.safetensors")


    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(x)


    def weighted():
        """Linear(4, 2) with published weights."""
        model = nn.Linear(4, 2)
        model.load_state_dict(torch.hub.load_state_dict_from_url(W_URL, progress=False))
        return model


    def unrebuildable():
        torch.hub.load_state_dict_from_url(W_URL, progress=False)
        return Local()


    def local():
        """A repo-defined class: rebuilt by the export strategy, printed by its original name."""
        return Local()


    def checked():
        """Linear(4, 2) whose weights torch.hub checks by the hash prefix in their file name."""
        model = nn.Linear(4, 2)
        model.load_state_dict(torch.hub.load_state_dict_from_url(P_URL, progress=False, check_hash=True))
        return model
    '''
)


@pytest.fixture
def weights(artifact_server: ArtifactServer) -> tuple[str, bytes]:
    blob = save(nn.Linear(4, 2).state_dict())
    return artifact_server.put("/w/weights.safetensors", blob), blob


@pytest.fixture
def models(repo_factory: RepoFactory, weights: tuple[str, bytes], artifact_server: ArtifactServer) -> RepoHandle:
    url, blob = weights
    prefix = hashlib.sha256(blob).hexdigest()[:10]
    artifact_server.put(f"/w/weights-{prefix}.safetensors", blob)  # the same bytes under a hash-prefixed name
    hubconf = HUBCONF.replace("@W_URL@", url).replace("@PREFIX@", prefix)
    handle = repo_factory.make_repo(MODELS, {"hubconf.py": hubconf})
    handle.tag("v1", annotated=True)
    return handle


@pytest.fixture
def loopback_policy(tmp_path: Path) -> str:
    """The default policy naming 127.0.0.1: the hubconf's unlocked weights URL is on the loopback
    artifact server, which repository-chosen URLs may reach only when the policy names the host."""
    return str(write_policy(tmp_path / "loopback.yaml", "default", artifacts={"hosts": ["*", "127.0.0.1"]}))


def _lock_records(cli: Cli) -> list[dict[str, object]]:
    return [r for r in cli.audit_records() if r["action"] == "lock"]


# --------------------------------------------------------------------------- --version


def test_version_prints_name_and_version(cli: Cli) -> None:
    for script in (False, True):
        r = cli("--version", script=script)
        assert (r.code, r.out, r.err) == (0, f"securehub {securehub.__version__}\n", "")


# --------------------------------------------------------------------------- --lock PATH that does not exist


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("load", f"{REPO}:v1", "tiny"), id="load"),
        pytest.param(("list", f"{REPO}:v1"), id="list"),
        pytest.param(("help", f"{REPO}:v1", "tiny"), id="help"),
        pytest.param(("lock", "--check"), id="lock-check"),
        pytest.param(("sign", "--key", "nokey.key"), id="sign"),
    ],
)
def test_missing_lock_path_is_lock_invalid_and_never_created(cli: Cli, repo: RepoHandle, args: tuple[str, ...]) -> None:
    missing = cli.cwd / "missing.lock"
    cli.server.clear_log()
    r = cli(*args, "--lock", str(missing))
    assert r.code == 1, r.err
    assert r.codes() == ["lock-invalid"]
    assert str(missing) in r.errors[0]
    assert not missing.exists()
    assert list(cli.cwd.iterdir()) == []
    assert not cli.server.requests


def test_lock_creates_a_missing_lock_path_and_says_so(cli: Cli, repo: RepoHandle) -> None:
    new = cli.cwd / "new.lock"
    r = cli("lock", f"{REPO}:v1", "--lock", str(new))
    assert r.code == 0, r.err
    assert f"created: {new}" in r.out.splitlines()
    again = cli("lock", f"{REPO}:v1", "--lock", str(new))
    assert f"unchanged: {new}" in again.out.splitlines()


# --------------------------------------------------------------------------- lock --url


def test_lock_url_records_a_bare_artifact(cli: Cli, weights: tuple[str, bytes]) -> None:
    url, blob = weights
    digest = hashlib.sha256(blob).hexdigest()
    r = cli("lock", "--url", url, "--sha256", digest.upper())
    assert r.code == 0, r.err
    assert "created: hub.lock" in r.out.splitlines()
    doc = cli.lock_json()
    assert doc["artifacts"] == {url: {"sha256": digest, "size": len(blob)}}
    assert doc["repos"] == {}
    assert (cli.hub / "artifacts" / "sha256" / digest).is_file()
    record = _lock_records(cli)[-1]
    assert (record["spec"], record["artifacts"], record["code"]) == (url, [{"url": url, "sha256": digest}], None)


def test_lock_url_without_sha256_pins_what_was_downloaded(cli: Cli, weights: tuple[str, bytes]) -> None:
    url, blob = weights
    assert cli("lock", "--url", url).code == 0
    assert cli.lock_json()["artifacts"] == {url: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}}


def test_lock_url_with_wrong_sha256_is_hash_mismatch_and_writes_nothing(
    cli: Cli, repo: RepoHandle, weights: tuple[str, bytes]
) -> None:
    url, blob = weights
    assert cli("lock", f"{REPO}:v1").code == 0
    before = cli.lock_path.read_bytes()
    r = cli("lock", "--url", url, "--sha256", "0" * 64)
    assert r.code == 1
    assert r.codes() == ["hash-mismatch"]
    assert cli.lock_path.read_bytes() == before
    assert not (cli.hub / "artifacts" / "sha256" / hashlib.sha256(blob).hexdigest()).exists()


def test_lock_url_with_wrong_sha256_creates_no_lock(cli: Cli, weights: tuple[str, bytes]) -> None:
    r = cli("lock", "--url", weights[0], "--sha256", "0" * 64)
    assert (r.code, r.codes()) == (1, ["hash-mismatch"])
    assert list(cli.cwd.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("lock", "--url", "ftp://example.com/x.bin"), id="not-http"),
        pytest.param(("lock", "--url", "https://example.com/x.bin", "--sha256", "xyz"), id="bad-hex"),
        pytest.param(("lock", "--sha256", "ab" * 32), id="sha256-without-url"),
        pytest.param(("lock", "--check", "--url", "https://example.com/x.bin"), id="check-with-url"),
    ],
)
def test_lock_url_usage_errors(cli: Cli, args: tuple[str, ...]) -> None:
    r = cli(*args)
    assert (r.code, r.codes()) == (2, ["usage"])
    assert list(cli.cwd.iterdir()) == []


# --------------------------------------------------------------------------- audit --exit-zero


def test_audit_exit_zero_writes_the_report_and_exits_0(cli: Cli, repo: RepoHandle) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0
    digest = cli.entry(f"{REPO}:v1")["tree_sha256"]
    victim = cli.hub / "trees" / digest / "pkg" / "net.py"
    os.chmod(victim, 0o644)
    victim.write_text("X = 666\n")

    assert cli("audit", "--offline").code == 1
    report = cli.cwd.parent / "report.json"
    r = cli("audit", "--offline", "--exit-zero", "--format", "json", "--output", str(report))
    assert r.code == 0, r.err
    codes = {f["code"] for f in json.loads(report.read_text())["findings"]}
    assert "hash-mismatch" in codes


def test_audit_exit_zero_still_exits_2_on_usage_errors(cli: Cli) -> None:
    r = cli("audit", "--exit-zero", "--format", "yaml")
    assert (r.code, r.codes()) == (2, ["usage"])
    r = cli("audit", "--exit-zero", "--policy", "missing-policy.yaml")
    assert r.code == 2


# --------------------------------------------------------------------------- cache prune


def test_cache_prune_removes_every_broken_tree_and_artifact(
    cli: Cli, repo: RepoHandle, weights: tuple[str, bytes]
) -> None:
    url, blob = weights
    assert cli("lock", f"{REPO}:v1", "--url", url).code == 0
    tree = cli.hub / "trees" / cli.entry(f"{REPO}:v1")["tree_sha256"]
    artifact = cli.hub / "artifacts" / "sha256" / hashlib.sha256(blob).hexdigest()
    victim = tree / "pkg" / "net.py"
    os.chmod(victim, 0o644)
    victim.write_text("X = 666\n")
    os.chmod(artifact, 0o644)
    artifact.write_bytes(blob[:-1] + b"!")
    assert cli("cache", "verify").code == 1

    r = cli("cache", "prune")

    assert (r.code, r.errors) == (0, [])
    assert not tree.exists() and not artifact.exists()
    assert cli("cache", "verify").code == 0
    assert cli("lock", "--check").code == 0  # the pinned tree is fetched again, verified


# --------------------------------------------------------------------------- load


@NEEDS_FULL_SANDBOX
def test_load_force_reload_replaces_a_tampered_cached_tree(cli: Cli, models: RepoHandle, loopback_policy: str) -> None:
    assert cli("lock", f"{MODELS}:v1", "-e", "weighted", "--policy", loopback_policy).code == 0
    tree = cli.hub / "trees" / cli.entry(f"{MODELS}:v1")["tree_sha256"]
    victim = tree / "hubconf.py"
    os.chmod(victim, 0o644)
    victim.write_text(victim.read_text() + "\n# tampered\n")

    plain = cli("load", f"{MODELS}:v1", "weighted")
    assert (plain.code, plain.codes()) == (1, ["hash-mismatch"])
    forced = cli("load", f"{MODELS}:v1", "weighted", "--force-reload")
    assert forced.code == 0, forced.err
    assert "# tampered" not in victim.read_text()


@NEEDS_FULL_SANDBOX
def test_failed_cli_load_leaves_hub_lock_byte_identical(
    cli: Cli, models: RepoHandle, repo: RepoHandle, loopback_policy: str
) -> None:
    assert cli("lock", f"{REPO}:v1").code == 0  # ./hub.lock exists: lock.mode auto would record into it
    before = cli.lock_path.read_bytes()
    r = cli("load", f"{MODELS}:v1", "unrebuildable", "--policy", loopback_policy)
    assert (r.code, r.codes()) == (1, ["reconstruct-refused"])
    assert cli.lock_path.read_bytes() == before


@NEEDS_FULL_SANDBOX
def test_load_arg_naming_a_load_parameter_is_a_usage_error(cli: Cli, models: RepoHandle) -> None:
    r = cli("load", f"{MODELS}:v1", "weighted", "--arg", "trust_repo=true")
    assert (r.code, r.codes()) == (2, ["usage"])


@NEEDS_FULL_SANDBOX
def test_lock_e_audit_line_names_entrypoint_and_artifacts(
    cli: Cli, models: RepoHandle, weights: tuple[str, bytes], loopback_policy: str
) -> None:
    url, blob = weights
    assert cli("lock", f"{MODELS}:v1", "-e", "weighted", "--policy", loopback_policy).code == 0
    lines = [r for r in _lock_records(cli) if r["entrypoint"] == "weighted"]
    assert len(lines) == 1
    assert lines[0]["artifacts"] == [{"url": url, "sha256": hashlib.sha256(blob).hexdigest()}]
    assert lines[0]["spec"] == f"{MODELS}:v1" and lines[0]["code"] is None
    assert lines[0]["commit"] == cli.entry(f"{MODELS}:v1")["commit"]


@NEEDS_FULL_SANDBOX
def test_lock_pin_contradicting_the_file_name_hash_prefix_is_found_refused_and_repairable(
    cli: Cli, models: RepoHandle, weights: tuple[str, bytes], artifact_server: ArtifactServer, loopback_policy: str
) -> None:
    """A hubconf calls load_state_dict_from_url(check_hash=True) on ``weights-<prefix>.safetensors`` while
    hub.lock pins another sha256 for it (an edited or stale lock): audit reports it (hash-mismatch,
    critical), load refuses it before any download and writes nothing, ``lock --url URL --upgrade``
    repairs it."""
    blob = weights[1]
    digest = hashlib.sha256(blob).hexdigest()
    url = artifact_server.url(f"/w/weights-{digest[:10]}.safetensors")
    assert cli("lock", f"{MODELS}:v1", "-e", "checked", "--policy", loopback_policy).code == 0
    doc = cli.lock_json()
    other = b"other weights"
    doc["artifacts"][url] = {"sha256": hashlib.sha256(other).hexdigest(), "size": len(other)}  # type: ignore[index]
    cli.lock_path.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    before = cli.lock_path.read_bytes()

    audit = cli("audit", "--offline", "--format", "json", "--policy", loopback_policy)
    assert audit.code == 1
    findings = [(f["code"], f["severity"], f["artifact_url"]) for f in json.loads(audit.out)["findings"]]
    assert findings == [("hash-mismatch", "critical", url)]
    assert f"securehub lock --url {url} --upgrade" in json.loads(audit.out)["findings"][0]["message"]

    artifact_server.clear_log()
    load = cli("load", f"{MODELS}:v1", "checked", "--policy", loopback_policy)
    assert (load.code, load.codes()) == (1, ["hash-mismatch"])
    assert digest[:10] in load.errors[0]
    assert artifact_server.requests == []  # refused before any download
    assert cli.lock_path.read_bytes() == before

    repair = cli("lock", "--url", url, "--upgrade", "--policy", loopback_policy)
    assert repair.code == 0, repair.err
    assert f"upgraded: {url} -> sha256 {digest}, {len(blob)} bytes" in repair.out.splitlines()
    assert cli.lock_json()["artifacts"][url] == {"sha256": digest, "size": len(blob)}  # type: ignore[index]
    assert cli("audit", "--offline", "--policy", loopback_policy).code == 0
    loaded = cli("load", f"{MODELS}:v1", "checked", "--policy", loopback_policy)
    assert loaded.code == 0, loaded.err


def test_lock_url_keeps_an_existing_pin_without_upgrade(cli: Cli, weights: tuple[str, bytes]) -> None:
    url, blob = weights
    assert cli("lock", "--url", url).code == 0
    r = cli("lock", "--url", url)
    assert r.code == 0 and f"kept: {url} -> sha256 {hashlib.sha256(blob).hexdigest()}, {len(blob)} bytes" in r.out
    r = cli("lock", "--url", url, "--upgrade")
    assert r.code == 0 and f"unchanged: {url}" in r.out and "unchanged: hub.lock" in r.out.splitlines()


def test_missing_lock_for_load_uses_no_cwd_file(cli: Cli, repo: RepoHandle, tmp_path: Path) -> None:
    """Sanity: the missing-lock refusal names the path given, relative paths included."""
    r = cli("list", f"{REPO}:v1", "--lock", "rel.lock")
    assert (r.code, r.codes()) == (1, ["lock-invalid"])
    assert "rel.lock" in r.errors[0]
    assert not (cli.cwd / "rel.lock").exists()


# --------------------------------------------------------------------------- CLI polish (issue 12)


@pytest.mark.parametrize("verb", ["lock", "load", "list", "help"])
def test_verb_help_explains_spec_forms_entrypoint_and_arg(cli: Cli, verb: str) -> None:
    r = cli(verb, "--help")
    assert r.code == 0
    for needle in ("owner/repo:TAG", "git+https://", "--source local", "ENTRYPOINT", "--arg K=V", "hubconf.py"):
        assert needle in r.out, (verb, needle)
    if verb == "lock":
        assert "-e resnet18" in r.out and "--url" in r.out


@NEEDS_FULL_SANDBOX
def test_load_prints_the_loaded_class_by_its_original_name(cli: Cli, models: RepoHandle) -> None:
    r = cli("load", f"{MODELS}:v1", "local", "--example-input", "1x4:float32", "--policy", "default")
    assert r.code == 0, r.err
    (line,) = [x for x in r.out.splitlines() if x.startswith("loaded ")]
    assert line.endswith("(10 parameters, exported from hubconf:Local)"), line


def test_scan_findings_are_error_lines_with_full_paths(cli: Cli) -> None:
    from tests._pickle_fixtures import reduce_call

    evil = cli.cwd / "evil.pkl"
    evil.write_bytes(reduce_call("os", "system", "true"))
    r = cli("scan", "evil.pkl")
    assert r.code == 1
    assert r.codes() and set(r.codes()) == {"unsafe-pickle"}
    assert all(line.startswith(f"error[unsafe-pickle]: {evil}: ") for line in r.errors)


def test_policy_typo_suggests_the_builtin_name(cli: Cli) -> None:
    r = cli("lock", "--check", "--policy", "strcit")
    assert (r.code, r.codes()) == (2, ["policy-invalid"])
    assert "did you mean 'strict'?" in r.errors[0]
