"""Repositories written like ResNeSt, ghostnet, DINO v1, pytorchvideo, HarDNet and YOLOP, end to end
(real-code round 5).

Rounds 1-4 (test_real_hub_styles.py, test_real_hub_models.py, test_real_hub_zoo.py) cover vision,
yolov5, timm, silero, vocoders, BERT, DINOv2, detr, NVIDIA, UNet, cifar models, GAN zoo and WSL/deit.
Here the next ones, their code written after the upstream repositories (narrowed) in
tests/_realrepo_zoo5.py, published on the loopback git server, locked under strict with
``--example-input auto`` (nothing given by hand) and loaded under
default, strict and permissive:

- ``resnest``: ``resnest50(pretrained=True)``: ``ResNet(Bottleneck, ..., norm_layer=nn.BatchNorm2d)``
  (classes as constructor arguments, plain attributes set before ``super().__init__()``), the
  split-attention ``SplAtConv2d`` with its ``rSoftMax`` (``torch.split`` and a Python ``sum`` of the
  splits), a ``resnest.torch`` subpackage (a package named ``torch`` inside the repository), the
  checkpoint fetched with ``check_hash=True``. The default branch since 2021 registers the models in an
  fvcore ``Registry`` that ``dependencies`` does not declare: ``dependency-missing`` naming the file
  and the module, while the release tag keeps loading;
- ``ghostnet``: ``ghostnet_1x(pretrained=True)``: a hubconf indented with a tab and two spaces,
  ``ghostnet_pytorch/`` without ``__init__.py``, ``SqueezeExcite(gate_fn=hard_sigmoid)`` (a function
  stored on the module), ``self.se = None``, ``_make_divisible`` widths, ``F.dropout(training=...)``;
  the 2022 hubconf also imports SNN-MLP, which imports timm: every entrypoint ``dependency-missing``;
- ``dino``: ``dino_vits16(pretrained=True)``: top-level modules ``vision_transformer``/``utils``,
  ``vits.__dict__["vit_small"]``, ``partial(nn.LayerNorm, eps=1e-6)``, a forward whose positional
  encoding depends on the input size (``interpolate_pos_encoding``): the exported program takes the
  locked size only (another is a ``RuntimeError`` that says so), ``source`` takes any size; users'
  ``get_last_selfattention`` is a method the exported module does not have (an ``AttributeError``
  naming the strategies that keep it);
- ``pytorchvideo``: ``slow_r50(pretrained=True)``: builder functions that take classes and functions
  (``norm=nn.BatchNorm3d``, ``activation=nn.ReLU``, ``bottleneck=create_bottleneck_block``,
  ``head=create_res_basic_head``), containers filled with ``set_attributes(self, locals())``, a
  ``branch_fusion=lambda x, y: x + y`` stored on every block, a flag set on a child
  (``norm_c.block_final_bn = True``), 3D convolutions, a ``.pyth`` checkpoint read as
  ``checkpoint["model_state"]``; ``auto`` finds its 8x224x224 clip (before this round it tried
  16x112x112 and 8x32x32 only, which its ``(8, 7, 7)`` head pool refuses: nothing was found);
- ``hardnet``: ``hardnet68(pretrained=True)``: ``import hardnet`` (a top-level module), the download
  made inside ``HarDNet.__init__``, ``print`` in the sandbox, layer links kept as a list of lists,
  ``nn.Sequential`` subclasses built with ``add_module``, ``x.view(x.data.size(0), -1)``;
- ``yolop``: hubconf imports ``lib.utils.utils``, which imports ``prefetch_generator`` (declared
  nowhere): ``dependency-missing`` from ``lock``, ``load`` and ``help``.

Every load must compute what the model built directly computes (eval mode), then survive ``eval()``,
``train()`` (or refuse it, for export), ``state_dict()`` saved with torch and safetensors and reloaded
into a directly built model, ``copy.deepcopy`` and, where the strategy can train, replacing the head
and one optimizer step.
"""

from __future__ import annotations

import hashlib
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
from tests._realrepo_zoo5 import (
    DINO_FILES,
    GHOSTNET_FILES,
    GHOSTNET_MASTER_FILES,
    HARDNET_FILES,
    PYTORCHVIDEO_FILES,
    RESNEST_FILES,
    RESNEST_MASTER_FILES,
    YOLOP_FILES,
)
from tests._servers import GitServer

