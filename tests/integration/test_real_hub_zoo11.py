"""Repositories written like NVIDIA/DeepLearningExamples' WaveGlow and HiFi-GAN entrypoints, a user's local
checkout (``source="local"``), pytorch/fairseq's and huggingface/transformers' hubconfs, end to end
(real-code round 11).

Rounds 1-10 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo*.py) cover the others.
Here, their code written after the upstream repositories (narrowed) in tests/_realrepo_zoo11.py,
published on the loopback git server (the local checkout is a directory of this machine):

- ``waveglow``: ``Invertible1x1Conv`` caches its weight's inverse as a plain attribute on the first
  ``infer``, weight-normed WaveNet layers removed by the static ``remove_weightnorm``, a
  ``@torch.jit.script`` function compiled at import, ``forward`` taking one ``(spect, audio)`` tuple:
  ``source`` keeps ``infer(spect, sigma=...)`` (a forward taking one tuple cannot be exported, as
  test_real_hub_zoo6.py's slowfast shows);
- ``hifigan``: the config read from the checkpoint (``ckpt["config"]``), old-layout keys renamed by an
  overridden ``load_state_dict``, ``remove_weight_norm()`` in the entrypoint, a ``Denoiser`` computing a
  buffer by running the generator in ``__init__``; upstream's ``(hifigan, train_setup, denoiser)`` is
  refused naming the tuple, a fork returning the generator loads through export (strict) and source
  (with ``torch.jit.script`` of a submodule inside the entrypoint, which export refuses naming it);
- ``mvit``: pytorchvideo's ``mvit_base_16x4`` (pooling attention, the token grid threaded through the
  blocks, positional parameters shaped by the computed patch grid), exported under default;
- ``local``: a git checkout with an uncommitted edit, ``__pycache__`` and ``.git``, in a path with
  spaces, whose hubconf imports a sibling package: the edit is what loads (source, and export with
  ``example_inputs=``), nothing can be locked, strict refuses it;
- ``fairseq``/``transformers``: a hubconf that checks its own dependencies and raises ``RuntimeError``,
  and one importing a package from ``src/`` whose module imports an absent ``sentencepiece`` before
  ``dependencies`` is assigned: both ``dependency-missing`` naming what to install.
"""

from __future__ import annotations

import py_compile
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import HubEnv, audit_records, hub_env_context, publish, refused
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import assert_used_like_the_direct_model, jittered, pickled
from tests._realrepo_world import ZOO_MARKS, ZooWorld, substituted
from tests._realrepo_zoo11 import (
    FAIRSEQ_FILES,
    HIFIGAN_FILES,
    LOCAL_EDIT,
    LOCAL_FILES,
    MVIT_FILES,
    TRANSFORMERS_FILES,
    WAVEGLOW_FILES,
)
from tests._servers import GitServer

pytestmark = ZOO_MARKS

NGC = "nvidia/dle"
URL_PATHS = {
    "WAVEGLOW_FP32": f"{NGC}/waveglow_ckpt_fp32/versions/19.09.0/files/nvidia_waveglowpyt_fp32_20190427",
    "HIFIGAN_GEN": f"{NGC}/hifigan__pyt_ckpt_ds-ljs22khz/versions/21.08.0_amp/files/hifigan_gen_checkpoint_6500.pt",
    "MVIT_B": "pytorchvideo/model_zoo/kinetics/MVIT_B_16x4.pyth",
}
PLACEHOLDERS = dict.fromkeys([*URL_PATHS, "WAVEGLOW_FP16", "MVIT_ROOT"], "https://weights.example.com/placeholder")
WAVEGLOW_CONFIG = {"n_mel_channels": 4, "n_flows": 4, "n_group": 4, "n_early_every": 2, "n_early_size": 2,
                   "upsample_kernel": 16, "upsample_stride": 4,
                   "WN_config": {"n_layers": 2, "kernel_size": 3, "n_channels": 4}}  # fmt: skip


