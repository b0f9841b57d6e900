"""Pins are portable (red team 13): the same pinned code gives the same pins on a CI runner and a laptop.

A team runs ``securehub lock -e`` on one machine and ``securehub.load`` on others; every difference of
the machine or the process that reaches the child's output is an ``output-mismatch`` there. The tests
lock in one hub environment and load in another (real git server, real sandbox, real torch), varying
one thing at a time: the cwd and the lock's directory (and a tree fetched again), HOME/TMPDIR, the
locale/TZ/PYTHONHASHSEED of the parent, torch's thread count (fresh child and fork), str hashing (a
model built in set order), the source strategy's re-run in your process, and a repository class given a
path inside its tree (the config digest replaces the tree's path). (Another ``SECUREHUB_DIR``:
test_output_pinning.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import securehub
import securehub.sandbox.parent.forkserver as forkserver_mod
from securehub._util.digest import args_sha256
from securehub.audit.report import run_audit
from securehub.config.lockfile import Lockfile
from securehub.pipeline.bundle import export_bundle, import_bundle
from securehub.pipeline.lock import check_lock, lock_repos
from securehub.pipeline.state_digest import state_sha256
from securehub.verify.signature import sign_lock
from tests._hub_helpers import NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish, write_policy
from tests._lock_helpers import keypair
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

DEFAULT_ARGS = args_sha256((), {})


def _drop_fork_server() -> None:
    """Close this process's fork server: the next launch starts one with the environment as it is now."""
    server = forkserver_mod._server
    if server is not None:
        forkserver_mod.forget(server)


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

EXEC_MADE = '''
import torch
from torch import nn

exec("class Scale(nn.Module):\\n    def forward(self, x):\\n        return 2 * x\\n")


def net():
    """A class made by exec: its methods' file is "<string>", which the recorder resolved against the child's
    working directory (another per run)."""
    return nn.Sequential(nn.Linear(4, 2), Scale()).eval()
'''


@pytest.mark.parametrize(
    ("hubconf", "inputs"), [(SET_ORDER, []), (EXEC_MADE, ["1x4:float32"])], ids=["set-order", "exec"]
)
def test_a_model_whose_output_followed_the_interpreter_pins_and_reloads(
    tmp_path: Path, git_server: GitServer, hubconf: str, inputs: list[str]
) -> None:
    """set-order: str hashing is randomised per interpreter; the child runs with a fixed hash seed, so the set's
    order, and so which layer gets which draw, is the same in a fresh child, a fork and on another machine.
    exec: the config named the child's temp dir; an origin that is no file is now kept as named."""
    lock = tmp_path / "hub.lock"
    with hub_env_context(tmp_path, git_server) as env:
        spec = env.spec(publish(env, "interp", {"hubconf.py": hubconf}))
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="strict", example_inputs=inputs)  # two runs
        pin = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
        _drop_fork_server()
        model = securehub.load(spec, "net", lock=str(lock), policy="strict", force_reload=True, verbose=False)
    assert state_sha256(model.state_dict()) == pin.state_sha256


MODELS = {
    "hubconf.py": '''
from models.nets import Chunked

dependencies = ["torch", "numpy"]


def net(block_chunks=2, depth=4):
    """DINOv2's block_chunks layout with init from every RNG the child seeds and float-valued config."""
    return Chunked(block_chunks, depth).eval()
''',
    "models/__init__.py": "",
    "models/nets.py": """
import random

import numpy as np
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Linear(dim, dim)
        self.act = nn.LeakyReLU(1 / 3)

    def forward(self, x):
        return x + self.act(self.mlp(self.norm(x)))


class BlockChunk(nn.ModuleList):
    def forward(self, x):
        for b in self:
            x = b(x)
        return x


class Chunked(nn.Module):
    def __init__(self, block_chunks, depth, dim=8):
        super().__init__()
        blocks = [Block(dim) for _ in range(depth)]
        size = depth // block_chunks  # chunks padded with one shared Identity, as DINOv2's
        chunks = [[nn.Identity()] * i + blocks[i:i + size] for i in range(0, depth, size)]
        self.blocks = nn.ModuleList([BlockChunk(c) for c in chunks])
        self.drop = nn.Dropout(p=0.1)
        self.head = nn.Linear(dim, 2)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        self.mix = nn.Parameter(torch.empty(64, 64))  # unused by forward: state only
        with torch.no_grad():
            nn.init.orthogonal_(self.mix)  # LAPACK's QR: 64x64 is blocked differently by 1 and 2 threads
        gen = torch.Generator()  # a generator of its own, default seed
        self.register_buffer("perm", torch.randperm(64))
        self.register_buffer("own_gen", torch.randn(16, generator=gen))
        self.register_buffer("from_numpy", torch.from_numpy(np.random.randn(16).astype("float32")))
        self.register_buffer("from_random", torch.tensor([random.random() for _ in range(16)]))
        self.register_buffer("total", torch.randn(300_001).sum().reshape(1))  # a parallel reduction (3+ threads)

    def forward(self, x):
        for chunk in self.blocks:
            x = chunk(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.head(self.drop(x))
        return y.float() + self.total
""",
}


