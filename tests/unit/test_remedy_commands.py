"""Every ``securehub ...`` command an error message suggests is a command the CLI accepts (issue 12).

Messages tell users what to do (SPEC section 2: what was expected, what was
found, what to do), often as a backticked command. A remedy naming a flag or
verb the CLI lacks (the old "reload with force_reload=True" with no
``--force-reload``) sends a user nowhere. This table test reads every string
literal and f-string in securehub/ (docstrings excluded: they describe, they
do not advise), takes each backticked ``securehub ...`` command, fills its
placeholders with sample values and parses it with the real argparse parser.
The commands are run end to end in tests/integration/test_remedies_e2e.py.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from securehub.audit.report import _check_outputs_pinned
from securehub.cli.app import _build_parser
from securehub.cli.commands import parse_kv

ROOT = Path(__file__).resolve().parents[2] / "securehub"
_COMMAND = re.compile(r"`securehub ([^`]+)`")

#: Placeholder (as written in the message, or an f-string field) -> a sample value of that kind.
_SAMPLES = {
    "SPEC": "acme/models:v1",
    "{spec}": "acme/models:v1",
    "{spec.key}": "acme/models:v1",
    "{key}": "acme/models:v1",
    "{self.spec}": "acme/models:v1",
    "{repo_or_dir}": "acme/models:v1",
    "ENTRYPOINT": "tiny",
    "EP": "tiny",
    "{name}": "tiny",
    "{model}": "tiny",
    "{entrypoint}": "tiny",
    "{self.entrypoint}": "tiny",
    "{flags}": "--example-input 1x4:float32",
    "{' ' + args if args else ''}": " --arg depth=2",
    "URL": "https://example.org/w.safetensors",
    "{url}": "https://example.org/w.safetensors",
    "PRIVATE_KEY": "k.key",
    "PRIVATE.key": "k.key",
    "KEY": "k.key",
    "PREFIX": "k",
    "FILE": "w.pth",
    "BUNDLE": "b.tar",
    "{path}": "hub.lock",
    "{shlex.quote(str(path))}": "'my locks/hub.lock'",
    "{verb}": "export b.tar",
    "...": "acme/models:v1 -e tiny",
}
_PLACEHOLDER = re.compile("|".join(re.escape(k) for k in sorted(_SAMPLES, key=len, reverse=True)))


def _text(node: ast.AST) -> str | None:
    """A string literal, or an f-string with each field written as ``{<its source>}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = [
            v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"  # type: ignore[attr-defined]
            for v in node.values
        ]
        return "".join(str(p) for p in parts)
    return None


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def suggested_commands() -> list[tuple[str, str]]:
    """``(module path, command after 'securehub ')`` for every backticked command in a message."""
    found: set[tuple[str, str]] = set()
    for path in sorted(ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            text = None if id(node) in skip else _text(node)
            for match in _COMMAND.finditer(text or ""):
                found.add((str(path.relative_to(ROOT.parent)), " ".join(match.group(1).split())))
    return sorted(found)


def _argv(command: str) -> list[list[str]]:
    """The command with placeholders filled; ``a|b`` alternatives expanded into one argv each."""
    filled = _PLACEHOLDER.sub(lambda m: _SAMPLES[m.group(0)], command)
    words = shlex.split(filled)
    out: list[list[str]] = [[]]
    for word in words:
        choices = word.split("|") if "|" in word and not word.startswith("-") else [word]
        out = [argv + [choice] for argv in out for choice in choices]
    return out


COMMANDS = suggested_commands()


def test_the_table_finds_the_remedies() -> None:
    """Guards against an extractor that finds nothing (and a test that then checks nothing)."""
    commands = {command for _, command in COMMANDS}
    assert len(COMMANDS) >= 40
    for expected in (
        "lock SPEC -e ENTRYPOINT",
        "lock --url {url} --upgrade",
        "cache prune",
        "sign --key PRIVATE_KEY",
        "lock {self.spec} -e {self.entrypoint} --upgrade",
    ):
        assert expected in commands


@pytest.mark.parametrize(("module", "command"), COMMANDS, ids=[f"{m}:{c}" for m, c in COMMANDS])
def test_every_suggested_command_parses(module: str, command: str) -> None:
    parser = _build_parser()
    for argv in _argv(command):
        if argv == ["--version"]:
            continue  # argparse's version action exits 0 by design; tested in test_cli_contract.py
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{module} suggests `securehub {command}`, which the CLI refuses ({argv}, exit {exc.code})")
        assert args.command == argv[0]


ARGS = {"sizes": [1, 2], "name": "a b", "flag": True, "quote": "it's", "digits": "8", "depth": 2}


def _audit_remedy() -> str:
    from securehub.audit.report import _Collector, _LockText
    from securehub.config.lockfile import EntrypointEntry, RepoEntry
    from securehub.config.policy import Policy

    entry = RepoEntry("https://h/x.git", "v1", "tag", "1" * 40, "2" * 64, {"ep": EntrypointEntry(args=ARGS)})
    out = _Collector(_LockText(""))
    _check_outputs_pinned(Policy.load("strict"), "acme/models:v1", entry, out)
    (finding,) = out.findings
    return finding.message


def _load_remedy() -> str:
    from securehub.trust.result import unpinned_message

    return unpinned_message("acme/models:v1", "ep", (), ARGS, None)


@pytest.mark.parametrize("remedy", [_audit_remedy, _load_remedy], ids=["audit", "load"])
def test_not_locked_remedy_round_trips_every_argument_value(remedy: object) -> None:
    """The pin-it command is shell-safe: lists, spaces, quotes and the string "8" survive ``shlex`` and --arg."""
    assert callable(remedy)
    command = _COMMAND.search(remedy())
    assert command is not None
    parsed = _build_parser().parse_args(shlex.split(command.group(1)))
    assert (parsed.specs, parsed.entrypoint) == (["acme/models:v1"], ["ep"])
    assert parse_kv(parsed.arg) == ARGS
    assert "--arg depth=2" in command.group(1)  # simple values stay unquoted and readable