def _old_layout(key: str, kernels: int) -> str:
    """HiFi-GAN's checkpoints before the ONNX fix: ``resblocks.{i}.{j}.*`` was ``resblocks.{i * k + j}.*``."""
    parts = key.split(".")
    if parts[0] != "resblocks":
        return key
    return ".".join(["resblocks", str(int(parts[1]) * kernels + int(parts[2])), *parts[3:]])


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(11)
        ph = PLACEHOLDERS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with imported_like_the_child(substituted(WAVEGLOW_FILES, ph), tmp, {}) as module:
                state = jittered(module.nvidia_waveglow(pretrained=False).state_dict(), gen)
                # saved from DistributedDataParallel: every key under ``module.``
                self._serve("WAVEGLOW_FP32", pickled({"state_dict": {f"module.{k}": v for k, v in state.items()},
                                                      "config": WAVEGLOW_CONFIG}))  # fmt: skip
            with imported_like_the_child(substituted(HIFIGAN_FILES, ph), tmp, {}) as module:
                net = module.nvidia_hifigan_generator(pretrained=False)
                config = dict(net.conf)
                state = {_old_layout(k, 2): v for k, v in jittered(net.state_dict(), gen).items()}
                setup = {"sampling_rate": 22050, "hop_length": 4}
                self._serve("HIFIGAN_GEN", pickled({"generator": state, "config": config, "train_setup": setup}))
            with imported_like_the_child(substituted(MVIT_FILES, ph), tmp, {}) as module:
                state = jittered(module.mvit_base_16x4().state_dict(), gen)
                self._serve("MVIT_B", pickled({"model_state": state, "epoch": 200}))
        self.urls["MVIT_ROOT"] = self.urls["MVIT_B"].rsplit("/", 2)[0]
        names = {**PLACEHOLDERS, **self.urls}
        self.files = {
            "waveglow": substituted(WAVEGLOW_FILES, names),
            "hifigan": substituted(HIFIGAN_FILES, names),
            "local": substituted(LOCAL_FILES, names),
            "fairseq": substituted(FAIRSEQ_FILES, names),
            "transformers": substituted(TRANSFORMERS_FILES, names),
            "mvit": substituted(MVIT_FILES, names),
        }
        published = {repo: files for repo, files in self.files.items() if repo != "local"}  # local: a directory
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in published.items()}

    def direct(self, repo: str, entry: str, **kw: Any) -> nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super().direct(repo, entry, **kw)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo11"), git_server) as env:
        yield World(env, direct)


# ------------------------------------------------------------------------------------------ waveglow


def _mel(frames: int = 6, batch: int = 2) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, batch * 4 * frames).reshape(batch, 4, frames)


def test_waveglow_infer_with_a_lazily_cached_inverse_through_source(world: World, tmp_path: Path) -> None:
    """What NVIDIA's WaveGlow users do after ``torch.hub.load``: ``remove_weightnorm``, ``eval()``,
    ``infer(mel, sigma=...)``; the inverse of each 1x1 convolution is computed on the first ``infer`` and
    cached as a plain attribute (never in the state)."""
    model = securehub.load(world.specs["waveglow"], "nvidia_waveglow", policy="permissive", lock=None,
                           verbose=False)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "source"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["WAVEGLOW_FP32"]]
    direct = world.direct("waveglow", "nvidia_waveglow")
    mel = _mel()
    assert not hasattr(model.convinv[0], "W_inverse")  # nothing ran infer in the sandbox or here
    outs = []
    for m in (model, direct):
        m.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(m.infer(mel, sigma=0.6))
    torch.testing.assert_close(outs[0], outs[1])
    assert outs[0].shape == (2, 6 * 4)
    cached = model.convinv[0].W_inverse
    assert cached.shape == (4, 4, 1) and "convinv.0.W_inverse" not in model.state_dict()
    torch.testing.assert_close(cached[..., 0] @ model.convinv[0].conv.weight[..., 0], torch.eye(4), atol=1e-5, rtol=0)
    # remove_weightnorm (a staticmethod called on the class) then infer again: the same audio
    model = type(model).remove_weightnorm(model)
    assert "WN.0.start.weight" in model.state_dict() and "WN.0.start.weight_g" not in model.state_dict()
    torch.manual_seed(0)
    with torch.no_grad():
        torch.testing.assert_close(model.infer(mel, sigma=0.6), outs[0], rtol=1e-4, atol=1e-5)
    # what the shared checks do, on the model without weight norm (torch cannot deepcopy a module carrying
    # the hook-based weight_norm, whose computed weight is not a graph leaf: the direct model neither);
    # training: forward takes one (spect, audio) tuple, as the upstream train loop calls it
    audio = torch.linspace(-0.5, 0.5, 2 * 24).reshape(2, 24)

    def head(m: nn.Module) -> None:
        m.WN[0].end = nn.Conv1d(4, 4, 1)

    def without_norm() -> nn.Module:
        built = world.direct("waveglow", "nvidia_waveglow")
        return type(built).remove_weightnorm(built)  # type: ignore[no-any-return]

    assert_used_like_the_direct_model(model, "source", without_norm, (mel, audio), tmp_path, head=head)  # type: ignore[arg-type]  # fmt: skip


# ------------------------------------------------------------------------------------------ hifigan


