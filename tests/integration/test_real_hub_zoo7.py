"""Repositories written like MiDaS (with gen-efficientnet), YOLOP, pytorch/examples' word language
model and senet.pytorch, end to end (real-code round 7).

Rounds 1-6 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo.py, test_real_hub_zoo5.py,
test_real_hub_zoo6.py) cover vision, yolov5, timm, silero, vocoders, BERT, DINOv2, detr, NVIDIA, UNet,
cifar models, GAN zoo, WSL/deit, ResNeSt, ghostnet, DINO v1, pytorchvideo, HarDNet, open-unmix, IBN-Net
and Barlow Twins. Here the next ones, their code written after the upstream repositories (narrowed) in
tests/_realrepo_zoo7.py, published on the loopback git server:

- ``midas``: ``MiDaS_small`` builds ``MidasNet_small``, whose encoder is a nested
  ``torch.hub.load`` of gen-efficientnet's ``tf_efficientnet_lite3`` taken apart (``effnet.act1``,
  ``effnet.blocks[0:2]``). The nested model is rebuilt by ``export`` (its classes are the repo's), which
  keeps no parameter-free submodule: ``entrypoint-error`` naming ``act1`` and what to do, under every
  policy (the documented gap). ``transforms`` imports cv2 and torchvision (``dependency-missing``
  naming cv2), and, in a fork needing neither, returns the ``midas.transforms`` *module*:
  ``reconstruct-refused`` naming the type (SPEC section 7), nothing cached;
- ``yolop``: ``MCnet`` built from a block list, ``block_.index``/``block_.from_`` set on every layer
  (``nn.Upsample`` and ``Concat`` included), ``Detect.stride`` measured by a forward in ``__init__``,
  weights from ``torch.load`` of the checkpoint committed under ``weights/``, and a forward returning
  ``[(boxes, [level, level]), da_mask, ll_mask]``. Through ``source`` (permissive) it loads and returns
  that structure; under strict/default ``lock -e`` is refused like yolov5 (the bookkeeping attributes on
  parameter-free layers), naming the first and what to do;
- ``wlm``: pytorch/examples' ``RNNModel``: encoder and decoder sharing one ``nn.Parameter``
  (``decoder.weight = encoder.weight``), a 2-layer ``nn.GRU`` with ``flatten_parameters()`` in forward,
  ``forward(input, hidden)`` returning ``(log_probs, hidden)``. ``auto`` finds no inputs (forward takes
  two); locked with given ``16x1:int64`` ids and a ``2x1x8`` hidden state, loaded under strict (export:
  the tie survives) and permissive (source: one Parameter, fine-tuned);
- ``senet``: ``senet/se_resnet.py`` imports torchvision's ``ResNet`` (not installed):
  ``dependency-missing`` naming the file and module from ``lock``, ``load``, ``list`` and ``help``.

Every load that succeeds must compute what the model built directly computes (eval mode), then survive
``eval()``, ``train()`` (or refuse it, for export), ``state_dict()`` saved with torch and safetensors and
reloaded into a directly built model, ``copy.deepcopy`` and, where the strategy can train, replacing the
head and one optimizer step.
"""

from __future__ import annotations

import json
import sys
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
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, error_of, hub_env_context, publish
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import assert_used_like_the_direct_model, expected_strategy, jittered, pickled
from tests._realrepo_world import ZooWorld, substituted
from tests._realrepo_zoo7 import GENEFF_FILES, MIDAS_FILES, MIDAS_FORK_FILES, SENET_FILES, WLM_FILES, YOLOP_FILES
from tests._servers import GitServer