pytestmark = [
    NEEDS_FULL_SANDBOX,
    pytest.mark.timeout(900),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

#: entrypoint -> (repo, kwargs recorded in hub.lock and passed to load, example input shape found by auto)
ENTRIES: dict[str, tuple[str, dict[str, Any], tuple[int, ...]]] = {
    "resnest50": ("resnest", {"pretrained": True}, (1, 3, 224, 224)),
    "ghostnet_1x": ("ghostnet", {"pretrained": True}, (1, 3, 224, 224)),
    "dino_vits16": ("dino", {"pretrained": True}, (1, 3, 224, 224)),
    "slow_r50": ("pytorchvideo", {"pretrained": True}, (1, 3, 8, 224, 224)),
    "hardnet68": ("hardnet", {"pretrained": True}, (1, 3, 224, 224)),
}
#: top-level packages and modules the generated repos ship: never imported under these names here
REPO_PACKAGES = ("resnest", "ghostnet_pytorch", "vision_transformer", "utils", "pytorchvideo", "hardnet", "hubconf")

URL_PATHS = {
    "RESNEST50_URL": "zhanghang1989/ResNeSt/releases/download/weights_step1/resnest50-@.pth",
    "GHOSTNET_URL": "huawei-noah/ghostnet/raw/master/ghostnet_pytorch/models/state_dict_73.98.pth",
    "DINO_VITS16_URL": "dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
    "SLOW_R50_URL": "pytorchvideo/model_zoo/kinetics/SLOW_8x8_R50.pyth",
    "HARDNET68_URL": "hardnet/hardnet68-@.pth",  # torch.hub names: "<name>-<sha256 prefix>.pth"
}
RAW: dict[str, dict[str, str]] = {
    "resnest": RESNEST_FILES,
    "ghostnet": GHOSTNET_FILES,
    "dino": DINO_FILES,
    "pytorchvideo": PYTORCHVIDEO_FILES,
    "hardnet": HARDNET_FILES,
}


def _substituted(files: Mapping[str, str | None], urls: Mapping[str, str]) -> dict[str, str | None]:
    out = dict(files)
    for name, url in urls.items():
        out = {k: v.replace(f"@{name}@", url) if v is not None else None for k, v in out.items()}
    return out


def _texts(files: Mapping[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in files.items() if v is not None}


class World:
    def __init__(self, env: HubEnv, tmp: Path) -> None:
        self.env, self.tmp = env, tmp
        self.blobs: dict[str, bytes] = {}
        self.urls: dict[str, str] = {}
        gen = torch.Generator().manual_seed(5)
        placeholders = dict.fromkeys(URL_PATHS, "https://weights.example.com/placeholder")
        builders: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "RESNEST50_URL": ("resnest", lambda m: pickled(jittered(m.resnest50().state_dict(), gen))),
            "GHOSTNET_URL": ("ghostnet", lambda m: pickled(jittered(m.ghostnet_1x().state_dict(), gen))),
            "DINO_VITS16_URL": ("dino", lambda m: pickled(jittered(m.dino_vits16(pretrained=False).state_dict(), gen))),
            # pytorchvideo's checkpoints hold the training state next to the weights
            "SLOW_R50_URL": ("pytorchvideo", lambda m: pickled({
                "epoch": 196, "cfg": "MODEL:\n  ARCH: slow\n", "model_state": jittered(m.slow_r50().state_dict(), gen),
            })),
            "HARDNET68_URL": ("hardnet", lambda m: pickled(jittered(m.hardnet68().state_dict(), gen))),
        }  # fmt: skip
        for name, (repo, make) in builders.items():
            files = _texts(_substituted(RAW[repo], placeholders))
            with preserved_rng(), imported_like_the_child(files, tmp, {}) as module:
                seed_all()
                self._serve(name, URL_PATHS[name], make(module))

        self.files: dict[str, dict[str, str]] = {
            repo: _texts(_substituted(files, self.urls)) for repo, files in RAW.items()
        }
        self.specs = {repo: env.spec(publish(env, repo, files)) for repo, files in self.files.items()}
        # the repositories whose default branch moved on: v1 is the release that loads, v2 today's branch
        for repo, master in (("resnest", RESNEST_MASTER_FILES), ("ghostnet", GHOSTNET_MASTER_FILES)):
            handle = publish(env, f"{repo}-master", self.files[repo])
            handle.commit(_substituted(master, self.urls), "move to the current layout")
            handle.tag("v2", annotated=True)
            self.specs[f"{repo}-master"] = env.spec(handle, tag="v2")
        self.specs["yolop"] = env.spec(publish(env, "yolop", YOLOP_FILES))
        (env.root / "locked").mkdir()
        self.lock = env.root / "locked" / "hub.lock"
        for entry, (repo, kwargs, _) in ENTRIES.items():
            lock_repos(
                [self.specs[repo]],
                entrypoints=[entry],
                args=kwargs,
                policy="strict",
                lock=self.lock,
                example_inputs=["auto"],
            )

    def _serve(self, name: str, path: str, blob: bytes) -> None:
        path = path.replace("@", hashlib.sha256(blob).hexdigest()[:8])
        url = self.env.put(path, blob)
        self.urls[name] = url
        self.blobs[url] = blob

    def load(self, entry: str, policy: str, **kwargs: Any) -> tuple[Any, str]:
        repo, locked, _ = ENTRIES[entry]
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


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    direct = tmp_path_factory.mktemp("direct")
    with hub_env_context(tmp_path_factory.mktemp("real-hub-zoo5"), git_server) as env:
        yield World(env, direct)


def _input(entry: str, batch: int = 2, size: int | None = None) -> torch.Tensor:
    shape = [batch, *ENTRIES[entry][2][1:]]
    if size is not None:
        shape[-2:] = [size, size]
    return torch.linspace(-1.0, 1.0, int(torch.Size(shape).numel())).reshape(shape)


#: the head a user replaces to fine-tune on their own classes
HEADS: dict[str, Callable[[nn.Module], None]] = {
    "resnest50": lambda m: setattr(m, "fc", nn.Linear(m.fc.in_features, 3)),
    "ghostnet_1x": lambda m: setattr(m, "classifier", nn.Linear(m.classifier.in_features, 3)),
    "dino_vits16": lambda m: setattr(m, "head", nn.Linear(m.embed_dim, 3)),
    "slow_r50": lambda m: setattr(m.blocks[-1], "proj", nn.Linear(m.blocks[-1].proj.in_features, 3)),
    "hardnet68": lambda m: m.base[-1].__setitem__(3, nn.Linear(m.base[-1][3].in_features, 3)),
}


def _dino_exported(world: World, model: Any) -> None:
    """DINO interpolates its positional encoding to the input size: the exported program takes the
    locked size only (another one is a RuntimeError saying so), and has forward alone: DINO's
    visualize_attention.py calls get_last_selfattention (an AttributeError naming what keeps it)."""
    small = _input("dino_vits16", batch=1, size=160)
    with pytest.raises(RuntimeError, match="example inputs"):
        model(small)
    with pytest.raises(AttributeError, match="get_last_selfattention") as excinfo:
        model.get_last_selfattention(small)
    assert "source" in str(excinfo.value), str(excinfo.value)


def _dino_source(world: World, model: Any) -> None:
    """source runs the repository's forward: any input size, every method, the partial's eps."""
    small = _input("dino_vits16", batch=1, size=160)
    direct = world.direct("dino_vits16").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(small), direct(small), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            model.get_last_selfattention(small), direct.get_last_selfattention(small), rtol=1e-5, atol=1e-5
        )
    assert isinstance(model.norm, nn.LayerNorm) and model.norm.eps == 1e-6


