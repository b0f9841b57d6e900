"""Models in the style of well-known hub repositories, end to end under default, strict and permissive.

tests/integration/test_real_repo_patterns.py covers one construction pattern per entrypoint on a
``(2, 4)`` toy. Here each entrypoint is a small model written the way the public repos write theirs,
with the checkpoint handling they use, and the test then does what users do with the result:

- ``hifigan_nn``: a HiFi-GAN/MelGAN-style generator of ``torch.nn`` layers wrapped in the hook-based
  ``nn.utils.weight_norm`` (kept, not removed), its checkpoint a pickled ``{"generator": ...}`` with
  DataParallel ``module.`` prefixes, fetched with ``load_state_dict_from_url(map_location="cpu",
  check_hash=True, file_name=...)``;
- ``melgan_disc``: a discriminator of ``parametrizations.weight_norm``/``spectral_norm`` layers;
- ``bert_nn``: a BERT-style encoder with a tied decoder, ``position_ids`` registered with
  ``persistent=False`` and a ``token_type_ids`` buffer after construction, its safetensors checkpoint
  fetched with ``download_url_to_file`` and loaded with ``load_state_dict(strict=False)``;
- ``resnet_features``: a torchvision-style backbone with a frozen stem, its classifier deleted
  (``del model[6]``), a bias set to None and ``channels_last`` weights;
- ``hifigan``: the repository's own ``Generator``/``ResBlock`` classes with weight norm kept;
- ``dinov2_like``: a DINOv2-style ViT (``LayerScale``, ``partial(nn.LayerNorm, eps=1e-6)``,
  ``act_layer=nn.GELU``, a non-persistent buffer) whose head is replaced by ``nn.Identity``.

``torch.nn``-only models must be rebuilt by ``trusted`` under every policy (weight/spectral norm and
buffers registered after construction included); repo classes by ``export`` under strict and
default (example inputs recorded in hub.lock) and by ``source`` under permissive (no example inputs).
Every load must compute what the model built directly computes, and then survive ``eval()``,
``state_dict()`` saved with torch and safetensors, ``copy.deepcopy``, ``named_modules()``, a forward
hook, and (for the strategies that can train) ``train()`` and one optimizer step.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.hub
from safetensors.torch import load_file, save, save_model
from torch import nn

import securehub
from securehub._util.determinism import preserved_rng, seed_all
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish
from tests._hubconf_import import imported_like_the_child
from tests._realrepo_checks import pickled
from tests._servers import GitServer

pytestmark = [NEEDS_FULL_SANDBOX, pytest.mark.timeout(900), pytest.mark.filterwarnings("ignore::FutureWarning")]

MODELS = '''
"""Model code in the style of public vocoder and ViT repositories."""
import functools

import torch
from torch import nn
from torch.nn.utils import remove_weight_norm, weight_norm

LRELU_SLOPE = 0.1


def init_weights(m, mean=0.0, std=0.01):
    if "Conv" in m.__class__.__name__:
        m.weight.data.normal_(mean, std)


class ResBlock(nn.Module):
    def __init__(self, channels, kernel_size=3, dilation=(1, 3)):
        super().__init__()
        self.convs = nn.ModuleList(
            [weight_norm(nn.Conv1d(channels, channels, kernel_size, 1, dilation=d, padding=d)) for d in dilation]
        )
        self.convs.apply(init_weights)

    def forward(self, x):
        for c in self.convs:
            x = x + c(nn.functional.leaky_relu(x, LRELU_SLOPE))
        return x

    def remove_weight_norm(self):
        for c in self.convs:
            remove_weight_norm(c)


class Generator(nn.Module):
    def __init__(self, in_channels=8, upsample_rates=(2, 2), channels=16):
        super().__init__()
        self.conv_pre = weight_norm(nn.Conv1d(in_channels, channels, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = channels
        for u in upsample_rates:
            self.ups.append(weight_norm(nn.ConvTranspose1d(ch, ch // 2, u * 2, u, padding=u // 2)))
            ch //= 2
            self.resblocks.append(ResBlock(ch))
        self.conv_post = weight_norm(nn.Conv1d(ch, 1, 7, 1, padding=3))
        self.ups.apply(init_weights)

    def forward(self, x):
        x = self.conv_pre(x)
        for up, block in zip(self.ups, self.resblocks):
            x = block(up(nn.functional.leaky_relu(x, LRELU_SLOPE)))
        return torch.tanh(self.conv_post(nn.functional.leaky_relu(x)))

    def remove_weight_norm(self):
        for layer in self.ups:
            remove_weight_norm(layer)
        for block in self.resblocks:
            block.remove_weight_norm()
        remove_weight_norm(self.conv_pre)
        remove_weight_norm(self.conv_post)


class LayerScale(nn.Module):
    def __init__(self, dim, init_values=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim, hidden, act_layer=nn.GELU):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, norm_layer=nn.LayerNorm, act_layer=nn.GELU, init_values=None):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, dim * 4, act_layer=act_layer)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.ls1(self.attn(y, y, y, need_weights=False)[0])
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    def __init__(self, img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, num_classes=5,
                 norm_layer=None, act_layer=nn.GELU, init_values=1.0):
        super().__init__()
        norm_layer = norm_layer or functools.partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, embed_dim) * 0.02)
        self.register_buffer("pixel_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, norm_layer=norm_layer, act_layer=act_layer, init_values=init_values)
             for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes)
        self.embed_dim = embed_dim

    def forward(self, x):
        x = self.patch_embed(x - self.pixel_mean).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])
'''

HUBCONF = '''
dependencies = ["torch", "safetensors"]
import functools
import os
import tempfile

import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import parametrizations, weight_norm

from models import Generator, VisionTransformer

HIFIGAN_URL = "@HIFIGAN_URL@"
HIFIGAN_NN_URL = "@HIFIGAN_NN_URL@"
BERT_URL = "@BERT_URL@"


def _strip_module_prefix(state_dict):
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def hifigan_nn(pretrained=True):
    """A MelGAN-like generator built from torch.nn layers with weight norm."""
    model = nn.Sequential(
        weight_norm(nn.Conv1d(8, 16, 7, padding=3)),
        nn.LeakyReLU(0.1),
        weight_norm(nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1)),
        nn.LeakyReLU(0.1),
        weight_norm(nn.Conv1d(8, 1, 7, padding=3)),
        nn.Tanh(),
    )
    if pretrained:
        checkpoint = torch.hub.load_state_dict_from_url(
            HIFIGAN_NN_URL, map_location="cpu", check_hash=True, file_name="@HIFIGAN_NN_FILE@", progress=False
        )
        model.load_state_dict(_strip_module_prefix(checkpoint["generator"]))
    return model.eval()


def melgan_disc():
    """A discriminator with spectral norm and weight norm parametrizations."""
    sn, wn = parametrizations.spectral_norm, parametrizations.weight_norm
    return nn.Sequential(
        wn(nn.Conv1d(1, 8, 15, padding=7)),
        nn.LeakyReLU(0.2),
        sn(nn.Conv1d(8, 8, 5, stride=2, padding=2)),
        nn.LeakyReLU(0.2),
        sn(nn.Conv1d(8, 1, 3, padding=1)),
    ).eval()


def bert_nn(pretrained=True):
    """A small BERT-like encoder with a tied decoder."""
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True, norm_first=True,
                                       activation=functools.partial(nn.functional.gelu, approximate="tanh"))
    model = nn.Sequential(nn.Embedding(30, 16), nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
                          nn.LayerNorm(16), nn.Linear(16, 30, bias=False))
    model[3].weight = model[0].weight
    model.register_buffer("position_ids", torch.arange(12).expand((1, -1)), persistent=False)
    model.register_buffer("token_type_ids", torch.zeros(1, 12, dtype=torch.long))
    if pretrained:
        path = os.path.join(tempfile.mkdtemp(), "bert.safetensors")
        torch.hub.download_url_to_file(BERT_URL, path, progress=False)
        missing, unexpected = model.load_state_dict(load_file(path), strict=False)
        assert missing == ["3.weight"] and not unexpected, (missing, unexpected)
    return model.eval()


def resnet_features():
    """A torchvision-style backbone used as a frozen-stem feature extractor: classifier deleted."""
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
        nn.Conv2d(8, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )
    model[0].requires_grad_(False)
    model[1].requires_grad_(False)
    del model[6]  # the classifier
    model[3].bias = None  # folded away
    return model.to(memory_format=torch.channels_last).eval()


def hifigan(pretrained=True):
    """HiFi-GAN style generator (the repository's own classes, weight norm kept)."""
    model = Generator()
    if pretrained:
        checkpoint = torch.hub.load_state_dict_from_url(HIFIGAN_URL, map_location="cpu", progress=False)
        model.load_state_dict(checkpoint["generator"])
    return model.eval()


def dinov2_like(pretrained=False):
    """DINOv2-style ViT used as a feature extractor (head replaced)."""
    model = VisionTransformer(norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), init_values=1e-1)
    model.head = nn.Identity()
    return model.eval()