def test_hifigan_upstream_triple_is_refused_naming_the_tuple(world: World) -> None:
    """``nvidia_hifigan`` returns ``(hifigan, train_setup, denoiser)``: only a module crosses the sandbox
    boundary, so the load is refused naming the tuple and saying what to do."""
    code, message = refused(lambda: securehub.load(world.specs["hifigan"], "nvidia_hifigan", policy="default",
                                                    lock=None, verbose=False))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert "the entrypoint returned a builtins.tuple" in message, message
    assert "securehub can only rebuild a single torch.nn.Module; return the model alone" in message, message
    assert audit_records(world.env)[-1]["code"] == "reconstruct-refused"


@pytest.mark.parametrize(("policy", "kw"), [("strict", {}), ("permissive", {"jitable": True})])
def test_hifigan_generator_with_its_config_read_from_the_checkpoint(
    world: World, policy: str, kw: dict[str, Any], tmp_path: Path
) -> None:
    """The fork's entrypoint returning the generator alone: config from ``ckpt["config"]``, old-layout keys
    renamed by the overridden ``load_state_dict``, weight norm removed in the entrypoint; exported under
    strict (locked with a given mel shape), kept with its TorchScript submodule under source."""
    spec, lock, entry = world.specs["hifigan"], tmp_path / "hub.lock", "nvidia_hifigan_generator"
    if policy == "strict":
        lock_repos([spec], entrypoints=[entry], policy=policy, lock=lock, example_inputs=["1x8x10:float32"], args=kw)
    model = securehub.load(spec, entry, policy=policy, lock=lock if policy == "strict" else None, verbose=False,
                           force_reload=True, **kw)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == ("export" if policy == "strict" else "source")
    assert [a["url"] for a in record["artifacts"]] == [world.urls["HIFIGAN_GEN"]]
    state = model.state_dict()
    assert "resblocks.1.1.convs1.2.weight" in state and not any(k.endswith("weight_g") for k in state)
    mel = torch.linspace(-1.0, 1.0, 2 * 8 * 10).reshape(2, 8, 10)
    with torch.no_grad():
        assert model.eval()(mel).shape == (2, 1, 40)  # two upsamplings by 2

    def head(m: nn.Module) -> None:
        # the scripted layer replaced by an eager one (torch's deepcopy of a scripted module gives non-leaf
        # parameters, which no optimizer takes: the model built directly alike)
        m.conv_post = nn.Conv1d(2, 1, 7, 1, padding=3)

    def extra(m: nn.Module) -> None:
        if record["strategy"] == "source":
            assert type(m.conv_post).__name__ == "RecursiveScriptModule"
            assert m.conf.upsample_rates == [2, 2]

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("hifigan", entry, **kw), mel,
                                      tmp_path, head=head, extra=extra)  # fmt: skip


def test_hifigan_scripted_submodule_is_refused_by_export_naming_it(world: World, tmp_path: Path) -> None:
    """``jitable=True`` under strict: torch.export fails inside the TorchScript submodule with a TypeError
    that does not say why; the refusal names the scripted submodule and what to do; nothing written."""
    lock = tmp_path / "hub.lock"
    code, message = refused(lambda: lock_repos([world.specs["hifigan"]], entrypoints=["nvidia_hifigan_generator"],
                                                policy="strict", lock=lock, example_inputs=["1x8x10:float32"],
                                                args={"jitable": True}))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert "torch.export failed in the sandbox with the given example inputs" in message, message
    assert (
        "the model holds TorchScript submodules (conv_post), which torch.export does not trace: use an "
        "entrypoint argument that leaves them unscripted (such as jitable=False)" in message
    ), message
    assert not lock.exists()


# ------------------------------------------------------------------------------------------ mvit


def test_mvit_pooling_attention_exported_under_default(world: World, tmp_path: Path) -> None:
    """pytorchvideo's ``mvit_base_16x4``: q/k/v pooled by depthwise Conv3d on the token grid, the grid shape
    threaded through the blocks as a list, per-block key/value strides, positional parameters shaped by the
    patch grid; exported with the locked clip shape (test_real_hub_zoo10.py's x3d covers ``source``)."""
    spec, lock, entry = world.specs["mvit"], tmp_path / "hub.lock", "mvit_base_16x4"
    lock_repos([spec], entrypoints=[entry], policy="default", lock=lock, example_inputs=["1x3x4x16x16:float32"],
               args={"pretrained": True})  # fmt: skip
    model = securehub.load(spec, entry, pretrained=True, policy="default", lock=lock, verbose=False,
                           force_reload=True)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "export"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["MVIT_B"]]
    state = model.state_dict()
    assert state["cls_positional_encoding.pos_embed_spatial"].shape == (1, 16, 8)
    assert state["cls_positional_encoding.pos_embed_temporal"].shape == (1, 2, 8)
    assert "blocks.1.attn.pool_q.weight" in state and "blocks.0.attn.pool_q.weight" not in state
    clip = torch.linspace(-1.0, 1.0, 2 * 3 * 4 * 16 * 16).reshape(2, 3, 4, 16, 16)

    def head(m: nn.Module) -> None:
        m.head.proj = nn.Linear(16, 3)

    assert_used_like_the_direct_model(model, "export", lambda: world.direct("mvit", entry, pretrained=True), clip,
                                      tmp_path, head=head)  # fmt: skip