def _pytorchvideo_source(world: World, model: Any) -> None:
    """set_attributes(self, locals()) stored children, None and the lambda branch_fusion; the flag the
    bottleneck sets on its last norm is kept."""
    block = model.blocks[1].res_blocks[0]
    assert callable(block.branch_fusion) and block.branch_fusion.__name__ == "<lambda>"
    assert block.branch2.norm_c.block_final_bn is True
    assert model.blocks[-1].activation is None and isinstance(model.blocks[-1].output_pool, nn.AdaptiveAvgPool3d)
    assert type(model.blocks[0].norm) is nn.BatchNorm3d and type(model.blocks[0].activation) is nn.ReLU


def _hardnet_source(world: World, model: Any) -> None:
    direct = world.direct("hardnet68")
    links = [b.links for b in model.base if hasattr(b, "links")]
    assert links and links == [b.links for b in direct.base if hasattr(b, "links")]


def _ghostnet_source(world: World, model: Any) -> None:
    se = model.blocks[3][0].se
    assert se is not None and se.gate_fn.__name__ == "hard_sigmoid"
    assert model.blocks[0][0].se is None


def _resnest_source(world: World, model: Any) -> None:
    # the release tag loads (the default branch needs fvcore: test_undeclared_dependencies_...)
    assert type(model.layer1[0].conv2.rsoftmax).__name__ == "rSoftMax"


