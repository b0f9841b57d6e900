"""Output pinning end to end (SPEC sections 4 and 8): lock pins, load verifies, policy decides the rest.

Real git server, real sandbox, real torch. The hubconf is honest and deterministic (the sandbox
seeds every RNG), so a ``pretrained=False`` random init pins and reloads identically.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import securehub
import securehub.pipeline.result_cache as result_cache_mod
import securehub.reconstruct.rebuild as rebuild_mod
import securehub.store.results as results_mod
from securehub._util.digest import args_sha256
from securehub.audit.report import run_audit
from securehub.config.lockfile import Lockfile
from securehub.errors import NotLocked, SignatureInvalid
from securehub.pipeline.lock import check_lock, lock_repos
from securehub.pipeline.state_digest import state_sha256
from securehub.verify.signature import sign_lock
from securehub.verify.tensor_digest import file_lines, lines_digest
from tests._hub_helpers import NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish, write_policy
from tests._lock_helpers import keypair
from tests._servers import GitServer
from tests._spies import spy

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = '''
from torch import nn


def net(width=3):
    """A randomly initialised MLP (no artifact): deterministic only because the sandbox seeds torch."""
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2)).eval()
'''

DEFAULT_ARGS = args_sha256((), {})


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer):  # type: ignore[no-untyped-def]
    """The repo, published and with ``net`` locked (default args, two sandbox runs) once per module.

    Yields (spec, the lock's bytes): each test gets its own copy of the lock in a fresh hub (below).
    """
    root = tmp_path_factory.mktemp("output-pinning")
    with hub_env_context(root, git_server) as env:
        repo = publish(env, "random-init", {"hubconf.py": HUBCONF})
        spec = env.spec(repo)
        lock_repos([spec], entrypoints=["net"], lock=root / "hub.lock", policy="default")
        yield spec, (root / "hub.lock").read_bytes()


@pytest.fixture
def pinned(published, tmp_path: Path, git_server: GitServer):  # type: ignore[no-untyped-def]
    """A fresh hub dir and audit log, the module's lock copied to ``tmp/hub.lock``; yields (env, spec, lock)."""
    spec, lock_bytes = published
    (tmp_path / "env").mkdir()
    with hub_env_context(tmp_path / "env", git_server) as env:
        lock_path = tmp_path / "hub.lock"
        lock_path.write_bytes(lock_bytes)
        yield env, spec, lock_path


def test_random_init_pins_and_reloads_identically(pinned) -> None:  # type: ignore[no-untyped-def]
    env, spec, lock_path = pinned
    pin = Lockfile.load(lock_path).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
    before = lock_path.read_bytes()

    first = securehub.load(spec, "net", lock=str(lock_path), policy="strict", verbose=False)
    second = securehub.load(spec, "net", lock=str(lock_path), policy="strict", verbose=False)

    assert state_sha256(first.state_dict()) == pin.state_sha256
    assert state_sha256(second.state_dict()) == pin.state_sha256
    assert lock_path.read_bytes() == before
    # The pinned digest anchors a random-init result, so the second load is served from the cache.
    results = env.hub / "results"
    assert results.is_dir() and len(list(results.iterdir())) == 1
    assert [r["isolation"] is None for r in audit_records(env)[-2:]] == [False, True]


@pytest.mark.parametrize("mode", ["off", "verify", "required"])
def test_lock_outputs_policy_with_an_unpinned_argument_set(pinned, tmp_path: Path, mode: str) -> None:  # type: ignore[no-untyped-def]
    env, spec, lock_path = pinned
    policy = write_policy(tmp_path / "p.yaml", extends="default", lock={"mode": "auto", "outputs": mode})
    before = lock_path.read_bytes()
    other = args_sha256((), {"width": 5})

    if mode == "required":
        with pytest.raises(NotLocked) as info:
            securehub.load(spec, "net", width=5, lock=str(lock_path), policy=str(policy), verbose=False)
        assert info.value.code == "not-locked"
        # another argument set of a recorded entrypoint: plain `lock -e` adds its pin (no --upgrade)
        assert f"`securehub lock {spec} -e net --arg width=5`." in info.value.message
        last = audit_records(env)[-1]
        assert (last["code"], last["args_sha256"], last["isolation"]) == ("not-locked", other, None)  # no sandbox
        assert lock_path.read_bytes() == before
        return

    model = securehub.load(spec, "net", width=5, lock=str(lock_path), policy=str(policy), verbose=False)

    outputs = Lockfile.load(lock_path).repos[spec].entrypoints["net"].outputs
    if mode == "off":
        assert lock_path.read_bytes() == before
    else:  # verify under lock.mode auto: recorded with the other auto-lock entries
        assert set(outputs) == {DEFAULT_ARGS, other}
        assert outputs[other].state_sha256 == state_sha256(model.state_dict())
        # ... and from now on enforced: the same load matches its own pin.
        securehub.load(spec, "net", width=5, lock=str(lock_path), policy=str(policy), verbose=False)


def test_outputs_survive_check_and_upgrade(pinned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env, spec, lock_path = pinned
    assert check_lock(lock=lock_path, policy="default") == []  # no drift reported for a good lock
    good = Lockfile.load(lock_path)
    pin = good.repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]

    # --upgrade re-pins: a wrong pin (hand-edited) is replaced by what two fresh runs agree on.
    doc = json.loads(lock_path.read_bytes())
    doc["repos"][spec]["entrypoints"]["net"]["outputs"][DEFAULT_ARGS]["state_sha256"] = "0" * 64
    lock_path.write_text(json.dumps(doc))
    lock_repos([spec], entrypoints=["net"], lock=lock_path, policy="default", upgrade=True)
    assert Lockfile.load(lock_path).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS] == pin

    # A tampered outputs field in a signed lock: signature-invalid, for --check and for load.
    key, pub = keypair(tmp_path, "k")
    sign_lock(Lockfile.load(lock_path), key).save(lock_path)
    signed = write_policy(tmp_path / "signed.yaml", extends="default", signatures={"trusted_keys": [pub]})
    assert check_lock(lock=lock_path, policy=str(signed)) == []
    doc = json.loads(lock_path.read_bytes())
    doc["repos"][spec]["entrypoints"]["net"]["outputs"][DEFAULT_ARGS]["state_sha256"] = "1" * 64
    lock_path.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    with pytest.raises(SignatureInvalid):
        check_lock(lock=lock_path, policy=str(signed))
    with pytest.raises(SignatureInvalid):
        securehub.load(spec, "net", lock=str(lock_path), policy=str(signed), verbose=False)