pytestmark = [
    NEEDS_FULL_SANDBOX,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

URL_PATHS = {
    "MIDAS_SMALL_URL": "intel-isl/MiDaS/releases/download/v2_1/model-small-@.pt",  # check_hash=True
    "WLM_URL": "examples/word_language_model/wikitext2_gru-@.pt",
}
#: forward(input, hidden): (seq, batch) token ids and the GRU's (layers, batch, hidden) state
WLM_INPUTS = ["16x1:int64", "2x1x8:float32"]


class World(ZooWorld):
    url_paths = URL_PATHS

    def __init__(self, env: HubEnv, tmp: Path) -> None:
        super().__init__(env, tmp)
        gen = torch.Generator().manual_seed(7)
        placeholders = dict.fromkeys(URL_PATHS, "https://weights.example.com/placeholder")
        # YOLOP's checkpoint is a file of the repository (weights/End-to-end.pth), as the demo has it
        with preserved_rng(), imported_like_the_child(substituted(YOLOP_FILES, {}), tmp, {}) as module:
            seed_all()
            state = jittered(module.yolop(pretrained=False).state_dict(), gen)
        checkpoint = pickled({"epoch": 240, "state_dict": state})
        yolop = {**substituted(YOLOP_FILES, {}), "weights/End-to-end.pth": checkpoint}
        with preserved_rng(), imported_like_the_child(substituted(WLM_FILES, placeholders), tmp, {}) as module:
            seed_all()
            model = module.wikitext2_gru(pretrained=False)
            state = jittered(model.state_dict(), gen)
            state["decoder.weight"] = state["encoder.weight"]  # one tensor, as the trained model saves it
            self._serve("WLM_URL", pickled(state))
        self._serve("MIDAS_SMALL_URL", pickled({"unused": torch.zeros(1)}))  # never reached (see the test)
        geneff = publish(env, "gen-efficientnet-pytorch", substituted(GENEFF_FILES, {}))
        names = {**self.urls, "GENEFF_REPO": geneff.full_name}
        self.files = {
            "midas": substituted(MIDAS_FILES, names),
            "midas-fork": substituted(MIDAS_FORK_FILES, names),
            "yolop": yolop,
            "wlm": substituted(WLM_FILES, self.urls),
            "senet": substituted(SENET_FILES, {}),
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}
        self.specs["gen-efficientnet"] = env.spec(geneff)
        (env.root / "locked").mkdir()
        self.lock = env.root / "locked" / "hub.lock"
        lock_repos([self.specs["wlm"]], entrypoints=["wikitext2_gru"], args={"pretrained": True}, policy="strict",
                   lock=self.lock, example_inputs=WLM_INPUTS)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo7"), git_server) as env:
        yield World(env, direct)


def test_midas_small_nested_backbone_cannot_be_taken_apart(world: World, tmp_path: Path) -> None:
    """The nested gen-efficientnet load is rebuilt inside MiDaS's sandbox by trusted or export only: without
    example inputs for it the refusal says how to record them; with them (as advised) the inner model is an
    exported module, and ``_make_efficientnet_backbone`` reaching for ``effnet.act1`` (a parameter-free
    ``ReLU6``) fails the entrypoint with an ``AttributeError`` that says why and what would keep it."""
    inner = world.specs["gen-efficientnet"].split(":")[0]
    with pytest.raises(securehub.SecureHubError) as excinfo:
        securehub.load(world.specs["midas"], "MiDaS_small", policy="default", lock=None, verbose=False)
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused" and f"nested torch.hub.load('{inner}', 'tf_efficientnet_lite3')" in message
    assert f"securehub lock {inner} -e tf_efficientnet_lite3 --example-input" in message, message
    lock = tmp_path / "hub.lock"
    lock_repos([inner], entrypoints=["tf_efficientnet_lite3"], args={"pretrained": True, "exportable": True},
               policy="default", lock=lock, example_inputs=["auto"])  # fmt: skip
    for policy in ("default", "permissive"):  # permissive: the failure is in the sandbox, before any source re-run
        with pytest.raises(securehub.SecureHubError) as excinfo:
            securehub.load(world.specs["midas"], "MiDaS_small", policy=policy, lock=lock, verbose=False)
        code, message = error_of(excinfo)
        assert code == "entrypoint-error", message
        assert "AttributeError: 'ExportedModule' object has no attribute 'act1'" in message, message
        assert "geffnet.gen_efficientnet:GenEfficientNet, rebuilt by securehub's export strategy" in message
        assert "parameter-free submodules" in message, message
        assert audit_records(world.env)[-1]["code"] == "entrypoint-error"


def test_midas_transforms_needs_cv2(world: World) -> None:
    """Upstream's ``transforms`` imports cv2 (and torchvision) inside the entrypoint: dependency-missing."""
    with pytest.raises(securehub.SecureHubError) as excinfo:
        securehub.load(world.specs["midas"], "transforms", policy="default", lock=None, verbose=False)
    code, message = error_of(excinfo)
    assert code == "dependency-missing" and "hubconf.py imports 'cv2'" in message and "install it" in message, message


def test_midas_transforms_module_is_refused_by_type(world: World, tmp_path: Path) -> None:
    """The fork's ``transforms`` returns the ``midas.transforms`` module (Compose pipelines of lambdas set on
    it): not an nn.Module, so ``reconstruct-refused`` naming the type (SPEC section 7), from ``lock -e``
    (nothing written) and from every policy that runs it."""
    spec, lock = world.specs["midas-fork"], tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([spec], entrypoints=["transforms"], policy="default", lock=lock)
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused" and "the entrypoint returned a builtins.module" in message, message
    assert not lock.exists()
    for policy in ("strict", "default", "permissive"):
        with pytest.raises(securehub.SecureHubError) as excinfo:
            securehub.load(spec, "transforms", policy=policy, lock=None, verbose=False)
        code, message = error_of(excinfo)
        if policy == "strict":  # strict requires the repo in hub.lock before anything runs
            assert code == "not-locked", message
            continue
        assert code == "reconstruct-refused", message
        assert "the entrypoint returned a builtins.module" in message and "return the model alone" in message


def _yolop_head(m: nn.Module) -> None:
    """Fine-tune the lane-line head: its last Conv (the block keeps YOLOP's index/from_ bookkeeping)."""
    m.model[17].conv = nn.Conv2d(8, 2, 3, 1, 1, bias=False)


def test_yolop_loads_through_source_with_its_committed_weights(world: World, tmp_path: Path) -> None:
    """``torch.load`` of weights/End-to-end.pth from the repository's own tree (in the sandbox and in the
    parent's source re-run, both from the digest-verified tree), and the nested output structure."""
    before = set(sys.modules)
    model = securehub.load(world.specs["yolop"], "yolop", policy="permissive", lock=None, verbose=False,
                           force_reload=True)  # fmt: skip
    record = audit_records(world.env)[-1]
    assert record["strategy"] == "source" and record["artifacts"] == []  # nothing downloaded
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in ("lib", "hubconf")}
    x = torch.linspace(-1.0, 1.0, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64)
    with torch.no_grad():
        (boxes, levels), da_seg, ll_seg = model.eval()(x)
    assert boxes.shape == (2, 3 * (16 * 16 + 8 * 8), 6) and [t.shape[2] for t in levels] == [16, 8]
    assert da_seg.shape == ll_seg.shape == (2, 2, 64, 64)
    assert torch.equal(model.model[10].stride, torch.tensor([4.0, 8.0])) and model.model[6].from_ == -1

    def extra(m: nn.Module) -> None:
        assert m.model[7].index == 7 and m.model[7].from_ == [-1, 2]

    assert_used_like_the_direct_model(
        model, "source", lambda: world.direct("yolop", "yolop"), x, tmp_path, head=_yolop_head, extra=extra
    )


