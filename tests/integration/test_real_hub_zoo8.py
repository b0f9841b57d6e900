"""Repositories written like harritaylor/torchvggish, bryandlee/animegan2-pytorch, seungwonpark/melgan
and a hubconf returning its model wrapped (``nn.DataParallel``, ``torch.compile``), end to end
(real-code round 8).

Rounds 1-7 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo*.py) cover the others.
Here, their code written after the upstream repositories (narrowed) in tests/_realrepo_zoo8.py,
published on the loopback git server:

- ``vggish``: upstream's vggish_input imports resampy and soundfile at the top: ``dependency-missing``.
  The fork importing them where used loads with ``preprocess=False`` (forward then takes examples; with
  the default it raises AttributeError on a tensor, so ``auto`` finds nothing and the lock gives the
  shape): two downloads, the PCA matrices frozen ``nn.Parameter``s (still frozen after loading), the
  quantized output equal; through export (strict) and source (permissive);
- ``animegan``: ``generator``'s ``check_hash=True`` on a file name without a hash prefix is
  ``artifact-not-allowed`` without a lock (SPEC section 9; torch.hub checks nothing there), and loads once
  ``securehub lock -e`` recorded the full digests; ``face2paint`` imports PIL (``dependency-missing``),
  and the fork's returns a *function*: ``reconstruct-refused`` naming ``builtins.function``;
- ``melgan``: hook-based weight norm removed by the hubconf's ``model.eval(inference=True)``, an
  ``eval`` override that returns None; export (strict, a given mel shape) and source (permissive, the override
  and ``inference()`` kept);
- ``wrapped``: ``nn.DataParallel(model)`` loads by export (``module.`` keys, as torch.hub gives them)
  and source; ``torch.compile(model)`` is ``reconstruct-refused`` under strict/default, saying why (its
  first call would run a C++ compiler in the sandbox) and what to do, and loads through source.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.hub
from torch import nn

import securehub
from securehub._util.determinism import preserved_rng, seed_all
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish, refused
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import assert_used_like_the_direct_model, expected_strategy, jittered, pickled
from tests._realrepo_world import ZooWorld, substituted
from tests._realrepo_zoo8 import (
    ANIMEGAN_FILES,
    ANIMEGAN_FORK_FILES,
    MELGAN_FILES,
    VGGISH_FILES,
    VGGISH_FORK_FILES,
    WRAPPED_FILES,
)
from tests._servers import GitServer

pytestmark = [
    NEEDS_FULL_SANDBOX,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

URL_PATHS = {
    "VGGISH_URL": "harritaylor/torchvggish/releases/download/v0.1/vggish-@.pth",
    "PCA_URL": "harritaylor/torchvggish/releases/download/v0.1/vggish_pca_params-@.pth",
    "MELGAN_URL": "seungwonpark/melgan/releases/download/v0.1-alpha/nvidia_tacotron2_LJ11_epoch3200.pt",
    "WRAPPED_URL": "acme/smallnet/releases/download/v1/smallnet-@.pth",
}
ANIMEGAN_RELEASE = "bryandlee/animegan2-pytorch/raw/main/weights"
ANIMEGAN_NAMES = ("celeba_distill", "face_paint_512_v1", "face_paint_512_v2", "paprika")


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(8)
        ph = dict.fromkeys([*URL_PATHS, "RELEASE_URL"], "https://weights.example.com/placeholder")
        with preserved_rng(), imported_like_the_child(substituted(VGGISH_FORK_FILES, ph), tmp, {}) as module:
            seed_all()
            model = module.vggish(pretrained=False)
            net = {k: v for k, v in model.state_dict().items() if not k.startswith("pproc.")}
        self._serve("VGGISH_URL", pickled(jittered(net, gen)))
        pca = {"pca_eigen_vectors": torch.randn(16, 16, generator=gen) * 0.3,
               "pca_means": torch.randn(16, generator=gen) * 0.1}  # fmt: skip
        self._serve("PCA_URL", pickled(pca))
        with preserved_rng(), imported_like_the_child(substituted(MELGAN_FILES, ph), tmp, {}) as module:
            seed_all()
            g = module.Generator(8)
            self._serve("MELGAN_URL", pickled({"model_g": jittered(g.state_dict(), gen), "githash": "0fbe994"}))
        with preserved_rng(), imported_like_the_child(substituted(WRAPPED_FILES, ph), tmp, {}) as module:
            seed_all()
            self._serve("WRAPPED_URL", pickled(jittered(module.smallnet(pretrained=False).state_dict(), gen)))
        with preserved_rng(), imported_like_the_child(substituted(ANIMEGAN_FILES, ph), tmp, {}) as module:
            seed_all()
            state = module.generator(pretrained=False).state_dict()
        for name in ANIMEGAN_NAMES:
            blob = pickled(jittered(state, gen))
            url = env.put(f"{ANIMEGAN_RELEASE}/{name}.pt", blob)
            self.blobs[url] = blob
        self.urls["RELEASE_URL"] = url.rsplit("/", 1)[0]
        self.files = {
            "vggish": substituted(VGGISH_FILES, self.urls),
            "vggish-fork": substituted(VGGISH_FORK_FILES, self.urls),
            "animegan": substituted(ANIMEGAN_FILES, self.urls),
            "animegan-fork": substituted(ANIMEGAN_FORK_FILES, self.urls),
            "melgan": substituted(MELGAN_FILES, self.urls),
            "wrapped": substituted(WRAPPED_FILES, self.urls),
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo8"), git_server) as env:
        yield World(env, direct)


def test_vggish_upstream_needs_resampy(world: World) -> None:
    """torchvggish declares resampy and soundfile; vggish_input imports them at the top."""
    spec = world.specs["vggish"]
    for call in (
        lambda: securehub.load(spec, "vggish", policy="permissive", lock=None, verbose=False),
        lambda: securehub.help(spec, "vggish", policy="permissive"),
    ):
        code, message = refused(call)
        assert code == "dependency-missing", message
        assert "torchvggish/vggish_input.py imports 'resampy'" in message and "install it" in message, message


def _vggish_head(m: nn.Module) -> None:
    """Fine-tune as users do: the quantizing postprocessor off (its round() has no gradient), a new last layer."""
    m.postprocess = False
    m.embeddings[4] = nn.Linear(32, 16)


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_vggish_fork_loads_with_its_frozen_pca(world: World, policy: str, tmp_path: Path) -> None:
    spec = world.specs["vggish-fork"]
    lock = tmp_path / "hub.lock"
    if policy == "strict":  # permissive: no lock (one with a program would make it use export too)
        lock_repos([spec], entrypoints=["vggish"], args={"preprocess": False}, policy="strict", lock=lock,
                   example_inputs=["2x1x96x64:float32"])  # fmt: skip
    lock_or_none = lock if policy == "strict" else None
    model = securehub.load(spec, "vggish", preprocess=False, policy=policy, lock=lock_or_none, verbose=False,
                           force_reload=True)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == expected_strategy(policy)
    assert sorted(a["url"] for a in record["artifacts"]) == sorted([world.urls["VGGISH_URL"], world.urls["PCA_URL"]])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {"pproc.pca_eigen_vectors", "pproc.pca_means"}
    x = torch.linspace(-1.0, 1.0, 2 * 96 * 64).reshape(2, 1, 96, 64)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 16) and torch.equal(out, out.round()) and 0 <= out.min() and out.max() <= 255
    assert_used_like_the_direct_model(
        model, record["strategy"], lambda: world.direct("vggish-fork", "vggish", preprocess=False), x, tmp_path,
        head=_vggish_head,
    )  # fmt: skip


def test_vggish_default_preprocess_finds_no_inputs(world: World, tmp_path: Path) -> None:
    """With ``preprocess=True`` forward takes a numpy waveform or a file name: ``auto`` finds none."""
    lock = tmp_path / "hub.lock"
    code, message = refused(lambda: lock_repos([world.specs["vggish-fork"]], entrypoints=["vggish"], policy="strict",
                                                 lock=lock, example_inputs=["auto"]))  # fmt: skip
    assert code == "reconstruct-refused" and "found none" in message and "--example-input" in message, message
    assert not lock.exists()


def test_animegan_check_hash_needs_a_lock(world: World, tmp_path: Path) -> None:
    """``check_hash=True`` on ``face_paint_512_v2.pt``: no prefix to check, so securehub wants a full digest
    (SPEC section 9); refused before connecting without one, loads once ``lock -e`` recorded it."""
    spec = world.specs["animegan"]
    url = f"{world.urls['RELEASE_URL']}/face_paint_512_v2.pt"
    world.env.clear_logs()
    code, message = refused(lambda: securehub.load(spec, "generator", policy="default", lock=None, verbose=False))
    assert code == "artifact-not-allowed", message
    assert "check_hash=True: expected the file name 'face_paint_512_v2.pt' to carry a sha256 prefix" in message
    assert "lock the artifact in hub.lock" in message, message
    assert not world.env.artifacts.requests  # refused before connecting
    assert audit_records(world.env)[-1]["code"] == "artifact-not-allowed"
    for policy in ("strict", "permissive"):
        lock = tmp_path / f"{policy}.lock"  # the digests; for strict, with inputs (permissive: source)
        lock_repos([spec], entrypoints=["generator"], policy="strict", lock=lock,
                   example_inputs=["1x3x64x64:float32"] if policy == "strict" else [])  # fmt: skip
        model = securehub.load(spec, "generator", policy=policy, lock=lock, verbose=False, force_reload=True)
        record = audit_records(world.env)[-1]
        assert record["strategy"] == expected_strategy(policy)
        assert [a["url"] for a in record["artifacts"]] == [url]
        x = torch.linspace(-1.0, 1.0, 3 * 64 * 64).reshape(1, 3, 64, 64)

        def head(m: nn.Module) -> None:
            m.out_layer[0] = nn.Conv2d(4, 3, 1, bias=False)

        assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("animegan", "generator"), x,
                                          tmp_path, head=head)  # fmt: skip


def test_animegan_face2paint(world: World, tmp_path: Path) -> None:
    """Upstream's imports PIL inside the entrypoint; the fork's returns the closure: refused by type."""
    code, message = refused(lambda: securehub.load(world.specs["animegan"], "face2paint", policy="permissive",
                                                    lock=None, verbose=False))  # fmt: skip
    assert code == "dependency-missing" and "hubconf.py imports 'PIL'" in message, message
    spec, lock = world.specs["animegan-fork"], tmp_path / "hub.lock"
    code, message = refused(lambda: lock_repos([spec], entrypoints=["face2paint"], policy="default", lock=lock))
    assert code == "reconstruct-refused" and "the entrypoint returned a builtins.function" in message, message
    assert not lock.exists()
    for policy in ("default", "permissive"):
        code, message = refused(lambda: securehub.load(spec, "face2paint", policy=policy, lock=None, verbose=False))
        assert code == "reconstruct-refused", message
        assert "the entrypoint returned a builtins.function" in message and "return the model alone" in message


class _Evaluated(nn.Module):
    """MelGAN's ``eval(inference=False)`` returns None: checked alone, the shared checks use this wrapper."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, mel: torch.Tensor) -> Any:
        return self.model(mel)


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_melgan_weight_norm_removed_by_the_hubconf(world: World, policy: str, tmp_path: Path) -> None:
    spec, lock = world.specs["melgan"], tmp_path / "hub.lock"
    if policy == "strict":  # permissive: no lock (one with a program would make it use export too)
        lock_repos([spec], entrypoints=["melgan"], policy="strict", lock=lock, example_inputs=["1x8x12:float32"])
    lock_or_none = lock if policy == "strict" else None
    model = securehub.load(spec, "melgan", policy=policy, lock=lock_or_none, verbose=False, force_reload=True)
    strategy = audit_records(world.env)[-1]["strategy"]
    assert strategy == expected_strategy(policy)
    state = model.state_dict()
    assert "generator.1.weight" in state and not any(k.endswith(("weight_g", "weight_v")) for k in state)
    mel = torch.linspace(-8.0, 2.0, 8 * 12).reshape(1, 8, 12)
    if strategy == "source":
        assert model.eval() is None and not model.training  # upstream's override
        with torch.no_grad():
            audio = model.inference(mel)
            assert audio.dtype == torch.int16 and torch.equal(audio, world.direct("melgan", "melgan").inference(mel))
    with torch.no_grad():
        assert model(mel).shape == (1, 1, 12 * 256)

    def head(m: nn.Module) -> None:
        m.model.generator[-2] = nn.Conv1d(4, 1, 7)

    assert_used_like_the_direct_model(
        _Evaluated(model), strategy, lambda: _Evaluated(world.direct("melgan", "melgan")), mel, tmp_path, head=head
    )


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_data_parallel_wrapper_loads_as_torch_hub_gives_it(world: World, policy: str, tmp_path: Path) -> None:
    """On a machine without GPUs ``DataParallel`` calls its module; trusted refuses the class by name,
    export rebuilds the program (keys keep ``module.``), source returns the DataParallel itself."""
    spec, lock = world.specs["wrapped"], tmp_path / "hub.lock"
    if policy == "strict":  # permissive: no lock (one with a program would make it use export too)
        lock_repos([spec], entrypoints=["smallnet_dp"], policy="strict", lock=lock,
                   example_inputs=["1x3x16x16:float32"])  # fmt: skip
    lock_or_none = lock if policy == "strict" else None
    model = securehub.load(spec, "smallnet_dp", policy=policy, lock=lock_or_none, verbose=False, force_reload=True)
    strategy = audit_records(world.env)[-1]["strategy"]
    assert strategy == expected_strategy(policy)
    assert all(k.startswith("module.") for k in model.state_dict())
    assert isinstance(model, nn.DataParallel) == (strategy == "source")
    x = torch.linspace(-1.0, 1.0, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)

    def head(m: nn.Module) -> None:
        m.module.fc = nn.Linear(4, 3)

    assert_used_like_the_direct_model(model, strategy, lambda: world.direct("wrapped", "smallnet_dp"), x, tmp_path,
                                      head=head)  # fmt: skip


