"""Repositories written like detr, NVIDIA DeepLearningExamples, brain-segmentation UNet, pytorch-cifar-models,
pytorch_GAN_zoo and WSL-Images/deit, end to end (real-code round 4).

tests/integration/test_real_hub_styles.py and test_real_hub_models.py cover vision, yolov5, timm, silero,
vocoders, BERT and DINOv2. Here the next hub repos users load, their code copied closely (narrowed) in
tests/_realrepo_zoo.py, published on the loopback git server, locked under strict with example inputs and
loaded under default, strict and permissive:

- ``detr``: ``detr_resnet50(pretrained=True)``: repo classes throughout (``DETR``, ``Joiner(nn.Sequential)``
  with ``num_channels`` set after construction, ``IntermediateLayerGetter(nn.ModuleDict)``), a
  torchvision-style backbone built with ``norm_layer=FrozenBatchNorm2d`` (buffers only, a
  ``_load_from_state_dict`` dropping ``num_batches_tracked`` of the ImageNet checkpoint it loads at
  construction), the stem frozen (``requires_grad_(False)``), a ``NestedTensor`` built by iterating over
  the batch (torch cannot export it with a symbolic batch: static shapes), a dict output holding a list of
  dicts, the checkpoint fetched with ``load_state_dict_from_url(map_location="cpu", check_hash=True)`` and
  read as ``checkpoint["model"]``; ``return_postprocessor=True`` returns a tuple: refused by name;
- ``nvidia``: the torchhub hubconf of namespace packages (``PyTorch/Classification/...``, no
  ``__init__.py``) that appends ``sys.path[0] + '/PyTorch/Detection/SSD'`` to ``sys.path``;
  ``nvidia_resnet50`` is an ``EntryPoint`` *instance* (a callable object with a generated ``__doc__``,
  ``dataclasses.replace`` of the params, a ``module.``-prefixed checkpoint renamed by
  ``ngc_checkpoint_remap`` from the URL's version); ``nvidia_ssd(pretrained=False)`` (a
  ``SSD300(backbone=ResNet('resnet50'))`` default argument built at import, strides set after
  construction, lists turned into ``ModuleList``s, a tuple output); ``nvidia_ssd()`` downloads with
  ``urllib``: refused as a sandbox violation that says how downloads must be made;
  ``nvidia_convnets_processing_utils`` returns a helper object (refused by type), and
  ``nvidia_ssd_processing_utils`` imports ``skimage`` (``dependency-missing``);
- ``unet``: ``unet(pretrained=True, in_channels=3, out_channels=1, init_features=4)``: ``UNet`` (a repo
  class) of ``nn.Sequential(OrderedDict(...))`` blocks, returned in training mode;
- ``cifar``: every entrypoint a ``functools.partial`` made in a loop with ``setattr(sys.modules[__name__],
  ...)`` over placeholder ``def``s, re-exported by ``from pytorch_cifar_models import *``;
- ``gan_zoo``: ``PGAN(pretrained=True, model_name=..., useGPU=False)`` returns the ``ProgressiveGAN``
  training wrapper (not a module; ``model_zoo.load_url`` checkpoint with a ``config`` dict): refused by type;
- ``wsl`` and ``deit``: ``dependencies`` naming packages not installed here (torchvision, timm):
  ``dependency-missing`` from ``lock``, ``load`` and ``help``; ``list`` works, as in torch.hub.

Repo classes rebuild by ``export`` under strict and default and by ``source`` under permissive. Every
load must compute what the model built directly computes (eval mode), then survive ``eval()``,
``train()`` (or refuse it, for export), ``state_dict()`` saved with torch and safetensors and reloaded
into a directly built model, ``copy.deepcopy`` and, where the strategy can train, replacing the head
and one optimizer step.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
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
from tests._realrepo_zoo import (
    CIFAR_FILES,
    DEIT_FILES,
    DETR_FILES,
    GAN_ZOO_FILES,
    NVIDIA_FILES,
    UNET_FILES,
    WSL_FILES,
)
from tests._servers import GitServer

pytestmark = [
    NEEDS_FULL_SANDBOX,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

#: entrypoint -> (repo, kwargs recorded in hub.lock and passed to load, example input shape)
ENTRIES: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "detr_resnet50": ("detr", {"pretrained": True}, (1, 3, 32, 32)),
    "nvidia_resnet50": ("nvidia", {"pretrained": True}, (1, 3, 32, 32)),
    "nvidia_ssd": ("nvidia", {"pretrained": False}, (1, 3, 300, 300)),
    "unet": ("unet", {"pretrained": True, "in_channels": 3, "out_channels": 1, "init_features": 4}, (1, 3, 32, 32)),
    "cifar10_resnet20": ("cifar", {"pretrained": True}, (1, 3, 32, 32)),
}
#: exported with static shapes (DETR iterates over the batch to build its NestedTensor): batch 1 only
STATIC_BATCH = frozenset({"detr_resnet50"})
#: top-level packages the generated repos ship: never imported under these names in this process
REPO_PACKAGES = ("models", "util", "unet", "pytorch_cifar_models", "PyTorch", "hubconf", "cait_models")

TV_RESNET50 = "models/resnet50-@.pth"  # torchvision's "<name>-<sha256 prefix>.pth"
DETR_R50 = "detr/detr-r50-@.pth"
NGC_RESNET50 = "v2/models/nvidia/resnet50_pyt_amp/versions/20.06.0/files/nvidia_resnet50_200821.pth.tar"
SSD_BACKBONE = "models/ssd-backbone-resnet50.pth"
NGC_SSD = "v2/models/nvidia/ssd_pyt_ckpt_amp/versions/20.06.0/files/nvidia_ssdpyt_amp_200703.pt"
UNET = "mateuszbuda/brain-segmentation-pytorch/releases/download/v1.0/unet-@.pt"
CIFAR10_RESNET20 = "chenyaofo/pytorch-cifar-models/releases/download/resnet/cifar10_resnet20-@.pt"
PGAN = "gan_zoo/PGAN/celebaHQ_s6_i80000-@.pth"


def _substituted(files: Mapping[str, str], urls: Mapping[str, str]) -> dict[str, str]:
    out = dict(files)
    for name, url in urls.items():
        out = {k: v.replace(f"@{name}@", url) for k, v in out.items()}
    return out


class World:
    def __init__(self, env: HubEnv, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.blobs: dict[str, bytes] = {}
        self.urls: dict[str, str] = {}
        gen = torch.Generator().manual_seed(4)
        placeholders = dict.fromkeys(
            ["RESNET50_URL", "DETR_R50_URL", "NVIDIA_RESNET50_URL", "TV_RESNET50_URL", "NVIDIA_SSD_URL", "UNET_URL",
             "CIFAR10_RESNET20_URL", "PGAN_URL"],
            "https://weights.example.com/placeholder",
        )  # fmt: skip
        raw = {
            "detr": _substituted(DETR_FILES, placeholders),
            "nvidia": _substituted(NVIDIA_FILES, placeholders),
            "unet": _substituted(UNET_FILES, placeholders),
            "cifar": _substituted(CIFAR_FILES, placeholders),
            "gan_zoo": _substituted(GAN_ZOO_FILES, placeholders),
        }

        def build(repo: str, call: Callable[[Any], Any]) -> Any:
            with preserved_rng(), imported_like_the_child(raw[repo], tmp, {}) as module:
                seed_all()
                return call(module)

        # torchvision's ImageNet resnet50 (a plain BatchNorm model: num_batches_tracked keys included)
        tv = build("detr", lambda m: sys.modules["models.resnet"].resnet50())
        self._serve("RESNET50_URL", TV_RESNET50, pickled(jittered(tv.state_dict(), gen)))
        raw["detr"] = _substituted(DETR_FILES, {**placeholders, "RESNET50_URL": self.urls["RESNET50_URL"]})
        with imported_like_the_child(raw["detr"], tmp, self.blobs) as module, preserved_rng():
            seed_all()
            detr = module.detr_resnet50()
        self._serve("DETR_R50_URL", DETR_R50, pickled({"model": jittered(detr.state_dict(), gen), "epoch": 499}))
        # NVIDIA: the NGC checkpoint names layers "layerN" (remapped to "layers.N-1" by ngc_checkpoint_remap)
        # and keeps DataParallel's "module." prefix
        resnet = build("nvidia", lambda m: m.nvidia_resnet50(pretrained=False))
        ngc = {}
        for key, value in jittered(resnet.state_dict(), gen).items():
            if key.startswith("layers."):
                _, index, rest = key.split(".", 2)
                key = f"layer{int(index) + 1}.{rest}"
            ngc["module." + key] = value
        self._serve("NVIDIA_RESNET50_URL", NGC_RESNET50, pickled(ngc))
        backbone = build("nvidia", lambda m: importlib.import_module("PyTorch.Detection.SSD.ssd.tv_resnet").resnet50())
        self._serve("TV_RESNET50_URL", SSD_BACKBONE, pickled(jittered(backbone.state_dict(), gen)))
        self._serve("NVIDIA_SSD_URL", NGC_SSD, b"never fetched: the sandbox has no network")
        unet = build("unet", lambda m: m.unet(init_features=4))
        self._serve("UNET_URL", UNET, pickled(jittered(unet.state_dict(), gen)))
        cifar = build("cifar", lambda m: m.cifar10_resnet20())
        self._serve("CIFAR10_RESNET20_URL", CIFAR10_RESNET20, pickled(jittered(cifar.state_dict(), gen)))
        pgan = build("gan_zoo", lambda m: _grown_pgan(m))
        self._serve("PGAN_URL", PGAN, pickled(pgan))

        self.files: dict[str, dict[str, str]] = {
            "detr": _substituted(DETR_FILES, self.urls),
            "nvidia": _substituted(NVIDIA_FILES, self.urls),
            "unet": _substituted(UNET_FILES, self.urls),
            "cifar": _substituted(CIFAR_FILES, self.urls),
            "gan_zoo": _substituted(GAN_ZOO_FILES, self.urls),
            "wsl": dict(WSL_FILES),
            "deit": dict(DEIT_FILES),
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}
        (env.root / "locked").mkdir()
        self.lock = env.root / "locked" / "hub.lock"
        for entry, (repo, kwargs, shape) in ENTRIES.items():
            example = "x".join(map(str, shape)) + ":float32"
            lock_repos(
                [self.specs[repo]],
                entrypoints=[entry],
                args=kwargs,
                policy="strict",
                lock=self.lock,
                example_inputs=[example],
            )

    def _serve(self, name: str, path: str, blob: bytes) -> None:
        path = path.replace("@", hashlib.sha256(blob).hexdigest()[:8])
        url = self.env.put(path, blob)
        self.urls[name] = url
        self.blobs[url] = blob

    def load(self, entry: str, policy: str, repo: str = "", **kwargs: Any) -> tuple[Any, str]:
        repo, locked, _ = ENTRIES[entry] if entry in ENTRIES else (repo, {}, ())
        lock = None if policy == "permissive" else self.lock
        model = securehub.load(
            self.specs[repo], entry, policy=policy, lock=lock, verbose=False, force_reload=True, **{**locked, **kwargs}
        )
        return model, audit_records(self.env)[-1]["strategy"]

    def direct(self, entry: str, **kw: Any) -> nn.Module:
        repo, kwargs, _ = ENTRIES[entry]
        with preserved_rng(), imported_like_the_child(self.files[repo], self.tmp, self.blobs) as module:
            seed_all()
            model: nn.Module = getattr(module, entry)(**{**kwargs, **kw})
            return model


def _grown_pgan(module: Any) -> dict[str, Any]:
    """A PGAN checkpoint as the zoo publishes it: config (one scale added) and the G/D/avgG states."""
    gan = module.PGAN(pretrained=False, useGPU=False)
    gan.addScale(8)
    config = {k: v for k, v in vars(gan.config).items()}
    return {
        "config": config,
        "netG": gan.netG.state_dict(),
        "netD": gan.netD.state_dict(),
        "avgG": gan.avgG.state_dict(),
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo"), git_server) as env:
        yield World(env, direct)


def _input(entry: str, batch: int = 2) -> torch.Tensor:
    if entry in STATIC_BATCH:
        batch = 1
    shape = (batch, *ENTRIES[entry][2][1:])
    return torch.linspace(-1.0, 1.0, int(torch.Size(shape).numel())).reshape(shape)


#: the head a user replaces to fine-tune on their own classes
HEADS: dict[str, Callable[[nn.Module], None]] = {
    "detr_resnet50": lambda m: setattr(m, "class_embed", nn.Linear(16, 3 + 1)),
    "nvidia_resnet50": lambda m: setattr(m, "fc", nn.Linear(m.fc.in_features, 3)),
    "nvidia_ssd": lambda m: _ssd_head(m, 3),
    "unet": lambda m: setattr(m, "conv", nn.Conv2d(4, 2, 1)),
    "cifar10_resnet20": lambda m: setattr(m, "fc", nn.Linear(64, 3)),
}


def _ssd_head(model: nn.Module, classes: int) -> None:
    """SSD fine-tuning on other classes: every confidence conv replaced, ``label_num`` (read by bbox_view) set."""
    model.label_num = classes
    for i, (nd, oc) in enumerate(zip(model.num_defaults, model.feature_extractor.out_channels)):
        model.conf[i] = nn.Conv2d(oc, nd * classes, kernel_size=3, padding=1)


#: detr under every policy; the others under strict (export; default lists the same strategies) and
#: permissive (source), to keep this file's sandbox runs few
CASES = [("detr_resnet50", p) for p in ("default", "strict", "permissive")] + [
    (e, p) for e in ENTRIES if e != "detr_resnet50" for p in ("strict", "permissive")
]


@pytest.mark.parametrize(("entry", "policy"), CASES)
def test_hub_repo_loads_like_the_model_built_directly(world: World, entry: str, policy: str, tmp_path: Path) -> None:
    before = set(sys.modules)
    model, strategy = world.load(entry, policy)
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in REPO_PACKAGES}
    assert strategy == expected_strategy(policy)
    assert_used_like_the_direct_model(
        model,
        strategy,
        lambda: world.direct(entry),
        _input(entry),
        tmp_path,
        head=HEADS[entry],
    )


def test_detr_frozen_backbone_and_frozen_batchnorm_survive_source(world: World) -> None:
    """DETR freezes the stem and layer1 (``requires_grad_(False)``) and keeps FrozenBatchNorm2d buffers."""
    model, strategy = world.load("detr_resnet50", "permissive")
    assert strategy == "source"
    direct = world.direct("detr_resnet50")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, p in direct.named_parameters() if not p.requires_grad}
    assert "backbone.0.body.conv1.weight" in frozen and "backbone.0.body.layer2.0.conv1.weight" not in frozen
    assert model.backbone.num_channels == 128
    assert "backbone.0.body.bn1.running_var" in model.state_dict()
    assert not any(k.endswith("num_batches_tracked") for k in model.state_dict())


def test_detr_export_keeps_the_frozen_flags_and_explains_its_fixed_batch(world: World) -> None:
    model, strategy = world.load("detr_resnet50", "strict")
    assert strategy == "export"
    direct = world.direct("detr_resnet50")
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == {
        n for n, p in direct.named_parameters() if not p.requires_grad
    }
    # DETR's NestedTensor loop specialises the batch: the program takes the example's batch of 1 only
    with pytest.raises(RuntimeError, match="example inputs"):
        model(torch.zeros(2, 3, 32, 32))


def test_detr_postprocessor_tuple_is_refused_by_name(world: World, tmp_path: Path) -> None:
    lock = tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos(
            [world.specs["detr"]],
            entrypoints=["detr_resnet50"],
            args={"pretrained": False, "return_postprocessor": True},
            policy="default",
            lock=lock,
        )
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused" and "builtins.tuple" in message, message
    assert not lock.exists()


def test_nvidia_entrypoint_objects_list_help_and_refusals(world: World) -> None:
    """``nvidia_resnet50`` is a callable ``EntryPoint`` instance; the processing utils are no models."""
    spec = world.specs["nvidia"]
    names = securehub.list(spec, policy="permissive")
    assert {"nvidia_resnet50", "nvidia_ssd", "nvidia_ssd_processing_utils", "nvidia_convnets_processing_utils"} <= set(
        names
    )
    assert securehub.help(spec, "nvidia_resnet50", policy="permissive").startswith("Constructs a resnet50 model.")
    with pytest.raises(securehub.SecureHubError) as excinfo:
        world.load("nvidia_convnets_processing_utils", "permissive", repo="nvidia")
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused" and "nvidia_convnets_processing_utils.<locals>.Processing" in message
    with pytest.raises(securehub.SecureHubError) as excinfo:
        world.load("nvidia_ssd_processing_utils", "permissive", repo="nvidia")
    code, message = error_of(excinfo)
    assert code == "dependency-missing" and "'skimage'" in message, message


def test_nvidia_ssd_pretrained_urllib_download_is_a_named_violation(world: World) -> None:
    """Upstream's ``_download_checkpoint`` uses ``urllib.request.urlretrieve``: no network in the sandbox."""
    before = world.lock.read_bytes()
    with pytest.raises(securehub.SecureHubError) as excinfo:
        world.load("nvidia_ssd", "default", pretrained=True)
    code, message = error_of(excinfo)
    assert code == "sandbox-violation", message
    assert "torch.hub.load_state_dict_from_url" in message and "urllib" in message
    assert world.lock.read_bytes() == before
    # the workaround the user guide gives: load pretrained=False, then load_state_dict the checkpoint yourself
    model, strategy = world.load("nvidia_ssd", "strict")
    assert strategy == "export"
    gen = torch.Generator().manual_seed(9)
    direct = world.direct("nvidia_ssd")
    direct.load_state_dict(jittered(direct.state_dict(), gen))
    model.load_state_dict(direct.state_dict())
    x = _input("nvidia_ssd")
    with torch.no_grad():
        torch.testing.assert_close(model(x), direct.eval()(x), rtol=1e-5, atol=1e-5)


