"""Red team 11: hostile text from a hubconf reaching the user's terminal and the audit log (regressions).

A hubconf puts OSC 52 (clipboard write), OSC 0 (title), cursor moves, ``\\r``, a bidi override, C1
CSI, U+2028, NUL and a DCS into what the parent shows: an exception message, a ``SystemExit``, a
``KeyError``/``ModuleNotFoundError`` (repr-quoted by Python), the child's stderr before an early exit,
and a docstring (``securehub help``). Run as the real CLI (``python -m securehub``, so the bytes
checked are the bytes a terminal would get), under ``default``: no escape byte reaches stdout or
stderr, the SPEC exit code and ``error[<code>]`` line are kept, each refusal appends one valid JSON
audit line, and nothing is cached.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

PAYLOAD = (
    "\\x1b]52;c;ZWNobyBvd25lZA==\\x07\\x1b]0;owned\\x07\\x1b[2K\\r\\x1b[1A\\u202e\\x9b31m\\u2028X\\x00Y"
    "\\x1bP1$r\\x1b\\\\ \\x1b[?1049h"
)

HUBCONF = f'''
dependencies = ["torch"]
import os, sys
from torch import nn
PAYLOAD = "{PAYLOAD}"

def raises():
    raise RuntimeError(PAYLOAD)

def keyerror():
    raise KeyError(PAYLOAD)

def no_module():
    import importlib
    importlib.import_module("zz" + PAYLOAD)

def exits():
    sys.exit(PAYLOAD)

def stderr_then_dies():
    sys.stderr.write(PAYLOAD * 20)
    sys.stderr.flush()
    os._exit(3)

def documented():
    return nn.Linear(2, 2)
documented.__doc__ = PAYLOAD + " documented"
'''

#: Bytes that must never reach a terminal: ESC, C1 CSI (UTF-8), BEL, CR, NUL, U+202E, U+2028.
FORBIDDEN = (b"\x1b", b"\xc2\x9b", b"\x07", b"\r", b"\x00", "\u202e".encode(), "\u2028".encode())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("term-inject"), git_server) as env:
        repo = publish(env, "term-inject", {"hubconf.py": HUBCONF})
        yield env, env.spec(repo)


def _cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "securehub", *args], capture_output=True, timeout=300, check=False)


@pytest.mark.parametrize(
    ("entrypoint", "code"),
    [
        ("raises", "entrypoint-error"),
        ("keyerror", "entrypoint-error"),
        ("no_module", "entrypoint-error"),
        ("exits", "entrypoint-error"),
        ("stderr_then_dies", "sandbox-protocol"),
    ],
)
def test_hostile_text_from_a_hubconf_never_reaches_the_terminal_raw(
    world: tuple[HubEnv, str], entrypoint: str, code: str
) -> None:
    env, spec = world
    before = len(audit_records(env))
    proc = _cli("load", spec, entrypoint, "--policy", "default")
    assert proc.returncode == 1, proc.stderr
    assert f"error[{code}]: ".encode() in proc.stderr, proc.stderr
    for raw in FORBIDDEN:
        assert raw not in proc.stdout + proc.stderr, (raw, proc.stderr[-600:])
    lines = env.audit_log.read_text().splitlines()
    assert [json.loads(line)["code"] for line in lines[before:]] == [code]
    results = env.hub / "results"
    assert not results.exists() or not any(results.iterdir())


def test_hostile_docstring_and_names_through_help_and_list(world: tuple[HubEnv, str]) -> None:
    env, spec = world
    shown = _cli("help", spec, "documented", "--policy", "default")
    listed = _cli("list", spec, "--policy", "default")
    assert (shown.returncode, listed.returncode) == (0, 0), (shown.stderr, listed.stderr)
    assert b"documented" in shown.stdout and b"raises" in listed.stdout
    for raw in FORBIDDEN:
        assert raw not in shown.stdout + shown.stderr + listed.stdout + listed.stderr, raw