def test_yolop_is_refused_at_lock_under_strict(world: World, tmp_path: Path) -> None:
    """torch.export takes the model (``auto`` finds a 224x224 image), but its layers carry bookkeeping set after
    construction on parameter-free modules (``initialize_weights``' ``m.inplace = True``, ``block_.index``),
    which the exported module cannot carry: every strict/default load would be refused, so ``lock -e`` is
    refused with that reason and nothing is written. Before this round the lock pinned the output."""
    spec, lock = world.specs["yolop"], tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([spec], entrypoints=["yolop"], policy="strict", lock=lock, example_inputs=["auto"])
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused", message
    assert "every load would be refused, so nothing was recorded" in message, message
    assert "module model.0.conv.act: attributes were set on this submodule after construction" in message, message
    assert "source strategy" in message, message
    assert not lock.exists()


class _WithHidden(nn.Module):
    """Calls the language model with the zero state ``init_hidden`` gives, as its users do."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> Any:
        return self.model(ids, torch.zeros(2, ids.size(1), 8))


@pytest.mark.parametrize("policy", ["strict", "permissive"])  # default lists strict's strategies
def test_word_language_model_keeps_its_tied_weights(world: World, policy: str, tmp_path: Path) -> None:
    before = set(sys.modules)
    lock = None if policy == "permissive" else world.lock
    model = securehub.load(world.specs["wlm"], "wikitext2_gru", pretrained=True, policy=policy, lock=lock,
                           verbose=False, force_reload=True)  # fmt: skip
    strategy = audit_records(world.env)[-1]["strategy"]
    assert strategy == expected_strategy(policy)
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in ("model", "hubconf")}
    # one Parameter under two names, as the repository ties them
    assert model.get_parameter("decoder.weight") is model.get_parameter("encoder.weight")
    assert len(list(model.parameters())) == len(model.state_dict()) - 1
    if strategy == "source":
        assert isinstance(model.rnn, nn.GRU) and model.rnn.num_layers == 2
    ids = (torch.arange(16) % 50).reshape(16, 1)

    def head(m: nn.Module) -> None:
        m.model.decoder = nn.Linear(8, 50)  # unties: the new head trains alone

    assert_used_like_the_direct_model(
        _WithHidden(model), strategy,
        lambda: _WithHidden(world.direct("wlm", "wikitext2_gru", pretrained=True)), ids, tmp_path, head=head,
    )  # fmt: skip


def test_word_language_model_inputs_were_given(world: World, tmp_path: Path) -> None:
    """forward(input, hidden): ``auto`` tries one tensor at a time and finds none; the lock holds the two given."""
    recorded = json.loads(world.lock.read_text())["repos"][world.specs["wlm"]]["entrypoints"]["wikitext2_gru"]
    given = [{"shape": [16, 1], "dtype": "int64"}, {"shape": [2, 1, 8], "dtype": "float32"}]
    assert recorded["example_inputs"] == given, recorded
    lock = tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([world.specs["wlm"]], entrypoints=["wikitext2_gru"], args={"pretrained": True}, policy="strict",
                   lock=lock, example_inputs=["auto"])  # fmt: skip
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused" and "found none" in message and "--example-input" in message, message
    assert not lock.exists()


def test_senet_needs_torchvision(world: World, tmp_path: Path) -> None:
    """senet/se_resnet.py imports torchvision's ResNet (hubconf declares torch and math only)."""
    spec, lock = world.specs["senet"], tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([spec], entrypoints=["se_resnet20"], policy="default", lock=lock)
    code, message = error_of(excinfo)
    assert code == "dependency-missing", message
    assert "senet/se_resnet.py imports 'torchvision'" in message and "install it" in message, message
    assert not lock.exists()
    for call in (
        lambda: securehub.load(spec, "se_resnet20", policy="permissive", lock=None, verbose=False),
        lambda: securehub.help(spec, "se_resnet20", policy="permissive"),
        lambda: securehub.list(spec, policy="permissive"),
    ):
        with pytest.raises(securehub.SecureHubError) as excinfo:
            call()
        code, message = error_of(excinfo)
        assert code == "dependency-missing" and "'torchvision'" in message, message