def test_check_accepts_a_lock_without_outputs(pinned) -> None:  # type: ignore[no-untyped-def]
    env, spec, lock_path = pinned
    doc = json.loads(lock_path.read_bytes())
    del doc["repos"][spec]["entrypoints"]["net"]["outputs"]  # a lock written before output pinning
    lock_path.write_text(json.dumps(doc))
    assert check_lock(lock=lock_path, policy="default") == []


def test_audit_reports_locked_entrypoint_without_pinned_output_under_strict(pinned) -> None:  # type: ignore[no-untyped-def]
    from securehub.audit.report import run_audit

    env, spec, lock_path = pinned
    findings = run_audit(policy="strict", lock=lock_path, offline=True).findings
    assert [f for f in findings if f.code == "not-locked"] == []
    doc = json.loads(lock_path.read_bytes())
    del doc["repos"][spec]["entrypoints"]["net"]["outputs"]
    lock_path.write_text(json.dumps(doc, sort_keys=True, indent=2) + "\n")

    found = [f for f in run_audit(policy="strict", lock=lock_path, offline=True).findings if f.code == "not-locked"]

    assert [(f.severity, f.repo_key) for f in found] == [("error", spec)]
    assert f"securehub lock {spec} -e net --upgrade" in found[0].message
    assert found[0].lock_line is not None
    assert run_audit(policy="default", lock=lock_path, offline=True).findings == ()  # verify: older locks stay valid


