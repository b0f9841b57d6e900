"""Repositories written like NVIDIA/DeepLearningExamples' GPUNet, ConvNets EfficientNet and Tacotron2
entrypoints and snakers4/silero-models' TTS models shipped as ``torch.package`` archives, end to end
(real-code round 12).

Rounds 1-11 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo*.py) cover the others.
Here, their code written after the upstream repositories (narrowed) in tests/_realrepo_zoo12.py,
published on the loopback git server:

- ``gpunet``: the network assembled from a JSON model description the repository ships (layer dicts,
  classes picked by a ``"layer_type"`` string), submodule names with spaces and colons (``"head: 2"``,
  ``" layer7"``), the EMA weights picked from the checkpoint; exported under strict (a locked image
  shape) and kept by ``source``;
- ``effnet``: entrypoints that are callable ``EntryPoint`` *instances*, the architecture a dataclass
  whose ``block`` is a function (widese made with ``dataclasses.replace``), keywords from
  ``asdict(replace(params, **kwargs))``, ``self.residual_add = torch.add``, stochastic depth with a
  non-persistent buffer, keys remapped by the URL's version component and squeeze-excitation weights
  reshaped; ``nvidia_convnets_processing_utils``' helper object refused naming its type;
- ``tacotron2``: two ``LSTMCell``s stepped frame by frame, location-sensitive attention with padding
  masks, the prenet's dropout on in eval mode, ``forward`` taking one ``inputs`` tuple and
  ``infer(sequences, lengths)`` with a data-dependent stop: through ``source`` (a forward taking one
  tuple cannot be exported, as test_real_hub_zoo6.py's slowfast shows);
- ``silero``: ``torch.package.PackageImporter(path).load_pickle("tts_models", "model")``, the class in
  torch.package's ``<torch_package_0>.tts_models``: downloaded, the archive is ``unsafe-pickle`` (code is
  never an artifact) naming the format and what to do; a fork committing it to its tree is exported under
  strict with locked inputs and refused by ``source`` (the parent never opens the archive) with what to do.
"""

from __future__ import annotations

import copy
import hashlib
import sys
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
from tests._realrepo_checks import assert_used_like_the_direct_model, jittered, loss, pickled, saves
from tests._realrepo_world import ZOO_MARKS, ZooWorld, substituted
from tests._realrepo_zoo12 import (
    EFFNET_FILES,
    GPUNET_FILES,
    SILERO_FILES,
    SILERO_VENDORED_FILES,
    TACOTRON2_CONFIG,
    TACOTRON2_FILES,
    TTS_PACKAGE_SOURCE,
)
from tests._servers import GitServer

pytestmark = ZOO_MARKS

NGC = "v2/models/nvidia"
URL_PATHS = {
    "GPUNET_0": f"{NGC}/dle/gpunet_0_pyt_ckpt/versions/21.12.0_amp/files/0.65ms.pth.tar",
    # NVIDIA's remap picks the key layout from url.split("/")[8], the version component
    "EFFNET_B0": f"{NGC}/efficientnet_b0_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-b0_210412.pth",
    "EFFNET_WIDESE_B0": f"{NGC}/efficientnet_widese_b0_pyt_amp/versions/20.12.0/files/nvidia_efficientnet-widese-b0_210412.pth",  # noqa: E501
    "TACOTRON2_FP32": f"{NGC}/dle/tacotron2_pyt_ckpt_fp32/versions/19.09.0/files/nvidia_tacotron2pyt_fp32_20190427",
    "SILERO_V3_EN": "models/tts/en/v3_en.pt",
}
PLACEHOLDERS = dict.fromkeys([*URL_PATHS, "TACOTRON2_FP16"], "https://weights.example.com/placeholder")
EFFNET_ENTRIES = {"nvidia_efficientnet_b0": "EFFNET_B0", "nvidia_efficientnet_widese_b0": "EFFNET_WIDESE_B0"}
SILERO_INPUT = "1x12:int64"


def _ngc_layout(key: str) -> str:
    """NVIDIA's EfficientNet checkpoints before 21.03: ``layers.{i}.*`` was ``layer{i + 1}.*``, DDP keys."""
    parts = key.split(".")
    if parts[0] == "layers":
        parts = [f"layer{int(parts[1]) + 1}", *parts[2:]]
    return "module." + ".".join(parts)


