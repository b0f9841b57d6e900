"""``--example-input auto`` end to end: real git server, real sandbox, real torch (SPEC section 10).

The child finds example inputs for models whose class the repository defines (a conv net, a
token/Linear model, an embedding model, a model carrying ``default_cfg['input_size']``);
``securehub lock -e EP --example-input auto`` records them, and a strict load then rebuilds the
model through ``export`` with outputs equal to the directly built model. Also: ``load`` with
``example_inputs="auto"`` unlocked, its ``lock.mode: auto`` record, a model no candidate fits
(refused, hub.lock byte-identical), the refusal that names a found ``--example-input``, and a
forward that never returns (``sandbox-timeout``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.api import example_tensors
from securehub.config.lockfile import InputSpec, Lockfile
from securehub.errors import SecureHubError
from securehub.pipeline import lock_entrypoints
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish, write_policy
from tests.integration.test_lock_cli import Cli, cli  # noqa: F401 - the fixture is used by name

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]


class ConvNet(nn.Module):
    """First leaf layer: Conv2d with 5 input channels -> (1, 5, 224, 224)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(5, 4, 3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(torch.relu(self.stem(x))), 1))


class TokenMixer(nn.Module):
    """Transformer-ish: needs (batch, tokens, features); (1, 12) does not unpack -> (1, 16, 12)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.proj = nn.Linear(12, 8)
        self.norm = nn.LayerNorm(8)

    def forward(self, x):
        b, t, f = x.shape
        return self.norm(self.proj(x)).mean(dim=1)


class Bag(nn.Module):
    """Token ids: Embedding(100, 8) -> int64 (1, 16)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.emb = nn.Embedding(100, 8)
        self.out = nn.Linear(8, 3)

    def forward(self, ids):
        return self.out(self.emb(ids).mean(dim=1))


class Fixed40(nn.Module):
    """Accepts only 40x40 images; says so in default_cfg (timm style)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.default_cfg = {"input_size": (3, 40, 40), "num_classes": 2}
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2 * 38 * 38, 2)

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


class TwoInputs(nn.Module):
    """No candidate fits: forward needs two tensors."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x, y):
        return self.fc(x) + y