@pytest.fixture(scope="module")
def locked_models(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer):  # type: ignore[no-untyped-def]
    """``net`` locked once on "CI" (one thread) with ``--example-input auto`` (an exported program).

    Yields (spec, the lock's bytes).
    """
    root = tmp_path_factory.mktemp("portable-ci")
    lock = root / "hub.lock"
    with hub_env_context(root, git_server) as env, pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        _drop_fork_server()
        spec = env.spec(publish(env, "portable", MODELS))
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="default", example_inputs=["auto"])
        assert Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS].program_sha256 is not None
        _drop_fork_server()
        yield spec, lock.read_bytes()


def _elsewhere(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the laptop differ from CI in ``where`` (one thing); returns the lock's path there."""
    lock = tmp_path / "hub.lock"
    if where == "cwd-and-lock-dir":
        (tmp_path / "some" / "project").mkdir(parents=True)
        monkeypatch.chdir(tmp_path / "some" / "project")
        lock = tmp_path / "deeply" / "nested config" / "hub.lock"
        lock.parent.mkdir(parents=True)
    elif where == "parent-environment":  # none of it reaches the child
        for name in ("HOME", "TMPDIR"):
            (tmp_path / name.lower()).mkdir()
            monkeypatch.setenv(name, str(tmp_path / name.lower()))
        monkeypatch.setenv("TZ", "Pacific/Chatham")
        monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
        monkeypatch.setenv("PYTHONHASHSEED", "12345")
    elif where.startswith("threads"):  # CI locked with OMP_NUM_THREADS=1; a fresh child or a new server's fork
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        monkeypatch.setenv("MKL_NUM_THREADS", "3")
        monkeypatch.setenv("SECUREHUB_FORK_SERVER", "0" if where == "threads-fresh-child" else "1")
        _drop_fork_server()
    return lock


@pytest.mark.parametrize("where", ["cwd-and-lock-dir", "parent-environment", "threads-fresh-child", "threads-forked"])
def test_pins_made_on_ci_load_on_a_laptop_that_differs_in(  # type: ignore[no-untyped-def]
    locked_models, where: str, tmp_path: Path, git_server: GitServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another cache each time (the tree lies elsewhere), and one more difference. ``net`` draws from every
    RNG the child seeds (torch, a ``torch.Generator`` of its own, numpy, ``random``, ``randperm``), runs
    LAPACK and a parallel reduction, records floats in its config, and is DINOv2's ``block_chunks`` layout
    with a symbolic batch and an autocast region in its program: ``--example-input auto`` on CI, the
    shapes that search recorded on the laptop."""
    spec, lock_bytes = locked_models
    (tmp_path / "laptop").mkdir()
    with hub_env_context(tmp_path / "laptop", git_server) as laptop:
        lock = _elsewhere(where, tmp_path, monkeypatch)
        lock.write_bytes(lock_bytes)
        pin = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
        loads = 2 if where == "cwd-and-lock-dir" else 1
        for i in range(loads):  # the second: the tree fetched again, the sandbox run again
            model = securehub.load(spec, "net", lock=str(lock), policy="strict", force_reload=i > 0, verbose=False)
            assert state_sha256(model.state_dict()) == pin.state_sha256
        records = audit_records(laptop)
    # The program and config pins were compared too (strict: any difference is output-mismatch).
    assert [(r["outcome"], r["strategy"], r["isolation"] is None) for r in records] == [("ok", "export", False)] * loads
    assert lock.read_bytes() == lock_bytes


TREE_PATH_ARG = {
    "hubconf.py": '''
import os

from models.net import Net


def net():
    """A config file next to hubconf, named by its absolute path (as YOLOv5-style repos do)."""
    return Net(cfg=os.path.join(os.path.dirname(__file__), "models", "width.txt")).eval()
''',
    "models/__init__.py": "",
    "models/width.txt": "4",
    "models/net.py": """
import os

from torch import nn


class Net(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg  # kept in public attributes too: the file and its directory
        self.where = os.path.dirname(cfg)
        self.near = cfg.replace("models", "models-elsewhere")  # shares the tree's prefix, names no file in it
        with open(cfg) as fh:
            self.fc = nn.Linear(int(fh.read()), 2)

    def forward(self, x):
        return self.fc(x)
""",
}


@pytest.fixture(scope="module")
def tree_path_locked(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer):  # type: ignore[no-untyped-def]
    """``net`` of :data:`TREE_PATH_ARG` locked on "CI" (its own SECUREHUB_DIR) with an exported program.

    Yields (ci root, spec, the lock's bytes).
    """
    root = tmp_path_factory.mktemp("tree-path-ci")
    lock = root / "hub.lock"
    with hub_env_context(root, git_server) as ci:
        spec = ci.spec(publish(ci, "tree-path-arg", TREE_PATH_ARG))
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="default", example_inputs=["1x4:float32"])
        ci_tree = ci.hub / "trees" / Lockfile.load(lock).repos[spec].tree_sha256
        # The config really names CI's tree (else this test could not fail): one CI load, cached.
        securehub.load(spec, "net", lock=str(lock), policy="strict", verbose=False)
        (entry,) = (ci.hub / "results").iterdir()
        assert str(ci_tree.resolve()) + "/models/width.txt" in (entry / "config.json").read_text()
        yield root, spec, lock.read_bytes()


@pytest.mark.parametrize("launch", ["fresh-child", "forked-child"])
@pytest.mark.parametrize("policy", ["default", "strict"])
def test_a_repository_class_given_a_path_in_its_tree_loads_from_another_cache(  # type: ignore[no-untyped-def]
    tree_path_locked,
    tmp_path: Path,
    git_server: GitServer,
    monkeypatch: pytest.MonkeyPatch,
    policy: str,
    launch: str,
) -> None:
    """Red team 13: the recorder stores constructor arguments (and public attributes) as given, so the tree's
    absolute path (another per cache) is in the config. ``config_sha256`` replaces the load's own tree path by
    ``${tree}``: locked under one SECUREHUB_DIR, the pin holds under another, for a fresh load, a fork and
    the result-cache hit that follows (its digest recomputed with this cache's tree)."""
    ci_root, spec, lock_bytes = tree_path_locked
    lock = tmp_path / "hub.lock"
    lock.write_bytes(lock_bytes)
    pin = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS]
    (tmp_path / "laptop").mkdir()
    with hub_env_context(tmp_path / "laptop", git_server) as laptop:
        monkeypatch.setenv("SECUREHUB_FORK_SERVER", "0" if launch == "fresh-child" else "1")
        _drop_fork_server()
        assert laptop.hub != ci_root / "hub"
        first = securehub.load(spec, "net", lock=str(lock), policy=policy, verbose=False)
        second = securehub.load(spec, "net", lock=str(lock), policy=policy, verbose=False)  # the cached result
        records = audit_records(laptop)
        (entry,) = (laptop.hub / "results").iterdir()
        stored = (entry / "config.json").read_text()
    _drop_fork_server()
    for model in (first, second):
        assert state_sha256(model.state_dict()) == pin.state_sha256
    assert [(r["outcome"], r["strategy"], r["isolation"] is None) for r in records] == [
        ("ok", "export", False),
        ("ok", "export", True),
    ], records
    # Only the digest changed: the config the parent used and stored names this machine's tree.
    assert str((laptop.hub / "trees").resolve()) in stored and str(ci_root) not in stored
    assert lock.read_bytes() == lock_bytes


def test_a_tree_path_pin_survives_check_upgrade_signing_rerun_and_the_source_strategy(  # type: ignore[no-untyped-def]
    tree_path_locked, tmp_path: Path, git_server: GitServer
) -> None:
    """On the laptop: ``lock --check`` finds nothing, ``lock -e --upgrade`` re-pins the very same digests,
    a signed lock loads under a policy that requires it, ``audit --rerun`` matches, and the ``source``
    strategy (the hubconf re-run in this process, with this process's view of the tree) still loads."""
    _, spec, lock_bytes = tree_path_locked
    lock = tmp_path / "hub.lock"
    lock.write_bytes(lock_bytes)
    pins = Lockfile.load(lock).repos[spec].entrypoints["net"].outputs
    (tmp_path / "laptop").mkdir()
    with hub_env_context(tmp_path / "laptop", git_server) as laptop:
        assert check_lock(lock=lock, policy="default") == []
        lock_repos([spec], entrypoints=["net"], lock=lock, policy="default", example_inputs=["1x4:float32"],
                   upgrade=True)  # fmt: skip
        assert Lockfile.load(lock).repos[spec].entrypoints["net"].outputs == pins
        report = run_audit(policy="default", lock=str(lock), rerun=True)
        assert [f for f in report.findings if f.code == "output-mismatch"] == [], report.findings
        key, pub = keypair(tmp_path, "k")
        sign_lock(Lockfile.load(lock), key).save(lock)
        signed = write_policy(tmp_path / "signed.yaml", extends="strict", signatures={"trusted_keys": [pub]})
        assert check_lock(lock=lock, policy=str(signed)) == []
        model = securehub.load(spec, "net", lock=str(lock), policy=str(signed), force_reload=True, verbose=False)
        assert state_sha256(model.state_dict()) == pins[DEFAULT_ARGS].state_sha256
        # source: a policy without `export` (nothing is exported), so only the re-run here rebuilds Net.
        source = write_policy(tmp_path / "source.yaml", extends="strict",
                              reconstruct={"strategies": ["trusted", "source"]})  # fmt: skip
        rebuilt = securehub.load(spec, "net", lock=str(lock), policy=str(source), force_reload=True, verbose=False)
        records = audit_records(laptop)
    assert state_sha256(rebuilt.state_dict()) == pins[DEFAULT_ARGS].state_sha256
    assert [(r["outcome"], r["strategy"]) for r in records[-2:]] == [("ok", "export"), ("ok", "source")], records
    assert type(rebuilt).__name__ == "Net" and rebuilt.cfg.startswith(str((laptop.hub / "trees").resolve()))


def test_a_result_naming_its_tree_is_not_carried_by_a_bundle(  # type: ignore[no-untyped-def]
    tree_path_locked, tmp_path: Path, git_server: GitServer
) -> None:
    """The config digest is portable, the config is not: a cached result whose config names this cache's
    tree would name a directory that does not exist in the importing cache (and its digest, computed there
    with that cache's tree, would not match). ``cache export`` leaves it out; the importer rebuilds it."""
    _, spec, lock_bytes = tree_path_locked
    lock = tmp_path / "hub.lock"
    lock.write_bytes(lock_bytes)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with hub_env_context(tmp_path / "a", git_server) as a:
        securehub.load(spec, "net", lock=str(lock), policy="strict", verbose=False)
        assert len(list((a.hub / "results").iterdir())) == 1
        exported = export_bundle(tmp_path / "hub.bundle", lock=str(lock), policy="strict")
    assert exported.results == () and exported.trees
    with hub_env_context(tmp_path / "b", git_server) as b:
        imported = import_bundle(tmp_path / "hub.bundle", lock=str(lock), policy="strict")
        assert imported.results == ()
        assert list((b.hub / "results").glob("*")) == []
        model = securehub.load(spec, "net", lock=str(lock), policy="strict", verbose=False)
        record = audit_records(b)[-1]
    assert (record["action"], record["outcome"], record["isolation"] is None) == ("load", "ok", False)  # b's sandbox
    assert (
        state_sha256(model.state_dict())
        == Lockfile.load(lock).repos[spec].entrypoints["net"].outputs[DEFAULT_ARGS].state_sha256
    )
