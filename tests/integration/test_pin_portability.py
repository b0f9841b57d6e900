"""Pins are portable (red team 13): the same pinned code gives the same pins on a CI runner and a laptop.

A team runs ``securehub lock -e`` on one machine and ``securehub.load`` on others; every difference of
the machine or the process that reaches the child's output is an ``output-mismatch`` there. Each test
locks in one hub environment and loads in another (real git server, real sandbox, real torch), varying
one thing at a time. (Another ``SECUREHUB_DIR``: test_output_pinning.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import securehub
import securehub.sandbox.parent.forkserver as forkserver_mod
from securehub._util.digest import args_sha256
from securehub.config.lockfile import Lockfile
from securehub.pipeline.lock import lock_repos
from securehub.pipeline.state_digest import state_sha256
from tests._hub_helpers import NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

DEFAULT_ARGS = args_sha256((), {})

THREADED = '''
import torch
from torch import nn


def net():
    """Init code whose float results follow torch's thread count unless the child fixes it."""
    layer = nn.Linear(64, 64)
    with torch.no_grad():
        nn.init.orthogonal_(layer.weight)  # LAPACK's QR: its blocking follows the thread count
        layer.bias.fill_(float(torch.randn(300_001).sum()))  # a parallel reduction: one partial sum per thread
    return nn.Sequential(layer).eval()
'''


def _drop_fork_server() -> None:
    """Close this process's fork server: the next launch starts one with the environment as it is now."""
    server = forkserver_mod._server
    if server is not None:
        forkserver_mod.forget(server)


@pytest.mark.parametrize("fork_server", ["1", "0"])
def test_a_pin_made_with_one_thread_count_loads_with_another(
    tmp_path: Path, git_server: GitServer, monkeypatch: pytest.MonkeyPatch, fork_server: str
) -> None:
    """CI runner: 1 core (or OMP_NUM_THREADS=1); laptop: several. orthogonal_ and a large sum differ in the
    last bits between 1, 2 and 3 threads, so the child runs hubconf with a fixed thread count."""
    lock = tmp_path / "hub.lock"
    (tmp_path / "ci").mkdir()
    (tmp_path / "laptop").mkdir()
    with hub_env_context(tmp_path / "ci", git_server) as ci:
        monkeypatch.setenv("SECUREHUB_FORK_SERVER", fork_server)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        _drop_fork_server()
        spec = ci.spec(publish(ci, "threads", {"hubconf.py": THREADED}))
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="strict")
        pin = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
        before = lock.read_bytes()
        with hub_env_context(tmp_path / "laptop", git_server) as laptop:
            monkeypatch.setenv("SECUREHUB_FORK_SERVER", fork_server)
            monkeypatch.setenv("OMP_NUM_THREADS", "3")
            _drop_fork_server()
            first = securehub.load(spec, "net", lock=str(lock), policy="strict", verbose=False)
            again = securehub.load(spec, "net", lock=str(lock), policy="strict", force_reload=True, verbose=False)
            assert [r["outcome"] for r in audit_records(laptop)] == ["ok", "ok"]
    assert state_sha256(first.state_dict()) == state_sha256(again.state_dict()) == pin.state_sha256
    assert lock.read_bytes() == before


REPO_CLASS = '''
import torch
from torch import nn


class Net(nn.Module):
    """A repository class with no example input: only the source strategy rebuilds it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)
        with torch.no_grad():
            nn.init.orthogonal_(self.fc.weight)
            self.fc.bias.fill_(float(torch.randn(300_001).sum()))

    def forward(self, x):
        return self.fc(x)


def net():
    return Net().eval()
'''


def test_the_source_strategy_reruns_with_the_childs_thread_count(tmp_path: Path, git_server: GitServer) -> None:
    """The source strategy re-runs the entrypoint in your process and needs the child's bits: it runs with the
    child's fixed thread count, whatever yours is (and gives yours back)."""
    saved = torch.get_num_threads()
    with hub_env_context(tmp_path, git_server) as env:
        spec = env.spec(publish(env, "source-threads", {"hubconf.py": REPO_CLASS}))
        torch.set_num_threads(3)
        try:
            model = securehub.load(spec, "net", policy="permissive", verbose=False)
            assert torch.get_num_threads() == 3
        finally:
            torch.set_num_threads(saved)
        (record,) = audit_records(env)
    assert (record["outcome"], record["strategy"]) == ("ok", "source"), record
    assert type(model).__name__ == "Net"


SET_ORDER = '''
from torch import nn


def net():
    """Layers made in the iteration order of a set of strings: the order of the RNG draws follows str hashing."""
    return nn.ModuleDict({name: nn.Linear(2, 2) for name in {"alpha", "beta", "gamma", "delta", "eps", "zeta"}})
'''


def test_a_model_built_in_set_order_pins_and_reloads(tmp_path: Path, git_server: GitServer) -> None:
    """str hashing is randomised per interpreter: the child runs with a fixed hash seed, so the set's order, and
    so which layer gets which draw, is the same in a fresh child, a fork and on another machine."""
    lock = tmp_path / "hub.lock"
    with hub_env_context(tmp_path, git_server) as env:
        spec = env.spec(publish(env, "set-order", {"hubconf.py": SET_ORDER}))
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="strict")  # two runs: fresh, then forked
        pin = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
        _drop_fork_server()
        model = securehub.load(spec, "net", lock=str(lock), policy="strict", force_reload=True, verbose=False)
    assert state_sha256(model.state_dict()) == pin.state_sha256