def _tts_package(tmp: Path, gen: torch.Generator) -> bytes:
    """A torch.package archive as silero publishes its models: the class's module inside, the model pickled."""
    src = tmp / "tts-src"
    (src / "tts_models").mkdir(parents=True)
    (src / "tts_models" / "__init__.py").write_text(TTS_PACKAGE_SOURCE)
    sys.path.insert(0, str(src))
    try:
        import tts_models  # type: ignore[import-not-found]

        model = tts_models.TinyTTS()
        model.load_state_dict(jittered(model.state_dict(), gen))
        with torch.package.PackageExporter(tmp / "v3_en.pt") as exporter:
            exporter.intern("tts_models")
            exporter.save_pickle("tts_models", "model", model)
    finally:
        sys.path.remove(str(src))
        sys.modules.pop("tts_models", None)
    return (tmp / "v3_en.pt").read_bytes()


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(12)
        ph = PLACEHOLDERS
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with imported_like_the_child(substituted(GPUNET_FILES, ph), tmp, {}) as module:
                state = module.nvidia_gpunet(pretrained=False).state_dict()
                # timm's checkpoint: the trained weights under DDP keys and their EMA, which the hubconf picks
                self.gpunet_ema = jittered(state, gen)
                trained = {f"module.{k}": v for k, v in jittered(state, gen).items()}
                self._serve("GPUNET_0", pickled({"state_dict": trained, "state_dict_ema": self.gpunet_ema,
                                                 "epoch": 450, "arch": "gpunet_0"}))  # fmt: skip
            with imported_like_the_child(substituted(EFFNET_FILES, ph), tmp, {}) as module:
                for entry, name in EFFNET_ENTRIES.items():
                    state = jittered(getattr(module, entry)(pretrained=False).state_dict(), gen)
                    # squeeze-excitation weights saved as 1x1 convolutions (the TRT variant's layout)
                    old = {_ngc_layout(k): v.view(*v.shape, 1, 1) if k.endswith(("se.squeeze.weight",
                           "se.expand.weight")) else v for k, v in state.items()}  # fmt: skip
                    self._serve(name, pickled(old))
            with imported_like_the_child(substituted(TACOTRON2_FILES, ph), tmp, {}) as module:
                state = jittered(module.nvidia_tacotron2(pretrained=False).state_dict(), gen)
                state["decoder.gate_layer.linear_layer.bias"] = torch.tensor([-4.0])  # decodes several frames
                self._serve("TACOTRON2_FP32", pickled({"state_dict": {f"module.{k}": v for k, v in state.items()},
                                                       "config": dict(TACOTRON2_CONFIG)}))  # fmt: skip
            archive = _tts_package(tmp, gen)
            self._serve("SILERO_V3_EN", archive)
        names = {**PLACEHOLDERS, **self.urls}
        self.files = {
            "gpunet": substituted(GPUNET_FILES, names),
            "effnet": substituted(EFFNET_FILES, names),
            "tacotron2": substituted(TACOTRON2_FILES, names),
            "silero": substituted(SILERO_FILES, names),
            "silero-vendored": {**substituted(SILERO_VENDORED_FILES, names), "models/v3_en.pt": archive},
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}
        # one lock for the module, each entrypoint locked once
        (env.root / "locked").mkdir()
        self.lock = env.root / "locked" / "hub.lock"
        lock_repos([self.specs["gpunet"]], entrypoints=["nvidia_gpunet"], policy="strict", lock=self.lock,
                   example_inputs=["1x3x32x32:float32"],
                   args={"pretrained": True, "model_type": "GPUNet-0"})  # fmt: skip
        lock_repos([self.specs["silero-vendored"]], entrypoints=["silero_tts"], policy="strict", lock=self.lock,
                   example_inputs=[SILERO_INPUT])  # fmt: skip

    def direct(self, repo: str, entry: str, **kw: Any) -> nn.Module:
        hub = torch.hub.get_dir()
        torch.hub.set_dir(str(self.tmp / "torch-hub"))  # silero's hubconf downloads into the hub dir
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return super().direct(repo, entry, **kw)
        finally:
            torch.hub.set_dir(hub)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo12"), git_server) as env:
        yield World(env, direct)