#: what each repository's users rely on beyond forward, checked on the loaded model per strategy
CHECKS: dict[tuple[str, str], Callable[[World, Any], None]] = {
    ("dino_vits16", "export"): _dino_exported,
    ("dino_vits16", "source"): _dino_source,
    ("slow_r50", "source"): _pytorchvideo_source,
    ("hardnet68", "source"): _hardnet_source,
    ("ghostnet_1x", "source"): _ghostnet_source,
    ("resnest50", "source"): _resnest_source,
}


#: dino under every policy; the others under strict (export; default lists the same strategies) and
#: permissive (source), to keep this file's sandbox runs few
CASES = [("dino_vits16", p) for p in ("default", "strict", "permissive")] + [
    (e, p) for e in ENTRIES if e != "dino_vits16" for p in ("strict", "permissive")
]


@pytest.mark.parametrize(("entry", "policy"), CASES)
def test_hub_repo_loads_like_the_model_built_directly(world: World, entry: str, policy: str, tmp_path: Path) -> None:
    before = set(sys.modules)
    model, strategy = world.load(entry, policy)
    assert not {m for m in set(sys.modules) - before if m.split(".")[0] in REPO_PACKAGES}
    assert strategy == expected_strategy(policy)
    check = CHECKS.get((entry, strategy))
    assert_used_like_the_direct_model(
        model,
        strategy,
        lambda: world.direct(entry),
        _input(entry),
        tmp_path,
        head=HEADS[entry],
        extra=None if check is None else (lambda m: check(world, m)),
    )


def test_auto_found_the_inputs_each_model_takes(world: World) -> None:
    """``--example-input auto`` found each model's input: ResNeSt, ghostnet and HarDNet from their first
    Conv2d, DINO from ``patch_embed.img_size``, slow_r50 from its first Conv3d (the 8x224x224 clip its
    (8, 7, 7) head pool needs; before round 5 only 16x112x112 and 8x32x32 clips were tried: nothing found)."""
    lock = json.loads(world.lock.read_text())["repos"]
    for entry, (repo, _, shape) in ENTRIES.items():
        recorded = lock[world.specs[repo]]["entrypoints"][entry]["example_inputs"]
        assert recorded == [{"shape": list(shape), "dtype": "float32"}], (entry, recorded)


def test_tab_indented_hubconf_lists_and_helps(world: World) -> None:
    spec = world.specs["ghostnet"]
    assert "ghostnet_1x" in securehub.list(spec, policy="permissive")
    assert "GhostNet 1.0x model" in securehub.help(spec, "ghostnet_1x", policy="permissive")


#: (repo, entrypoint, file that imports the package, the package)
UNDECLARED = [
    ("resnest-master", "resnest50", "resnest/torch/models/build.py", "fvcore"),
    ("ghostnet-master", "ghostnet_1x", "snnmlp_pytorch/models/snn_mlp.py", "timm"),
    ("yolop", "yolop", "lib/utils/utils.py", "prefetch_generator"),
]


@pytest.mark.parametrize(("repo", "entry", "importer", "missing"), UNDECLARED)
def test_undeclared_dependencies_are_dependency_missing(
    world: World, repo: str, entry: str, importer: str, missing: str, tmp_path: Path
) -> None:
    """hubconf.py declares only torch; a module it imports needs a package that is not installed."""
    spec = world.specs[repo]
    lock = tmp_path / "hub.lock"
    with pytest.raises(securehub.SecureHubError) as excinfo:
        lock_repos([spec], entrypoints=[entry], policy="default", lock=lock)
    code, message = error_of(excinfo)
    assert code == "dependency-missing", message
    assert f"{importer} imports '{missing}'" in message and "install it" in message, message
    assert not lock.exists()
    calls = [lambda: securehub.load(spec, entry, policy="permissive", lock=None, verbose=False)]
    if repo == "yolop":  # torch.hub's list and help import hubconf.py too
        calls += [
            lambda: securehub.help(spec, entry, policy="permissive"),
            lambda: securehub.list(spec, policy="permissive"),
        ]
    for call in calls:
        with pytest.raises(securehub.SecureHubError) as excinfo:
            call()
        code, message = error_of(excinfo)
        assert code == "dependency-missing" and f"'{missing}'" in message, message