def test_audit_rerun_replays_the_recorded_arguments_and_reports_auto_pinned_ones(pinned, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """lock.mode: auto pins net(width=5) by digest only: --rerun re-runs the recorded set, reports the other."""
    env, spec, lock_path = pinned
    policy = write_policy(tmp_path / "p.yaml", extends="default", lock={"mode": "auto", "outputs": "verify"})
    securehub.load(spec, "net", width=5, lock=str(lock_path), policy=str(policy), verbose=False)
    other = args_sha256((), {"width": 5})
    assert set(Lockfile.load(lock_path).repos[spec].entrypoints["net"].outputs) == {DEFAULT_ARGS, other}
    before = lock_path.read_bytes()

    def results() -> list[str]:
        d = env.hub / "results"
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    cached = results()

    report = run_audit(policy=str(policy), lock=str(lock_path), rerun=True)

    # The recorded (default) argument set was re-run and matched: its only trace is no output-mismatch.
    assert [(f.code, f.severity) for f in report.findings] == [("not-locked", "warning")]
    assert f"args_sha256 {other}" in report.findings[0].message
    assert "pinned but not re-run" in report.findings[0].message
    assert lock_path.read_bytes() == before
    assert results() == cached  # nothing stored by the re-run


def test_cold_pinned_load_reads_and_hashes_the_state_once(pinned, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Issue 11 item 6: a cold miss takes the child's state once, as it arrives on the channel (received
    straight into tensors, hashed and copied to the staging file on the way); pin check, rebuild and store
    all use that, and nothing reads or hashes the state file again."""
    env, spec, lock_path = pinned
    pin = Lockfile.load(lock_path).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
    calls: list[str] = []
    monkeypatch.setattr(result_cache_mod, "read_hashed", spy(calls, "read_hashed", result_cache_mod.read_hashed))
    monkeypatch.setattr(results_mod, "file_lines", spy(calls, "store re-hash", results_mod.file_lines))
    monkeypatch.setattr(rebuild_mod, "load_file", spy(calls, "rebuild re-read", rebuild_mod.load_file))

    model = securehub.load(spec, "net", lock=str(lock_path), policy="strict", verbose=False)

    assert calls == []
    assert state_sha256(model.state_dict()) == pin.state_sha256
    (entry,) = (env.hub / "results").iterdir()
    manifest = json.loads((entry / "manifest.json").read_bytes())
    assert manifest["state_digest"] == lines_digest(file_lines(entry / "state.safetensors"))
    # The stored entry is sound: the next load is a verified hit that rebuilds the same weights.
    again = securehub.load(spec, "net", lock=str(lock_path), policy="strict", verbose=False)
    assert state_sha256(again.state_dict()) == pin.state_sha256
    assert [r["isolation"] is None for r in audit_records(env)[-2:]] == [False, True]


EXPORTED_FILES = {
    "hubconf.py": '''
from models.net import Net

dependencies = ["torch"]


def net(width=3):
    """A repository class (only export rebuilds it): its program's stack traces name this tree's files."""
    return Net(width).eval()
''',
    "models/__init__.py": "",
    "models/net.py": """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(4, width)
        self.out = nn.Linear(width, 2)

    def forward(self, x):
        return self.out(torch.relu(self.fc(x)))
""",
}


def test_an_exported_pin_made_with_one_cache_loads_with_another(tmp_path: Path, git_server: GitServer) -> None:
    """A team locks on CI and loads on a laptop: another SECUREHUB_DIR, so the tree lies elsewhere.

    torch writes each node's stack trace (the repository files' absolute paths) into the exported
    program; pinned as sent, every exported model was ``output-mismatch`` on ``program_sha256`` from any
    other cache. The child now empties node metadata, which the parent never used.
    """
    lock = tmp_path / "hub.lock"
    (tmp_path / "ci").mkdir()
    with hub_env_context(tmp_path / "ci", git_server) as ci:
        spec = ci.spec(publish(ci, "exported-pin", EXPORTED_FILES))
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="strict", example_inputs=["2x4:float32"])
        pin = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
        assert pin.program_sha256 is not None
        before = lock.read_bytes()
        (tmp_path / "laptop").mkdir()
        with hub_env_context(tmp_path / "laptop", git_server) as laptop:
            model = securehub.load(spec, "net", lock=str(lock), policy="strict", verbose=False)
            (record,) = audit_records(laptop)
            assert (record["outcome"], record["strategy"]) == ("ok", "export"), record
    assert state_sha256(model.state_dict()) == pin.state_sha256
    assert model(torch.ones(2, 4)).shape == (2, 2)
    assert lock.read_bytes() == before
