"""Policy key ``lock.outputs`` (output pinning, SPEC sections 4 and 8): values, built-ins, strict validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from securehub.config.policy import Policy
from securehub.errors import PolicyInvalid


@pytest.mark.parametrize(("name", "expected"), [("strict", "required"), ("default", "verify"), ("permissive", "off")])
def test_builtins(name: str, expected: str) -> None:
    assert Policy.load(name).lock.outputs == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("required", "required"),
        ("verify", "verify"),
        ('"off"', "off"),
        ("off", "off"),  # YAML 1.1 reads unquoted off as false; the SPEC spells the value off
        ("false", "off"),
    ],
)
def test_values(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nlock:\n  outputs: {text}\n")
    assert Policy.load(path).lock.outputs == expected


def test_extends_overrides_only_outputs(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nextends: strict\nlock:\n  outputs: verify\n")
    p = Policy.load(path)
    assert (p.lock.mode, p.lock.outputs) == ("required", "verify")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("on", "boolean"),
        ("true", "boolean"),
        ("verfy", "did you mean 'verify'?"),
        ("[verify]", "expected one of"),
        ("3", "expected one of"),
    ],
)
def test_invalid_values_name_key_and_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"version: 1\nlock:\n  mode: auto\n  outputs: {text}\n")
    with pytest.raises(PolicyInvalid) as info:
        Policy.load(path)
    msg = str(info.value)
    assert info.value.code == "policy-invalid"
    assert msg.startswith("lock.outputs: ") and "line 4" in msg and needle in msg, msg


def test_unknown_sibling_key_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nlock:\n  output: verify\n")
    with pytest.raises(PolicyInvalid, match="outputs"):
        Policy.load(path)