def _image(size: int = 32, batch: int = 2) -> torch.Tensor:
    return torch.linspace(-1.0, 1.0, batch * 3 * size * size).reshape(batch, 3, size, size)


# ------------------------------------------------------------------------------------------ gpunet


@pytest.mark.parametrize("policy", ["strict", "permissive"])
def test_gpunet_assembled_from_its_json_description(world: World, policy: str, tmp_path: Path) -> None:
    """``nvidia_gpunet(model_type="GPUNet-0")``: the layer list read from the repository's JSON, classes
    picked by ``"layer_type"``, names with spaces and colons in every key, the EMA weights loaded; exported
    under strict with the image shape locked once for the module, kept by ``source``."""
    locked = policy == "strict"
    model = securehub.load(world.specs["gpunet"], "nvidia_gpunet", pretrained=True, model_type="GPUNet-0",
                           policy=policy, lock=world.lock if locked else None, verbose=False)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == ("export" if locked else "source")
    assert [a["url"] for a in record["artifacts"]] == [world.urls["GPUNET_0"]]
    state = model.state_dict()
    assert list(state) == list(world.gpunet_ema)  # the JSON's layers in order, names with ": " and " layer"
    assert "network.head: 2.net.0.weight" in state and "network. layer7.net.6.weight" in state
    assert "network.stage: 3 layer5.se.conv_reduce.weight" in state
    assert all(torch.equal(state[k], v) for k, v in world.gpunet_ema.items())  # EMA picked, not state_dict

    def head(m: nn.Module) -> None:
        m.network.get_submodule(" layer7").net[6] = nn.Linear(32, 3)

    def extra(m: nn.Module) -> None:
        if not locked:
            assert m.imgRes == 32 and type(m.network.get_submodule("stage: 2 layer4")).__name__ == "EdgeResidual"

    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("gpunet", "nvidia_gpunet"),
                                      _image(), tmp_path, head=head, extra=extra)  # fmt: skip


# ------------------------------------------------------------------------------------------ efficientnet


def test_effnet_entrypoints_are_callable_instances(world: World) -> None:
    """``efficientnet_b0 = EntryPoint.create(...)``: hubconf's entrypoints are objects with ``__call__`` and
    an instance ``__doc__``; ``list`` names them and ``help`` gives that docstring (as torch.hub does)."""
    entries = securehub.list(world.specs["effnet"], policy="default", verbose=False)
    assert {"nvidia_efficientnet_b0", "nvidia_efficientnet_widese_b0", "nvidia_convnets_processing_utils"} <= set(
        entries
    )
    doc = securehub.help(world.specs["effnet"], "nvidia_efficientnet_widese_b0", policy="default", verbose=False)
    assert doc.startswith("Constructs a efficientnet-widese-b0 model."), doc


@pytest.mark.parametrize(("policy", "entry"), [("default", "nvidia_efficientnet_widese_b0"),
                                                ("permissive", "nvidia_efficientnet_b0")])  # fmt: skip
def test_effnet_dataclass_architecture_with_remapped_ngc_keys(
    world: World, policy: str, entry: str, tmp_path: Path
) -> None:
    """The arch a dataclass (its ``block`` a function), ``asdict(replace(params, **kwargs))`` keywords, the
    checkpoint's ``layer1.*`` keys remapped by the URL's version and its 4-D squeeze-excitation weights
    reshaped; widese exported under default (``example_inputs="auto"`` in the call), b0 (stochastic depth,
    a non-persistent buffer) kept by ``source`` and fine-tuned."""
    locked = policy == "default"  # default: the sandbox finds the inputs (auto: 1x3x224x224, nothing locked)
    model = securehub.load(world.specs["effnet"], entry, pretrained=True, policy=policy, lock=None, verbose=False,
                           **({"example_inputs": "auto"} if locked else {}))  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == ("export" if locked else "source")
    assert [a["url"] for a in record["artifacts"]] == [world.urls[EFFNET_ENTRIES[entry]]]
    state = model.state_dict()
    squeeze = state["layers.1.block0.se.squeeze.weight"]
    # widese squeezes the expanded width (8 * 2 * 0.25 = 4), b0 the input width (8 * 0.25 = 2)
    assert squeeze.shape == ((4, 16) if entry.endswith("widese_b0") else (2, 16))
    assert not any(k.startswith(("module.", "layer1.")) for k in state)

    def head(m: nn.Module) -> None:
        m.classifier.fc = nn.Linear(32, 3)

    def extra(m: nn.Module) -> None:
        if not locked:
            assert m.layers[0].block0.residual_add is torch.add  # a torch function kept as a plain attribute
            assert type(m.layers[1].block1.residual_add).__name__ == "StochasticDepthResidual"
            assert m.arch.block.__name__ == "original_mbconv" and m.builder.config.activation == "silu"
            assert set(m.extract_features(_image(), layers=["layer2"])) == {"layer2"}

    image = _image(224 if locked else 32)
    assert_used_like_the_direct_model(model, record["strategy"], lambda: world.direct("effnet", entry, pretrained=True),
                                      image, tmp_path, head=head, extra=extra)  # fmt: skip