'''

#: entrypoint -> (example input shape, whether the model is built from torch.nn classes only)
ENTRIES: dict[str, tuple[tuple[int, ...], bool]] = {
    "hifigan_nn": ((1, 8, 10), True),
    "melgan_disc": ((1, 1, 32), True),
    "bert_nn": ((1, 12), True),
    "resnet_features": ((1, 3, 8, 8), True),
    "hifigan": ((1, 8, 10), False),
    "dinov2_like": ((1, 3, 16, 16), False),
}
POLICIES = ("default", "strict", "permissive")


def _input(entry: str, batch: int = 2) -> torch.Tensor:
    shape = (batch, *ENTRIES[entry][0][1:])
    if entry == "bert_nn":
        return torch.arange(batch * shape[1]).reshape(shape) % 30
    return torch.linspace(-1.0, 1.0, int(torch.Size(shape).numel())).reshape(shape)


def _checkpoints() -> dict[str, bytes]:
    """The pretrained files the artifact server serves, made from seeded models of the same shapes."""
    gen = torch.Generator().manual_seed(7)
    with preserved_rng():
        torch.manual_seed(7)
        generator = _direct_files_model("hifigan", pretrained=False)
        hifigan_state = {k: v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in generator.state_dict().items()}
        nn_model = _direct_files_model("hifigan_nn", pretrained=False)
        nn_state = {
            f"module.{k}": v + 0.01 * torch.randn(v.shape, generator=gen) for k, v in nn_model.state_dict().items()
        }
        bert = _direct_files_model("bert_nn", pretrained=False)
        bert_state = {k: v.clone() for k, v in bert.state_dict().items() if k != "3.weight"}
    return {
        "hifigan": pickled({"generator": hifigan_state, "steps": 1000}),
        "hifigan_nn": pickled({"generator": nn_state, "optim_g": {}}),
        "bert": save(bert_state),
    }


def _files(urls: Mapping[str, str], nn_file: str) -> dict[str, str]:
    hubconf = HUBCONF.replace("@HIFIGAN_NN_FILE@", nn_file)
    for name, url in urls.items():
        hubconf = hubconf.replace(f"@{name.upper()}_URL@", url)
    return {"hubconf.py": hubconf, "models.py": MODELS}


def _direct_files_model(entry: str, **kwargs: Any) -> nn.Module:
    """The model of ``entry`` with placeholder URLs (for making the checkpoints)."""
    urls = {"hifigan": "u1", "hifigan_nn": "u2", "bert": "u3"}
    with imported_like_the_child(_files(urls, "x-00000000.pth"), Path(_TMP[0]), {}) as module:
        model: nn.Module = getattr(module, entry)(**kwargs)
        return model


_TMP: list[str] = []


class World:
    def __init__(self, env: HubEnv) -> None:
        self.env = env
        self.blobs_by_name = _checkpoints()
        digest = hashlib.sha256(self.blobs_by_name["hifigan_nn"]).hexdigest()
        self.nn_file = f"hifigan_nn-{digest[:8]}.pth"
        self.urls = {
            "hifigan": env.put("vocoder/g_02500000", self.blobs_by_name["hifigan"]),
            "hifigan_nn": env.put(f"vocoder/{self.nn_file}", self.blobs_by_name["hifigan_nn"]),
            "bert": env.put("bert/model.safetensors", self.blobs_by_name["bert"]),
        }
        self.blobs = {self.urls[n]: b for n, b in self.blobs_by_name.items()}
        self.files = _files(self.urls, self.nn_file)
        self.spec = env.spec(publish(env, "realhub", self.files))
        (env.root / "locked").mkdir()
        self.lock = env.root / "locked" / "hub.lock"  # not ./hub.lock: the permissive loads run without it
        for entry, (shape, _) in ENTRIES.items():
            dtype = "int64" if entry == "bert_nn" else "float32"
            example = "x".join(map(str, shape)) + ":" + dtype
            lock_repos([self.spec], entrypoints=[entry], policy="strict", lock=self.lock, example_inputs=[example])

    def load(self, entry: str, policy: str) -> tuple[nn.Module, str]:
        lock = None if policy == "permissive" else self.lock
        model = securehub.load(self.spec, entry, policy=policy, lock=lock, verbose=False, force_reload=True)
        return model, audit_records(self.env)[-1]["strategy"]

    def direct(self, entry: str, root: Path) -> nn.Module:
        with preserved_rng(), imported_like_the_child(self.files, root, self.blobs) as module:
            seed_all()
            model: nn.Module = getattr(module, entry)()
            return model


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[World]:
    _TMP[:] = [str(tmp_path_factory.mktemp("direct"))]
    with hub_env_context(tmp_path_factory.mktemp("real-hub-models"), git_server) as env:
        yield World(env)


def _expected_strategy(entry: str, policy: str) -> str:
    if ENTRIES[entry][1]:
        return "trusted"
    return "source" if policy == "permissive" else "export"


def _outputs_equal(model: nn.Module, direct: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(model(x), direct(x), rtol=1e-5, atol=1e-6)


def _saves(model: nn.Module, tmp_path: Path) -> None:
    state = model.state_dict()
    torch.save(state, tmp_path / "state.pt")
    again = torch.load(tmp_path / "state.pt", weights_only=True)
    assert all(torch.equal(again[k], v) for k, v in state.items())
    save_model(model, str(tmp_path / "model.safetensors"))  # keeps a tied weight once
    saved = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(saved[k], state[k]) for k in saved)


def _user_calls(model: nn.Module, strategy: str, x: torch.Tensor) -> None:
    """What users do after loading: hooks, named_modules, deepcopy, and for trainable rebuilds one step."""
    seen: list[torch.Size] = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        expected = model(x)
    handle.remove()
    assert seen == [expected.shape]
    assert [n for n, _ in model.named_modules()][0] == ""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), expected)
    if strategy == "export":
        with pytest.raises(securehub.SecureHubError):
            clone.train()
        return
    clone.train()
    params = [p for p in clone.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    out = clone(x)
    (out.float().square().mean() if out.is_floating_point() else out.sum()).backward()
    opt.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("entry", ENTRIES)
def test_hub_model_loads_like_the_model_built_directly(world: World, entry: str, policy: str, tmp_path: Path) -> None:
    model, strategy = world.load(entry, policy)
    assert strategy == _expected_strategy(entry, policy)
    direct = world.direct(entry, tmp_path / "direct")
    x = _input(entry)
    assert model.eval() is model and not model.training
    _outputs_equal(model, direct, x)
    _saves(model, tmp_path)
    _user_calls(model, strategy, x)


def test_weight_norm_survives_trusted_and_removes_like_the_original(world: World, tmp_path: Path) -> None:
    """Vocoder inference scripts call remove_weight_norm after loading: same outputs as the original's."""
    model, strategy = world.load("hifigan_nn", "strict")
    assert strategy == "trusted"
    assert {"0.weight_g", "0.weight_v"} <= set(model.state_dict())
    direct = world.direct("hifigan_nn", tmp_path)
    for layer in (0, 2, 4):
        nn.utils.remove_weight_norm(model[layer])
        nn.utils.remove_weight_norm(direct[layer])
    _outputs_equal(model, direct, _input("hifigan_nn"))


def test_bert_buffers_registered_after_construction_are_restored(world: World) -> None:
    model, strategy = world.load("bert_nn", "default")
    assert strategy == "trusted"
    assert model[3].weight is model[0].weight
    assert torch.equal(model.position_ids, torch.arange(12)[None]) and "position_ids" not in model.state_dict()
    assert model.token_type_ids.dtype == torch.long and "token_type_ids" in model.state_dict()
