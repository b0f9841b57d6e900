"""Pure pieces of the drop-in contract (SPEC sections 2 and 10): spec hints, CLI error handling."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import securehub
from securehub.cli import app as cli
from securehub.cli import commands as cli_commands
from securehub.errors import RepoNotAllowed, UsageError
from securehub.resolve.spec import parse_spec


@pytest.mark.parametrize("text", ["/abs/models/repo", "./repo", "../repo", "~/models/repo", "."])
def test_bare_local_path_suggests_source_local(text: str) -> None:
    with pytest.raises(RepoNotAllowed) as info:
        parse_spec(text)
    assert info.value.code == "repo-not-allowed"
    assert "did you mean source='local'?" in str(info.value)


def test_existing_directory_name_suggests_source_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myrepo").mkdir()
    (tmp_path / "myrepo" / "hubconf.py").write_text("dependencies = []\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RepoNotAllowed, match="did you mean source='local'"):
        parse_spec("myrepo")


@pytest.mark.parametrize("text", ["/abs/my checkouts/tiny nets", "./repo", "~/models/repo"])
def test_locking_a_directory_says_it_cannot_be_locked(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``securehub lock ./checkout``: parse_spec's hint (``source='local'``) does not apply to a lock, which
    has no such switch: the refusal says a directory is never locked and what to lock instead (round 11)."""
    monkeypatch.setenv("SECUREHUB_DIR", str(tmp_path / "hub"))
    lock = tmp_path / "hub.lock"
    with pytest.raises(RepoNotAllowed) as info:
        securehub.lock_repos([text], policy="default", lock=lock)
    message = str(info.value)
    assert info.value.code == "repo-not-allowed"
    assert f"{text!r} is a local directory; hub.lock pins git commits, so a directory is never locked" in message
    assert "lock that (owner/repo:tag or git+https://...@tag)" in message and "did you mean" not in message
    assert not lock.exists()


def test_locking_a_malformed_remote_keeps_its_own_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECUREHUB_DIR", str(tmp_path / "hub"))
    with pytest.raises(RepoNotAllowed) as info:
        securehub.lock_repos(["owner/repo/extra-component"], policy="default", lock=tmp_path / "hub.lock")
    assert "local directory" not in str(info.value)


def test_malformed_github_spec_gets_no_local_hint() -> None:
    with pytest.raises(RepoNotAllowed) as info:
        parse_spec("owner/repo/extra-component")
    assert "source='local'" not in str(info.value)


def test_cli_main_reports_an_internal_value_error_as_a_bug_not_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Issue 9: any ValueError used to print error[usage] and exit 2, so a bug read as the user's mistake.
    def broken(_args: argparse.Namespace) -> int:
        raise ValueError("an internal bug, not the user's mistake")

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.CACHE, broken)
    assert cli.main(["cache", "dir"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "internal error (a bug in securehub): ValueError: an internal bug, not the user's mistake; please report\n"
    )
    assert "error[" not in err


@pytest.mark.parametrize("exc", [KeyError("k"), TypeError("t"), RuntimeError("r"), AssertionError("a")])
def test_cli_main_never_dresses_an_unexpected_exception_as_a_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], exc: Exception
) -> None:
    def broken(_args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.CACHE, broken)
    assert cli.main(["cache", "dir"]) == cli_commands.EXIT_INTERNAL != 0
    err = capsys.readouterr().err
    assert err.startswith(f"internal error (a bug in securehub): {type(exc).__name__}: ")
    assert err.endswith("; please report\n")


def test_cli_main_reports_a_secure_hub_error_with_its_code_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refused(_args: argparse.Namespace) -> int:
        raise RepoNotAllowed("expected an allowed repo, found x/y")

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.CACHE, refused)
    assert cli.main(["cache", "dir"]) == 1
    assert capsys.readouterr().err == "error[repo-not-allowed]: expected an allowed repo, found x/y\n"


def test_cli_main_reports_usage_errors_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def misuse(_args: argparse.Namespace) -> int:
        raise UsageError("--thing expects X, found Y")

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.CACHE, misuse)
    assert cli.main(["cache", "dir"]) == 2
    assert capsys.readouterr().err == "error[usage]: --thing expects X, found Y\n"


def test_every_cli_verb_has_exactly_one_handler_and_a_parser() -> None:
    parser = cli._build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) == {v.value for v in cli_commands.Verb}
    assert set(cli_commands._HANDLERS) == set(cli_commands.Verb)


def test_usage_error_is_a_value_error_for_python_callers() -> None:
    assert issubclass(UsageError, ValueError)
    with pytest.raises(ValueError):
        cli.parse_kv(["no-equals-sign"])


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"securehub {securehub.__version__}\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["lock", "--sha256", "ab" * 32],  # no --url before it
        ["lock", "--url", "https://h/x.bin", "--sha256", "ab" * 32, "--sha256", "cd" * 32],
    ],
)
def test_sha256_must_follow_its_url(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "error[usage]: --sha256 must follow the --url" in capsys.readouterr().err


def test_url_sha256_pairs_are_kept_in_order() -> None:
    from securehub.cli.app import _build_parser

    ns = _build_parser().parse_args(["lock", "--url", "https://a/1", "--sha256", "AB" * 32, "--url", "https://b/2"])
    assert ns.urls == [["https://a/1", "ab" * 32], ["https://b/2", None]]


@pytest.mark.parametrize("key", ["trust_repo", "force_reload", "policy", "skip_validation"])
def test_arg_naming_a_load_parameter_is_a_usage_error(key: str) -> None:
    from securehub.cli.commands import _entrypoint_args

    with pytest.raises(UsageError, match=key):
        _entrypoint_args([f"{key}=true"])


def test_torch_hub_overrides_say_what_the_policy_decided() -> None:
    from securehub.pipeline.audit_line import torch_hub_overrides

    assert torch_hub_overrides() == ()
    assert torch_hub_overrides(trust_repo=None, skip_validation=False) == ()
    said = torch_hub_overrides(trust_repo=True, skip_validation=True)
    assert said[0] == "trust_repo=True ignored: the policy is the trust decision"
    assert said[1].startswith("skip_validation=True ignored")