def test_effnet_processing_utils_helper_object_is_refused_naming_it(world: World) -> None:
    """``nvidia_convnets_processing_utils()`` returns a ``Processing`` helper (no module): refused naming the
    type and saying what to do; nothing recorded as a model."""
    code, message = refused(lambda: securehub.load(world.specs["effnet"], "nvidia_convnets_processing_utils",
                                                    policy="default", lock=None, verbose=False))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert "nvidia_convnets_processing_utils.<locals>.Processing" in message, message
    assert "securehub can only rebuild a single torch.nn.Module" in message, message
    assert audit_records(world.env)[-1]["code"] == "reconstruct-refused"


# ------------------------------------------------------------------------------------------ tacotron2


def _text() -> tuple[torch.Tensor, torch.Tensor]:
    """Two padded symbol sequences, longest first (pack_padded_sequence wants them sorted)."""
    return torch.tensor([[1, 5, 2, 7, 3, 9], [4, 8, 6, 2, 0, 0]]), torch.tensor([6, 4])


def test_tacotron2_lstm_cell_decoder_through_source(world: World, tmp_path: Path) -> None:
    """What NVIDIA's Tacotron2 users do: ``eval()``, ``infer(sequences, lengths)`` (the prenet's dropout stays
    on, so both runs are seeded alike), the teacher-forced ``forward(inputs)`` on one tuple, the state saved
    and reloaded into the model built directly, a deepcopy, one training step on a new projection."""
    model = securehub.load(world.specs["tacotron2"], "nvidia_tacotron2", policy="permissive", lock=None,
                           verbose=False)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "source"
    assert [a["url"] for a in record["artifacts"]] == [world.urls["TACOTRON2_FP32"]]
    assert "decoder.attention_rnn.weight_ih" in model.state_dict()
    direct = world.direct("tacotron2", "nvidia_tacotron2")
    seq, lengths = _text()
    outs = []
    for m in (model, direct):
        m.eval()
        torch.manual_seed(0)
        with torch.no_grad():
            outs.append(m.infer(seq, lengths))
    mel, mel_lengths, alignments = outs[0]
    for got, want in zip(outs[0], outs[1], strict=True):
        torch.testing.assert_close(got, want)
    assert mel.shape == (2, 4, 6) and alignments.shape == (2, 6, 6)  # six frames: the gate never fired
    assert mel_lengths.tolist() == [6, 6]
    assert torch.all(alignments[1, :, 4:] == 0)  # the padding masked out of the attention
    # teacher forcing: forward takes one tuple (text, lengths, mels, max_len, output lengths)
    inputs = (seq, lengths, torch.linspace(-1, 1, 2 * 4 * 5).reshape(2, 4, 5), 5, torch.tensor([5, 3]))

    def forward(m: nn.Module) -> Any:
        torch.manual_seed(1)
        return m(inputs)

    with torch.no_grad():
        expected = forward(direct)
        for got, want in zip(forward(model), expected, strict=True):
            torch.testing.assert_close(got, want)
    fresh = world.direct("tacotron2", "nvidia_tacotron2")
    fresh.load_state_dict(saves(model, tmp_path))
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for m in (fresh.eval(), clone):
            for got, want in zip(forward(m), expected, strict=True):
                torch.testing.assert_close(got, want)
    clone.decoder.linear_projection = nn.Linear(16, 4)
    clone.train()
    params = [p for p in clone.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    loss(forward(clone)[:2]).backward()
    opt.step()
    assert clone.decoder.linear_projection.weight.grad is not None


# ------------------------------------------------------------------------------------------ silero


def _symbols() -> torch.Tensor:
    return torch.tensor([[1, 2, 3, 11, 4, 5, 6, 11, 7, 8, 9, 10], [3, 3, 1, 11, 0, 0, 2, 2, 5, 11, 9, 9]])


def test_silero_downloaded_torch_package_is_refused_before_the_sandbox_opens_it(world: World) -> None:
    """Upstream's way: ``download_url_to_file`` then ``PackageImporter``. A torch.package archive is code plus
    arbitrary pickled objects, never a checkpoint: ``unsafe-pickle`` at the download (the same scan under every
    policy), naming the format and the way out; nothing cached."""
    code, message = refused(lambda: securehub.load(world.specs["silero"], "silero_tts", policy="permissive",
                                                    lock=None, verbose=False))  # fmt: skip
    assert code == "unsafe-pickle", message
    url = world.urls["SILERO_V3_EN"]
    assert (
        f"checkpoint {url!r} [pickle-zip] is a torch.package archive ('v3_en/.data/extern_modules'), not a "
        "torch.save checkpoint: it ships Python code and pickles arbitrary objects" in message
    ), message
    assert "use a repository that commits the archive to its tree" in message, message
    assert audit_records(world.env)[-1]["code"] == "unsafe-pickle"
    digest = hashlib.sha256(world.blobs[url]).hexdigest()
    assert (world.env.hub / "artifacts" / "sha256").is_dir()  # other loads of this module stored theirs
    assert not (world.env.hub / "artifacts" / "sha256" / digest).exists()


def test_silero_torch_package_model_exported_under_strict(world: World, tmp_path: Path) -> None:
    """The fork committing the archive: ``PackageImporter(path).load_pickle("tts_models", "model")`` runs in
    the sandbox; the class comes from torch.package's ``<torch_package_0>.tts_models``, only displayed; the
    model is rebuilt by export with the inputs locked once for the module."""
    model = securehub.load(world.specs["silero-vendored"], "silero_tts", policy="strict", lock=world.lock,
                           verbose=False)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "export"
    assert record["artifacts"] == []
    assert model.securehub_source_class == "<torch_package_0>.tts_models:TinyTTS"  # type: ignore[attr-defined]
    assert set(model.state_dict()) == {"emb.weight", "conv.weight", "conv.bias"}

    def head(m: nn.Module) -> None:  # export: never called, train() is refused
        raise AssertionError

    assert_used_like_the_direct_model(model, "export", lambda: world.direct("silero-vendored", "silero_tts"),
                                      _symbols(), tmp_path, head=head)  # fmt: skip


def test_silero_torch_package_is_never_opened_in_this_process(world: World) -> None:
    """Without example inputs only ``source`` could rebuild it, and ``source`` does not open the archive
    here (its pickle is not weights_only and it runs the code it ships): refused, every strategy saying
    why, the message saying what to do (the strict test above is that advice followed); nothing of the
    archive imported here."""
    spec = world.specs["silero-vendored"]
    before = set(sys.modules)
    code, message = refused(lambda: securehub.load(spec, "silero_tts", policy="permissive", lock=None,
                                                    verbose=False))  # fmt: skip
    assert code == "reconstruct-refused", message
    assert (
        "trusted: module <root> (<torch_package_0>.tts_models:TinyTTS) cannot be rebuilt from its "
        "constructor call: module was created without running __init__" in message
    ), message
    assert "export: no example_inputs -- pass example_inputs=... to securehub.load" in message, message
    assert "source: the entrypoint opened a torch.package archive (" in message, message
    assert (
        "Pass example_inputs=... (or lock them with securehub lock --example-input) so the export strategy "
        "rebuilds the model from the sandbox's run" in message
    ), message
    assert not {m for m in set(sys.modules) - before if "torch_package" in m or m.startswith("tts_models")}
    assert audit_records(world.env)[-1]["code"] == "reconstruct-refused"
