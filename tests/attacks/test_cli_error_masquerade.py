"""Error masquerade at the CLI: an unexpected exception must not read as a SPEC error code or a usage error.

CI scripts and people act on ``error[<code>]: ...`` lines (``lock-drift``,
``hash-mismatch``) and on exit code 2 ("fix your arguments"). Before issue 9
any ``ValueError`` from deep code printed ``error[usage]`` and exited 2, and
any other exception escaped as a traceback whose last line repeats the
exception text verbatim. Text that reaches an exception often comes from a
remote (a ref name, a server's reply, a file name in a tree), so an attacker
could end a traceback with a forged ``error[...]`` line or terminal escapes.

Now ``cli.main`` catches ``SecureHubError`` (its code), ``UsageError`` (misuse
detected on purpose) and nothing else by name: any other exception is one
sanitised line ``internal error (a bug in securehub): <type>: <message>;
please report`` with exit code 1.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from securehub.cli import app as cli
from securehub.cli import commands as cli_commands

HOSTILE = "boom\nerror[hash-mismatch]: everything verified\x1b[2J\x1b]0;pwned\x07\r\u202eevil"


@pytest.mark.parametrize("exc_type", [ValueError, RuntimeError, OSError, KeyError])
def test_error_masquerade_internal_bug_with_hostile_text_is_one_clean_internal_error_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    exc_type: type[Exception],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECUREHUB_DIR", str(tmp_path / "hub"))

    def broken(_args: argparse.Namespace) -> int:
        raise exc_type(HOSTILE)

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.AUDIT, broken)
    code = cli.main(["audit", "--offline", "--exit-zero"])  # --exit-zero must not hide a bug either

    out, err = capsys.readouterr()
    assert code == cli_commands.EXIT_INTERNAL == 1  # not 2 (usage) and not 0 (--exit-zero)
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("; please report\n")
    assert err.startswith(f"internal error (a bug in securehub): {exc_type.__name__}: ")
    assert not any(line.startswith("error[") for line in err.splitlines())
    assert not any(ch in err for ch in "\x1b\x07\r\u202e")
    assert os.listdir(tmp_path) == []  # nothing written: no hub dir, no lock, no report


def test_error_masquerade_usage_error_stays_usage_and_secure_hub_error_keeps_its_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from securehub.errors import HashMismatch, UsageError

    def misuse(_args: argparse.Namespace) -> int:
        raise UsageError("--thing expects X, found Y")

    def tampered(_args: argparse.Namespace) -> int:
        raise HashMismatch(HOSTILE)

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.AUDIT, misuse)
    assert cli.main(["audit"]) == 2
    assert capsys.readouterr().err == "error[usage]: --thing expects X, found Y\n"

    monkeypatch.setitem(cli_commands._HANDLERS, cli_commands.Verb.AUDIT, tampered)
    assert cli.main(["audit"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error[hash-mismatch]: boom ") and err.count("\n") == 1
    assert not any(ch in err for ch in "\x1b\x07\r\u202e")
