"""Pure pieces of the drop-in contract (SPEC sections 2 and 10): spec hints, CLI error handling."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import securehub
from securehub.cli import app as cli
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


def test_malformed_github_spec_gets_no_local_hint() -> None:
    with pytest.raises(RepoNotAllowed) as info:
        parse_spec("owner/repo/extra-component")
    assert "source='local'" not in str(info.value)


def test_cli_main_does_not_turn_an_internal_value_error_into_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from securehub.cli import commands as _cli_commands

    def broken(_args: argparse.Namespace) -> int:
        raise ValueError("an internal bug, not the user's mistake")

    monkeypatch.setattr(_cli_commands, "cmd_cache", broken)
    with pytest.raises(ValueError, match="internal bug"):
        cli.main(["cache", "dir"])


def test_cli_main_reports_usage_errors_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from securehub.cli import commands as _cli_commands

    def misuse(_args: argparse.Namespace) -> int:
        raise UsageError("--thing expects X, found Y")

    monkeypatch.setattr(_cli_commands, "cmd_cache", misuse)
    assert cli.main(["cache", "dir"]) == 2
    assert capsys.readouterr().err == "error[usage]: --thing expects X, found Y\n"


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

    ns = _build_parser().parse_args(
        ["lock", "--url", "https://a/1", "--sha256", "AB" * 32, "--url", "https://b/2"]
    )
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
