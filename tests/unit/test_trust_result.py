"""``securehub.trust.result``: the output guard and what the result cache may key and store (table tests, no I/O)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from securehub._util.digest import args_sha256
from securehub.config.lockfile import ArtifactEntry, EntrypointEntry, InputSpec, Lockfile, OutputPin, RepoEntry
from securehub.errors import HashMismatch, NotLocked, OutputMismatch
from securehub.trust.result import (
    CachePlan,
    OutputGuard,
    cacheable_artifacts,
    decide_output_guard,
    locked_entrypoint,
    store_admits,
)

S, C, P, X = "1" * 64, "2" * 64, "3" * 64, "f" * 64
COMMIT = "c" * 40
URL, URL2 = "https://h.example/w.safetensors", "https://h.example/v.safetensors"
KW = {"width": 2}
DIGEST = args_sha256((), KW)
PIN = OutputPin(S, C, P)
INPUTS = (InputSpec((1, 2), "float32"),)


@dataclass(frozen=True)
class Found:
    state_sha256: str = S
    config_sha256: str = C
    program_sha256: str | None = P


def ep(*, pinned: bool = True, inputs: bool = True, artifacts: tuple[str, ...] = (URL,)) -> EntrypointEntry:
    outputs = {DIGEST: PIN} if pinned else {}
    return EntrypointEntry(artifacts=artifacts, example_inputs=INPUTS if inputs else None, outputs=outputs)


def repo(entrypoint: EntrypointEntry | None = None) -> RepoEntry:
    eps = {"net": entrypoint} if entrypoint is not None else {}
    return RepoEntry("https://g/x.git", "v1", "tag", COMMIT, X, entrypoints=eps)


def guard(mode: str, entry: EntrypointEntry | None, **kw: Any) -> OutputGuard:
    opts: dict[str, Any] = {"may_record": False, "export_allowed": True, "same_inputs": lambda _ep: True}
    opts.update(kw)
    return decide_output_guard(("acme/x:v1", "net", (), KW), mode=mode, ep=entry, **opts)


@pytest.mark.parametrize(
    ("mode", "entry", "kw", "pin", "check_program", "record"),
    [
        ("off", ep(), {}, None, False, False),
        ("verify", ep(), {}, PIN, True, False),
        ("verify", ep(), {"same_inputs": lambda _ep: False}, PIN, False, False),  # other inputs, other program
        ("verify", ep(), {"export_allowed": False}, PIN, False, False),
        ("verify", ep(inputs=False), {}, PIN, False, False),
        ("verify", ep(pinned=False), {}, None, False, False),
        ("verify", ep(pinned=False), {"may_record": True}, None, False, True),
        ("verify", None, {"may_record": True}, None, False, True),
        ("required", ep(), {}, PIN, True, False),
    ],
)
def test_the_guard_each_mode_decides(mode: str, entry: EntrypointEntry | None, kw: dict[str, Any],
                                     pin: OutputPin | None, check_program: bool, record: bool) -> None:  # fmt: skip
    g = guard(mode, entry, **kw)
    assert (g.pin, g.check_program, g.record, g.args_digest) == (pin, check_program, record, DIGEST)
    assert g.active == (pin is not None or record)


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        (None, "`securehub lock acme/x:v1 -e net --arg width=2`."),
        # another argument set of a recorded entrypoint: plain `lock -e` adds it next to the others
        (ep(pinned=False), "`securehub lock acme/x:v1 -e net --arg width=2 --example-input 1x2:float32`."),
        # the recorded argument set itself, without a pin (a lock from before output pinning): --upgrade
        (
            dataclasses.replace(ep(pinned=False), args=KW),
            "`securehub lock acme/x:v1 -e net --arg width=2 --example-input 1x2:float32 --upgrade`",
        ),
    ],
)
def test_required_refuses_an_unpinned_argument_set_with_the_command(entry: EntrypointEntry | None, needle: str) -> None:
    with pytest.raises(NotLocked) as err:
        guard("required", entry)
    assert needle in err.value.message
    assert f"args_sha256 {DIGEST}" in err.value.message and "nothing was run" in err.value.message


@pytest.mark.parametrize(
    ("found", "check_program", "diff"),
    [
        (Found(), True, None),
        (Found(program_sha256=X), False, None),  # the program is compared only with the lock's inputs
        (Found(state_sha256=X), False, f"state_sha256 {S}, found {X}"),
        (Found(config_sha256=X), False, f"config_sha256 {C}, found {X}"),
        (Found(program_sha256=None), True, f"program_sha256 {P}, found no program"),
    ],
)
def test_check_against_the_pin(found: Found, check_program: bool, diff: str | None) -> None:
    g = OutputGuard("acme/x:v1", "net", DIGEST, pin=PIN, check_program=check_program)
    if diff is None:
        g.check(found)
        g.check(found, cached_key="k")
        return
    with pytest.raises(OutputMismatch, match="expected the output hub.lock pins") as fresh:
        g.check(found)
    assert diff in fresh.value.message and fresh.value.code == "output-mismatch"
    with pytest.raises(HashMismatch, match="results/k: expected the output hub.lock pins") as cached:
        g.check(found, cached_key="k")
    assert diff in cached.value.message and cached.value.code == "hash-mismatch"


def test_recorded_only_when_recording() -> None:
    assert OutputGuard("s", "net", DIGEST).recorded(Found()) is None
    assert OutputGuard("s", "net", DIGEST, record=True).recorded(Found()) == (DIGEST, PIN)


@pytest.mark.parametrize(
    ("entry", "commit", "found"),
    [(None, COMMIT, False), (repo(ep()), None, False), (repo(ep()), "d" * 40, False), (repo(ep()), COMMIT, True)],
)
def test_locked_entrypoint_only_at_the_pinned_commit(entry: RepoEntry | None, commit: str | None, found: bool) -> None:
    assert (locked_entrypoint(entry, commit, "net") is not None) is found


LOCK = Lockfile(artifacts={URL: ArtifactEntry(S, 3)})


@pytest.mark.parametrize(
    ("entry", "commit", "local", "pinned", "digests"),
    [
        (repo(ep()), COMMIT, False, False, {URL: S}),
        (repo(ep()), COMMIT, True, False, None),  # a local dir: no commit anchors it
        (None, COMMIT, False, False, None),
        (repo(ep()), None, False, False, None),
        (repo(), COMMIT, False, False, None),  # entrypoint not locked
        (repo(ep(artifacts=(URL, URL2))), COMMIT, False, False, None),  # an artifact without a lock entry
        (repo(ep(artifacts=())), COMMIT, False, False, None),  # fetches nothing, output not pinned
        (repo(ep(artifacts=())), COMMIT, False, True, {}),  # ... pinned: the pin anchors it
    ],
)
def test_cacheable_artifacts(entry: RepoEntry | None, commit: str | None, local: bool, pinned: bool,
                             digests: dict[str, str] | None) -> None:  # fmt: skip
    got = cacheable_artifacts(entry, commit, local=local, entrypoint="net", lock=LOCK, pinned=pinned)
    assert got == digests


@pytest.mark.parametrize(
    ("plan", "fetched", "nested", "stored"),
    [
        (CachePlan("k", {}, {URL: S}), [(URL, S)], False, True),
        (None, [(URL, S)], False, False),
        (CachePlan("k", {}, {URL: S}), [(URL, S)], True, False),  # nested loads: not covered by the key
        (CachePlan("k", {}, {URL: S}), [(URL, X)], False, False),  # not the locked digest
        (CachePlan("k", {}, {URL: S}), [(URL, S), (URL2, S)], False, False),  # an unlocked URL
        (CachePlan("k", {}, {URL: S}), [], False, False),  # nothing fetched, nothing pinned
        (CachePlan("k", {}, {}, pinned=True), [], False, True),
    ],
)
def test_store_admits(plan: CachePlan | None, fetched: list[tuple[str, str]], nested: bool, stored: bool) -> None:
    assert store_admits(plan, fetched, nested=nested) is stored