# ------------------------------------------------------------------------------------------ local checkout


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=me", "-c", "user.email=me@example.com", *args],
                   check=True, capture_output=True)  # fmt: skip


@pytest.fixture(scope="module")
def checkout(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone the user edits: committed files, an uncommitted edit, ``__pycache__`` from an earlier run,
    ``.git``, in a path with spaces."""
    repo = tmp_path_factory.mktemp("home") / "my checkouts" / "tiny nets"
    repo.mkdir(parents=True)
    for name, text in world.files["local"].items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "tiny nets")
    py_compile.compile(str(repo / "tinynet" / "act.py"), doraise=True)  # the committed version, run before
    for name, text in LOCAL_EDIT.items():
        (repo / name).write_text(text)
    return repo


def test_local_checkout_with_an_uncommitted_edit(world: World, checkout: Path, tmp_path: Path) -> None:
    """``source="local"``: the directory as it is now (the uncommitted edit, not the commit) is hashed,
    audited and loaded; the sibling package imports; strict refuses the directory and nothing pins it."""
    x = torch.linspace(-1.0, 1.0, 12).reshape(2, 6)
    model = securehub.load(str(checkout), "tinynet", source="local", policy="permissive", lock=None, verbose=False)
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "source" and record["commit"] is None and record["ref"] is None
    assert len(record["tree_sha256"]) == 64
    built = {}
    for version, files in (("edited", {n: (checkout / n).read_text() for n in LOCAL_FILES}),
                           ("committed", world.files["local"])):  # fmt: skip
        with imported_like_the_child(files, tmp_path) as module:
            built[version] = module.tinynet().eval()
    edited = built["edited"]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), edited(x))
        assert not torch.allclose(model(x), built["committed"](x))  # the edit (sigmoid, not tanh) is what loaded
    # default: export, given example inputs in the call (a local directory has no hub.lock entry to hold them)
    exported = securehub.load(str(checkout), "tinynet", source="local", policy="default", lock=None, verbose=False,
                              example_inputs=(x,))  # fmt: skip
    assert audit_records(world.env)[-1]["strategy"] == "export"
    with torch.no_grad():
        torch.testing.assert_close(exported(x), edited(x))
    world.env.clear_logs()
    code, message = refused(lambda: securehub.load(str(checkout), "tinynet", source="local", policy="strict",
                                                    lock=None, verbose=False))  # fmt: skip
    assert code == "repo-not-allowed", message
    lock = tmp_path / "hub.lock"
    code, message = refused(lambda: lock_repos([str(checkout)], policy="default", lock=lock))
    assert code == "repo-not-allowed", message
    assert "is a local directory; hub.lock pins git commits" in message, message
    assert not lock.exists()


# ------------------------------------------------------------------------------------------ dependencies


def test_fairseq_hubconf_checking_its_own_dependencies(world: World) -> None:
    """fairseq's hubconf raises ``RuntimeError("Missing dependencies: hydra-core, omegaconf, ...")`` at import
    when its declared ``dependencies`` are absent: that is ``dependency-missing`` naming them, as a
    ``dependencies`` list is anywhere else (not an error of the repository's code)."""
    code, message = refused(lambda: securehub.load(world.specs["fairseq"], "transformer.tiny", policy="default",
                                                    lock=None, verbose=False))  # fmt: skip
    assert code == "dependency-missing", message
    assert "hubconf.py declares dependencies that are not installed: hydra, omegaconf" in message, message
    assert "RuntimeError: Missing dependencies: hydra-core, omegaconf" in message, message
    assert "install them in this environment yourself" in message, message


def test_transformers_hubconf_importing_an_absent_package_before_declaring_it(world: World) -> None:
    """transformers' hubconf imports its ``src/transformers`` package before assigning ``dependencies``;
    the package imports ``sentencepiece``: ``dependency-missing`` naming the file and the module."""
    code, message = refused(lambda: securehub.load(world.specs["transformers"], "model", "bert-base-uncased",
                                                    policy="default", lock=None, verbose=False))  # fmt: skip
    assert code == "dependency-missing", message
    assert "src/transformers/tokenization_xlnet.py imports 'sentencepiece', which is not installed" in message, message