def test_nvidia_sys_path_append_does_not_leak_into_this_process(world: World) -> None:
    saved = list(sys.path)
    world.load("nvidia_resnet50", "permissive")
    assert sys.path == saved


def test_cifar_partial_entrypoints_list_help_and_load(world: World) -> None:
    spec = world.specs["cifar"]
    names = set(securehub.list(spec, policy="permissive"))
    assert {f"{d}_resnet{n}" for d in ("cifar10", "cifar100") for n in (20, 32, 44, 56)} <= names
    assert {"cifar10_vgg11_bn", "cifar100_vgg11_bn"} <= names
    model, strategy = world.load("cifar100_resnet20", "permissive", repo="cifar")
    assert strategy == "source" and model.fc.out_features == 100
    entries = json.loads(world.lock.read_text())["repos"][spec]["entrypoints"]
    assert entries["cifar10_resnet20"]["artifacts"] == [world.urls["CIFAR10_RESNET20_URL"]]


def test_gan_zoo_wrapper_is_refused_by_type(world: World, tmp_path: Path) -> None:
    lock = tmp_path / "hub.lock"
    kwargs = {"pretrained": True, "model_name": "celebAHQ-512", "useGPU": False}
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([world.specs["gan_zoo"]], entrypoints=["PGAN"], args=kwargs, policy="default", lock=lock)
    code, message = error_of(excinfo)
    assert code == "reconstruct-refused" and "models.progressive_gan.ProgressiveGAN" in message, message
    assert not lock.exists()
    with pytest.raises(securehub.SecureHubError) as excinfo:
        world.load("PGAN", "permissive", repo="gan_zoo", **kwargs)
    assert error_of(excinfo)[0] == "reconstruct-refused"


@pytest.mark.parametrize(("repo", "entry", "missing"), [("wsl", "resnext101_32x8d_wsl", "torchvision"),
                                                        ("deit", "deit_tiny_patch16_224", "timm")])  # fmt: skip
def test_missing_dependencies_are_dependency_missing(
    world: World, repo: str, entry: str, missing: str, tmp_path: Path
) -> None:
    spec = world.specs[repo]
    lock = tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([spec], entrypoints=[entry], policy="default", lock=lock)
    code, message = error_of(excinfo)
    assert code == "dependency-missing" and missing in message, message
    assert not lock.exists()
    for call in (
        lambda: securehub.load(spec, entry, policy="permissive", lock=None, verbose=False),
        lambda: securehub.help(spec, entry, policy="permissive"),
    ):
        with pytest.raises(securehub.SecureHubError) as excinfo:
            call()
        code, message = error_of(excinfo)
        assert code == "dependency-missing" and missing in message, message
    if repo == "wsl":  # torch.hub.list does not check dependencies either
        assert entry in securehub.list(spec, policy="permissive")