def test_compiled_model_is_refused_without_running_it(world: World, tmp_path: Path) -> None:
    """``torch.compile(model)``: its first call compiles with g++; before this round the sandbox's own search
    for example inputs ran it and the load was a ``sandbox-violation`` (``exec g++ --version``) that said
    nothing useful. Now no forward pass runs on it: strict/default refuse it saying why and what to do
    (``lock -e`` too, nothing written); permissive loads it through source (compiled in this process, as
    torch.hub would; not called here)."""
    spec, lock = world.specs["wrapped"], tmp_path / "hub.lock"
    code, message = refused(lambda: lock_repos([spec], entrypoints=["smallnet_compiled"], policy="strict", lock=lock,
                                                 example_inputs=["auto"]))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert "the entrypoint returned a torch.compile'd module (OptimizedModule wrapping net:SmallNet)" in message
    assert "uncompiled" in message and "source strategy" in message and "g++" not in message, message
    assert not lock.exists()
    code, message = refused(lambda: securehub.load(spec, "smallnet_compiled", policy="default", lock=None,
                                                    verbose=False))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert "torch.compile'd module (OptimizedModule wrapping net:SmallNet)" in message, message
    assert "pass example_inputs" not in message, message
    model = securehub.load(spec, "smallnet_compiled", policy="permissive", lock=None, verbose=False)
    assert type(model).__name__ == "OptimizedModule" and audit_records(world.env)[-1]["strategy"] == "source"
    direct = world.direct("wrapped", "smallnet")
    inner = model._orig_mod
    assert set(model.state_dict()) == {f"_orig_mod.{k}" for k in direct.state_dict()}
    x = torch.linspace(-1.0, 1.0, 2 * 3 * 16 * 16).reshape(2, 3, 16, 16)

    def head(m: nn.Module) -> None:
        m.fc = nn.Linear(4, 3)

    assert_used_like_the_direct_model(inner, "source", lambda: world.direct("wrapped", "smallnet"), x, tmp_path,
                                      head=head)  # fmt: skip