class Hang(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        while True:
            pass


class Counter(nn.Module):
    """Counts its forward passes in a buffer: the search's forward pass leaves calls == 1, a load 0."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fc = nn.Linear(4, 2)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        self.calls.add_(1)
        return self.fc(x)


def conv():
    return ConvNet().eval()


def counter():
    return Counter().eval()


def urandom():
    import os

    torch.manual_seed(int.from_bytes(os.urandom(4), "little"))  # defeats the sandbox's fixed seed
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()


def tokens():
    return TokenMixer().eval()


def embedding():
    return Bag().eval()


def cfg():
    return Fixed40().eval()


def nofit():
    return TwoInputs().eval()


def hang():
    return Hang().eval()
'''

EXPECTED = {
    "conv": [{"shape": [1, 5, 224, 224], "dtype": "float32"}],
    "tokens": [{"shape": [1, 16, 12], "dtype": "float32"}],
    "embedding": [{"shape": [1, 16], "dtype": "int64"}],
    "cfg": [{"shape": [1, 3, 40, 40], "dtype": "float32"}],
}


def _direct(name: str) -> nn.Module:
    ns: dict[str, Any] = {}
    exec(compile(HUBCONF, "hubconf.py", "exec"), ns)  # noqa: S102 - the test's own reference code
    model = ns[name]()
    assert isinstance(model, nn.Module)
    return model


def _inputs(specs: list[dict[str, Any]]) -> tuple[torch.Tensor, ...]:
    return example_tensors([InputSpec(tuple(s["shape"]), s["dtype"]) for s in specs])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: Any) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("example-input-auto"), git_server) as hub_env:
        repo = publish(hub_env, "autoinput", {"hubconf.py": HUBCONF})
        yield hub_env, hub_env.spec(repo)


@contextmanager
def _counting_sandbox_runs() -> Iterator[list[str]]:
    """The entrypoint of every sandbox run ``lock -e`` starts (a spy: each run still happens)."""
    names: list[str] = []
    real = lock_entrypoints.run_in_sandbox

    def spy(*args: Any, **kwargs: Any) -> Any:
        names.append(args[2])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lock_entrypoints, "run_in_sandbox", spy)
        yield names


@pytest.fixture(scope="module")
def locked_runs(env: tuple[HubEnv, str]) -> tuple[Path, list[str]]:
    """hub.lock made by ``lock SPEC -e conv -e tokens -e embedding -e cfg --example-input auto`` under strict,
    and the entrypoint of each sandbox run it started."""
    hub_env, spec = env
    path = hub_env.root / "auto.lock"
    with _counting_sandbox_runs() as runs:
        lock_repos([spec], entrypoints=list(EXPECTED), policy="strict", lock=path, example_inputs=["auto"])
    return path, runs


@pytest.fixture(scope="module")
def locked(locked_runs: tuple[Path, list[str]]) -> Path:
    return locked_runs[0]


def test_auto_lock_counts_the_search_run_as_one_of_the_two_pinning_runs(
    locked_runs: tuple[Path, list[str]],
) -> None:
    """The search run's output equals the next run's (given inputs), so each entrypoint runs twice, not 3 times."""
    _, runs = locked_runs
    assert sorted(runs) == sorted([name for name in EXPECTED for _ in range(2)])


def test_auto_lock_whose_search_changed_the_state_runs_again_and_pins_what_a_load_produces(
    env: tuple[HubEnv, str], tmp_path: Path
) -> None:
    hub_env, spec = env
    path = tmp_path / "hub.lock"
    with _counting_sandbox_runs() as runs:
        lock_repos([spec], entrypoints=["counter"], policy="strict", lock=path, example_inputs=["auto"])

    # The search's extra forward pass left a different ``calls`` than a run with the inputs given: a third decides.
    assert runs == ["counter"] * 3
    entry = json.loads(path.read_bytes())["repos"][spec]["entrypoints"]["counter"]
    assert entry["example_inputs"] == [{"shape": [1, 4], "dtype": "float32"}]
    assert len(entry["outputs"]) == 1
    # strict = lock.outputs: required; the load's output is checked against the pin before it is admitted
    securehub.load(spec, "counter", policy="strict", lock=path, verbose=False)
    assert audit_records(hub_env)[-1]["outcome"] == "ok"


def test_auto_lock_of_a_non_reproducible_entrypoint_is_output_mismatch_and_hub_lock_unchanged(
    env: tuple[HubEnv, str], tmp_path: Path
) -> None:
    hub_env, spec = env
    path = tmp_path / "hub.lock"
    lock_repos([spec], policy="strict", lock=path)
    before = path.read_bytes()

    with _counting_sandbox_runs() as runs, pytest.raises(SecureHubError) as info:
        lock_repos([spec], entrypoints=["urandom"], policy="strict", lock=path, example_inputs=["auto"])

    assert info.value.code == "output-mismatch"
    assert "not reproducible: two runs gave different state (first differing tensor: 0.bias)" in info.value.message
    assert runs == ["urandom"] * 3  # the search run differed too, and so did the two given-input runs
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", list(EXPECTED))
def test_lock_example_input_auto_records_the_inputs_found(name: str, env: tuple[HubEnv, str], locked: Path) -> None:
    _, spec = env
    doc = json.loads(locked.read_bytes())
    assert doc["repos"][spec]["entrypoints"][name]["example_inputs"] == EXPECTED[name]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_strict_load_of_auto_locked_entrypoint_rebuilds_via_export_equal_to_direct(
    name: str, env: tuple[HubEnv, str], locked: Path
) -> None:
    hub_env, spec = env
    before = locked.read_bytes()

    model = securehub.load(spec, name, policy="strict", lock=locked, verbose=False)

    record = audit_records(hub_env)[-1]
    assert (record["outcome"], record["strategy"]) == ("ok", "export"), record
    x = _inputs(EXPECTED[name])
    with torch.no_grad():
        assert torch.allclose(model(*x), _direct(name)(*x), rtol=1e-5, atol=1e-6)
    assert locked.read_bytes() == before


def test_load_example_inputs_auto_unlocked_under_default_and_auto_lock_records_them(
    env: tuple[HubEnv, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_env, spec = env
    monkeypatch.chdir(tmp_path)
    model = securehub.load(spec, "tokens", policy="default", lock=None, example_inputs="auto", verbose=False)
    assert audit_records(hub_env)[-1]["strategy"] == "export"
    x = _inputs(EXPECTED["tokens"])
    with torch.no_grad():
        assert torch.allclose(model(*x), _direct("tokens")(*x), rtol=1e-5, atol=1e-6)
    assert list(tmp_path.iterdir()) == []  # no hub.lock here: nothing is created

    Lockfile.empty().save(tmp_path / "hub.lock")  # lock.mode: auto records into an existing lock
    securehub.load(spec, "embedding", policy="default", example_inputs="auto", verbose=False)
    doc = json.loads((tmp_path / "hub.lock").read_bytes())
    assert doc["repos"][spec]["entrypoints"]["embedding"]["example_inputs"] == EXPECTED["embedding"]


def test_default_refusal_names_the_example_input_the_sandbox_found(
    env: tuple[HubEnv, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, spec = env
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "conv", policy="default", verbose=False)
    assert info.value.code == "reconstruct-refused"
    assert "--example-input 1x5x224x224:float32" in info.value.message
    assert f"securehub lock {spec} -e conv --example-input 1x5x224x224:float32" in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_no_candidate_fits_is_refused_and_hub_lock_is_byte_identical(
    env: tuple[HubEnv, str],
    cli: Cli,  # noqa: F811 - pytest fixture by name
) -> None:
    _, spec = env
    assert cli("lock", spec, "--policy", "strict").code == 0
    before = cli.lock_path.read_bytes()

    r = cli("lock", spec, "-e", "nofit", "--example-input", "auto", "--policy", "strict")

    assert (r.code, r.codes()) == (1, ["reconstruct-refused"]), r.err
    assert "found none" in r.err and "nothing was recorded" in r.err
    assert "1x3x8x224x224:float32 (a video clip)" in r.err and "1x128:int64 (token ids)" in r.err
    assert cli.lock_path.read_bytes() == before


def test_auto_search_of_a_hanging_forward_ends_in_sandbox_timeout(
    env: tuple[HubEnv, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_env, spec = env
    monkeypatch.chdir(tmp_path)
    # 10 s: start-up (torch import) takes one to three, so the limit is reached inside the search.
    policy = write_policy(tmp_path / "p.yaml", "default", sandbox={"timeout_s": 10})
    with pytest.raises(SecureHubError) as info:
        securehub.load(spec, "hang", policy=str(policy), example_inputs="auto", verbose=False)
    assert info.value.code == "sandbox-timeout", info.value.message
    assert audit_records(hub_env)[-1]["code"] == "sandbox-timeout"


def test_cli_help_documents_example_input_auto(cli: Cli) -> None:  # noqa: F811 - pytest fixture by name
    for verb in ("lock", "load"):
        r = cli(verb, "--help")
        assert r.code == 0
        assert "'auto': the sandbox finds inputs" in " ".join(r.out.split())
        assert "1x3x224x224:float32" in r.out
