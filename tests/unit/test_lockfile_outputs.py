"""hub.lock ``entrypoints.*.outputs`` (output pinning, SPEC section 4): model, strict parser, canonical bytes."""

from __future__ import annotations

import json

import pytest

from securehub._util.digest import args_sha256
from securehub.api import args_sha256 as api_args_sha256
from securehub.config.lockfile import EntrypointEntry, Lockfile, OutputPin, RepoEntry
from securehub.errors import LockInvalid

KEY = "owner/repo:v1"
ARGS = args_sha256((), {"pretrained": False})
ARGS2 = args_sha256((), {})
S, C, P = "a" * 64, "b" * 64, "c" * 64


def _lock(outputs: dict[str, OutputPin]) -> Lockfile:
    return (
        Lockfile.empty()
        .with_repo(
            KEY, RepoEntry(remote="https://h/o/r.git", ref="v1", ref_type="tag", commit="1" * 40, tree_sha256="2" * 64)
        )  # fmt: skip
        .with_entrypoint(KEY, "net", EntrypointEntry(args={"pretrained": False}, outputs=outputs))
    )


def _text(outputs: dict[str, OutputPin]) -> str:
    return _lock(outputs).to_bytes().decode()


def test_args_sha256_is_the_audit_digest_re_exported_by_api() -> None:
    assert api_args_sha256 is args_sha256
    assert len(ARGS) == 64 and ARGS != ARGS2


def test_outputs_roundtrip_byte_identical_and_sorted() -> None:
    a = _lock({ARGS: OutputPin(S, C, None), ARGS2: OutputPin(S, C, P)})
    b = _lock({ARGS2: OutputPin(S, C, P), ARGS: OutputPin(S, C, None)})
    assert a.to_bytes() == b.to_bytes()
    parsed = Lockfile.parse(a.to_bytes())
    assert parsed.to_bytes() == a.to_bytes()
    ep = parsed.repos[KEY].entrypoints["net"]
    assert ep.output(ARGS) == OutputPin(S, C, None)
    assert ep.output(ARGS2) == OutputPin(S, C, P)
    doc = json.loads(a.to_bytes())
    assert doc["repos"][KEY]["entrypoints"]["net"]["outputs"][ARGS] == {
        "state_sha256": S, "config_sha256": C, "program_sha256": None,
    }  # fmt: skip


def test_outputs_are_covered_by_the_signed_bytes() -> None:
    a = _lock({ARGS: OutputPin(S, C, None)})
    b = _lock({ARGS: OutputPin("d" * 64, C, None)})
    assert a.canonical_unsigned_bytes() != b.canonical_unsigned_bytes()


def test_no_outputs_is_omitted_older_locks_stay_valid() -> None:
    text = _text({})
    assert "outputs" not in text
    assert Lockfile.parse(text.encode()).repos[KEY].entrypoints["net"].outputs == {}


def test_with_output_adds_without_mutating() -> None:
    ep = EntrypointEntry()
    ep2 = ep.with_output(ARGS, OutputPin(S, C))
    assert ep.outputs == {} and ep2.output(ARGS) == OutputPin(S, C, None)
    with pytest.raises(TypeError):
        ep2.outputs[ARGS2] = OutputPin(S, C)  # type: ignore[index]


@pytest.mark.parametrize(
    "build",
    [
        lambda: OutputPin("A" * 64, C),
        lambda: OutputPin(S, "b" * 63),
        lambda: OutputPin(S, C, "x"),
        lambda: EntrypointEntry(outputs={"notahash": OutputPin(S, C)}),
        lambda: EntrypointEntry(outputs={ARGS: {"state_sha256": S}}),  # type: ignore[dict-item]
    ],
)
def test_constructors_refuse_bad_pins(build: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        build()  # type: ignore[operator]


def _swap(old: str, new: str) -> tuple[bytes, int]:
    text = _text({ARGS: OutputPin(S, C, P)})
    assert text.count(old) == 1, old
    return text.replace(old, new).encode(), text[: text.index(old)].count("\n") + 1


MALFORMED = {
    "unknown-key": (_swap(f'"program_sha256": "{P}"', f'"program_sha256": "{P}", "extra": 1'), ".extra"),
    "missing-program": (
        (_swap(f'"program_sha256": "{P}",', "")[0], _swap(f'"{ARGS}": {{', f'"{ARGS}": {{')[1]),
        f'outputs["{ARGS}"]',
    ),
    "state-not-hex": (_swap(f'"state_sha256": "{S}"', '"state_sha256": "zz"'), ".state_sha256"),
    "config-number": (_swap(f'"config_sha256": "{C}"', '"config_sha256": 5'), ".config_sha256"),
    "program-short": (_swap(f'"program_sha256": "{P}"', '"program_sha256": "ab"'), ".program_sha256"),
    "key-not-hex": (_swap(f'"{ARGS}": {{', '"pretrained": {'), 'outputs["pretrained"]'),
    "pin-not-object": (_swap(f'"{ARGS}": {{', f'"{ARGS}": 1, "{"e" * 64}": {{'), f'outputs["{ARGS}"]'),
    "outputs-list": (_swap(f'"outputs": {{\n            "{ARGS}"', f'"outputs": [\n"{ARGS}"'), None),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_outputs_are_lock_invalid_with_line(case: str) -> None:
    (data, line), needle = MALFORMED[case]
    with pytest.raises(LockInvalid) as info:
        Lockfile.parse(data, source="hub.lock")
    assert info.value.code == "lock-invalid"
    if needle is not None:
        assert str(info.value).startswith(f"hub.lock line {line} column "), str(info.value)
        assert needle in str(info.value)
    assert "expected" in str(info.value)
