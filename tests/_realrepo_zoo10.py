# ruff: noqa: E501  (repository code written in the upstream style, long lines included)
"""Generated repositories in the style of facebookresearch/dinov2 (register models),
facebookresearch/deit (distilled models), ultralytics/yolov5's ``custom`` and an NVIDIA-style
``model_math``/``device`` entrypoint converting its weights to float16/bfloat16 (real-code round 10).

The file texts for tests/integration/test_real_hub_zoo10.py (see its docstring). Each follows the
public repository's hubconf and model code, written anew and narrowed (few channels, two blocks) so
the suite stays fast. Placeholders ``@NAME@`` are replaced by the test (artifact URLs).
"""

from __future__ import annotations

__all__ = ["DEIT_FORK_FILES", "DINOV2_REG_FILES", "DTYPE_FILES", "X3D_FILES", "YOLO_CUSTOM_FILES"]

# --------------------------------------------------------------------------------------------------
# facebookresearch/dinov2 since the register models: ``dinov2_vits14_reg`` is ``_make_dinov2_model(
# arch_name="vit_small", num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0)``;
# register tokens are concatenated after the class token, after the position embedding is added
# (bicubic interpolation of the position grid, ``antialias`` and ``scale_factor``/``size`` chosen by the
# offset); blocks carry LayerScale (``init_values``) and may be grouped in ``BlockChunk``s padded with
# one shared ``nn.Identity`` (``block_chunks``). layers/attention.py and layers/block.py import xformers
# in ``try: ... except ImportError: XFORMERS_AVAILABLE = False`` and ``warnings.warn`` what they found,
# at import time; ``MemEffAttention`` falls back to the plain attention. ``forward(*args,
# is_training=False, **kwargs)``. Narrowed: embed_dim 16, depth 2 (4 for chunks), 2 heads, img_size 56.
# --------------------------------------------------------------------------------------------------
_DINOV2_HUBCONF = """# Copyright (c) Meta Platforms, Inc. and affiliates.

dependencies = ["torch"]

from dinov2.hub.backbones import dinov2_vits14, dinov2_vits14_reg
"""

_DINOV2_HUB_UTILS = """import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


_DINOV2_BASE_URL = "@DINOV2_BASE@"


def _make_dinov2_model_name(arch_name: str, patch_size: int, num_register_tokens: int = 0) -> str:
    compact_arch_name = arch_name.replace("_", "")[:4]
    registers_suffix = f"_reg{num_register_tokens}" if num_register_tokens else ""
    return f"dinov2_{compact_arch_name}{patch_size}{registers_suffix}"
"""

_DINOV2_BACKBONES = '''from enum import Enum
from typing import Union

import torch

from .utils import _DINOV2_BASE_URL, _make_dinov2_model_name


class Weights(Enum):
    LVD142M = "LVD142M"


def _make_dinov2_model(
    *,
    arch_name: str = "vit_large",
    img_size: int = 56,
    patch_size: int = 14,
    init_values: float = 1.0,
    ffn_layer: str = "mlp",
    block_chunks: int = 0,
    num_register_tokens: int = 0,
    interpolate_antialias: bool = False,
    interpolate_offset: float = 0.1,
    pretrained: bool = True,
    weights: Union[Weights, str] = Weights.LVD142M,
    **kwargs,
):
    from ..models import vision_transformer as vits

    if isinstance(weights, str):
        try:
            weights = Weights[weights]
        except KeyError:
            raise AssertionError(f"Unsupported weights: {weights}")

    model_base_name = _make_dinov2_model_name(arch_name, patch_size)
    vit_kwargs = dict(
        img_size=img_size,
        patch_size=patch_size,
        init_values=init_values,
        ffn_layer=ffn_layer,
        block_chunks=block_chunks,
        num_register_tokens=num_register_tokens,
        interpolate_antialias=interpolate_antialias,
        interpolate_offset=interpolate_offset,
    )
    vit_kwargs.update(**kwargs)
    model = vits.__dict__[arch_name](**vit_kwargs)

    if pretrained:
        model_full_name = _make_dinov2_model_name(arch_name, patch_size, num_register_tokens)
        url = _DINOV2_BASE_URL + f"/{model_base_name}/{model_full_name}_pretrain.pth"
        state_dict = torch.hub.load_state_dict_from_url(url, map_location="cpu")
        model.load_state_dict(state_dict, strict=True)

    return model


def dinov2_vits14(*, pretrained: bool = True, weights: Union[Weights, str] = Weights.LVD142M, **kwargs):
    """
    DINOv2 ViT-S/14 model (optionally) pretrained on the LVD-142M dataset.
    """
    return _make_dinov2_model(arch_name="vit_small", pretrained=pretrained, weights=weights, **kwargs)


def dinov2_vits14_reg(*, pretrained: bool = True, weights: Union[Weights, str] = Weights.LVD142M, **kwargs):
    """
    DINOv2 ViT-S/14 model with registers (optionally) pretrained on the LVD-142M dataset.
    """
    return _make_dinov2_model(
        arch_name="vit_small",
        pretrained=pretrained,
        weights=weights,
        num_register_tokens=4,
        interpolate_antialias=True,
        interpolate_offset=0.0,
        **kwargs,
    )
'''

_DINOV2_LAYERS_INIT = """from .mlp import Mlp
from .patch_embed import PatchEmbed
from .block import NestedTensorBlock
from .attention import MemEffAttention
"""

_DINOV2_ATTENTION = """import logging
import os
import warnings

from torch import Tensor
from torch import nn


logger = logging.getLogger("dinov2")


XFORMERS_ENABLED = os.environ.get("XFORMERS_DISABLED") is None
try:
    if XFORMERS_ENABLED:
        from xformers.ops import memory_efficient_attention, unbind

        XFORMERS_AVAILABLE = True
        warnings.warn("xFormers is available (Attention)")
    else:
        warnings.warn("xFormers is disabled (Attention)")
        raise ImportError
except ImportError:
    XFORMERS_AVAILABLE = False
    warnings.warn("xFormers is not available (Attention)")


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5

        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)

        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)

        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)

        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class MemEffAttention(Attention):
    def forward(self, x: Tensor, attn_bias=None) -> Tensor:
        if not XFORMERS_AVAILABLE:
            if attn_bias is not None:
                raise AssertionError("xFormers is required for using nested tensors")
            return super().forward(x)

        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)

        q, k, v = unbind(qkv, 2)

        x = memory_efficient_attention(q, k, v, attn_bias=attn_bias)
        x = x.reshape([B, N, C])

        x = self.proj(x)
        x = self.proj_drop(x)
        return x
"""

_DINOV2_BLOCK = """import logging
import os
from typing import Callable, List, Any, Tuple, Dict
import warnings

import torch
from torch import nn, Tensor

from .attention import Attention, MemEffAttention
from .drop_path import DropPath
from .layer_scale import LayerScale
from .mlp import Mlp


logger = logging.getLogger("dinov2")


XFORMERS_ENABLED = os.environ.get("XFORMERS_DISABLED") is None
try:
    if XFORMERS_ENABLED:
        from xformers.ops import fmha, scaled_index_add, index_select_cat

        XFORMERS_AVAILABLE = True
        warnings.warn("xFormers is available (Block)")
    else:
        warnings.warn("xFormers is disabled (Block)")
        raise ImportError
except ImportError:
    XFORMERS_AVAILABLE = False

    warnings.warn("xFormers is not available (Block)")


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        init_values=None,
        drop_path: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        attn_class: Callable[..., nn.Module] = Attention,
        ffn_layer: Callable[..., nn.Module] = Mlp,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn_class(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            proj_bias=proj_bias,
            attn_drop=attn_drop,
            proj_drop=drop,
        )
        self.ls1 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

        self.norm2 = norm_layer(dim)
        mlp_hidden_dim = int(dim * mlp_ratio)
        self.mlp = ffn_layer(
            in_features=dim,
            hidden_features=mlp_hidden_dim,
            act_layer=act_layer,
            drop=drop,
            bias=ffn_bias,
        )
        self.ls2 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

        self.sample_drop_ratio = drop_path

    def forward(self, x: Tensor) -> Tensor:
        def attn_residual_func(x: Tensor) -> Tensor:
            return self.ls1(self.attn(self.norm1(x)))

        def ffn_residual_func(x: Tensor) -> Tensor:
            return self.ls2(self.mlp(self.norm2(x)))

        if self.training and self.sample_drop_ratio > 0.0:
            x = x + self.drop_path1(attn_residual_func(x))
            x = x + self.drop_path1(ffn_residual_func(x))
        else:
            x = x + attn_residual_func(x)
            x = x + ffn_residual_func(x)
        return x


class NestedTensorBlock(Block):
    def forward_nested(self, x_list: List[Tensor]) -> List[Tensor]:
        raise AssertionError("xFormers is required for using nested tensors")

    def forward(self, x_or_x_list):
        if isinstance(x_or_x_list, Tensor):
            return super().forward(x_or_x_list)
        elif isinstance(x_or_x_list, list):
            if not XFORMERS_AVAILABLE:
                raise AssertionError("xFormers is required for using nested tensors")
            return self.forward_nested(x_or_x_list)
        else:
            raise AssertionError
"""

_DINOV2_LAYER_SCALE = """from typing import Union

import torch
from torch import Tensor
from torch import nn


class LayerScale(nn.Module):
    def __init__(
        self,
        dim: int,
        init_values: Union[float, Tensor] = 1e-5,
        inplace: bool = False,
    ) -> None:
        super().__init__()
        self.inplace = inplace
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x.mul_(self.gamma) if self.inplace else x * self.gamma
"""

_DINOV2_DROP_PATH = """from torch import nn


def drop_path(x, drop_prob: float = 0.0, training: bool = False):
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    def __init__(self, drop_prob=None):
        super(DropPath, self).__init__()
        self.drop_prob = drop_prob

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training)
"""

_DINOV2_MLP = """from typing import Callable, Optional

from torch import Tensor, nn


class Mlp(nn.Module):
    def __init__(
        self,
        in_features: int,
        hidden_features: Optional[int] = None,
        out_features: Optional[int] = None,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x
"""

_DINOV2_PATCH_EMBED = """from typing import Callable, Optional, Tuple, Union

from torch import Tensor
import torch.nn as nn


def make_2tuple(x):
    if isinstance(x, tuple):
        assert len(x) == 2
        return x

    assert isinstance(x, int)
    return (x, x)


class PatchEmbed(nn.Module):
    def __init__(
        self,
        img_size: Union[int, Tuple[int, int]] = 224,
        patch_size: Union[int, Tuple[int, int]] = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: Optional[Callable] = None,
        flatten_embedding: bool = True,
    ) -> None:
        super().__init__()

        image_HW = make_2tuple(img_size)
        patch_HW = make_2tuple(patch_size)
        patch_grid_size = (
            image_HW[0] // patch_HW[0],
            image_HW[1] // patch_HW[1],
        )

        self.img_size = image_HW
        self.patch_size = patch_HW
        self.patches_resolution = patch_grid_size
        self.num_patches = patch_grid_size[0] * patch_grid_size[1]

        self.in_chans = in_chans
        self.embed_dim = embed_dim

        self.flatten_embedding = flatten_embedding

        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_HW, stride=patch_HW)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        _, _, H, W = x.shape
        patch_H, patch_W = self.patch_size

        assert H % patch_H == 0, f"Input image height {H} is not a multiple of patch height {patch_H}"
        assert W % patch_W == 0, f"Input image width {W} is not a multiple of patch width: {patch_W}"

        x = self.proj(x)  # B C H W
        H, W = x.size(2), x.size(3)
        x = x.flatten(2).transpose(1, 2)  # B HW C
        x = self.norm(x)
        if not self.flatten_embedding:
            x = x.reshape(-1, H, W, self.embed_dim)  # B H W C
        return x
"""

_DINOV2_VIT = '''from functools import partial
import math
import logging
from typing import Sequence, Tuple, Union, Callable

import torch
import torch.nn as nn
import torch.utils.checkpoint
from torch.nn.init import trunc_normal_

from dinov2.layers import Mlp, PatchEmbed, MemEffAttention, NestedTensorBlock as Block


logger = logging.getLogger("dinov2")


def named_apply(fn: Callable, module: nn.Module, name="", depth_first=True, include_root=False) -> nn.Module:
    if not depth_first and include_root:
        fn(module=module, name=name)
    for child_name, child_module in module.named_children():
        child_name = ".".join((name, child_name)) if name else child_name
        named_apply(fn=fn, module=child_module, name=child_name, depth_first=depth_first, include_root=True)
    if depth_first and include_root:
        fn(module=module, name=name)
    return module


class BlockChunk(nn.ModuleList):
    def forward(self, x):
        for b in self:
            x = b(x)
        return x


class DinoVisionTransformer(nn.Module):
    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        depth=12,
        num_heads=12,
        mlp_ratio=4.0,
        qkv_bias=True,
        ffn_bias=True,
        proj_bias=True,
        drop_path_rate=0.0,
        drop_path_uniform=False,
        init_values=None,  # for layerscale: None or 0 => no layerscale
        embed_layer=PatchEmbed,
        act_layer=nn.GELU,
        block_fn=Block,
        ffn_layer="mlp",
        block_chunks=1,
        num_register_tokens=0,
        interpolate_antialias=False,
        interpolate_offset=0.1,
    ):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)

        self.num_features = self.embed_dim = embed_dim
        self.num_tokens = 1
        self.n_blocks = depth
        self.num_heads = num_heads
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset

        self.patch_embed = embed_layer(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_tokens, embed_dim))
        assert num_register_tokens >= 0
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) if num_register_tokens else None
        )

        if drop_path_uniform is True:
            dpr = [drop_path_rate] * depth
        else:
            dpr = [x.item() for x in torch.linspace(0, drop_path_rate, depth)]

        if ffn_layer == "mlp":
            logger.info("using MLP layer as FFN")
            ffn_layer = Mlp
        elif ffn_layer == "identity":
            logger.info("using Identity layer as FFN")

            def f(*args, **kwargs):
                return nn.Identity()

            ffn_layer = f
        else:
            raise NotImplementedError

        blocks_list = [
            block_fn(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                proj_bias=proj_bias,
                ffn_bias=ffn_bias,
                drop_path=dpr[i],
                norm_layer=norm_layer,
                act_layer=act_layer,
                ffn_layer=ffn_layer,
                init_values=init_values,
            )
            for i in range(depth)
        ]
        if block_chunks > 0:
            self.chunked_blocks = True
            chunked_blocks = []
            chunksize = depth // block_chunks
            for i in range(0, depth, chunksize):
                # this is to keep the block index consistent if we chunk the block list
                chunked_blocks.append([nn.Identity()] * i + blocks_list[i : i + chunksize])
            self.blocks = nn.ModuleList([BlockChunk(p) for p in chunked_blocks])
        else:
            self.chunked_blocks = False
            self.blocks = nn.ModuleList(blocks_list)

        self.norm = norm_layer(embed_dim)
        self.head = nn.Identity()

        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

        self.init_weights()

    def init_weights(self):
        trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        named_apply(init_weights_vit_timm, self)

    def interpolate_pos_encoding(self, x, w, h):
        previous_dtype = x.dtype
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        pos_embed = self.pos_embed.float()
        class_pos_embed = pos_embed[:, 0]
        patch_pos_embed = pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_size
        h0 = h // self.patch_size
        M = int(math.sqrt(N))  # Recover the number of patches in each dimension
        assert N == M * M
        kwargs = {}
        if self.interpolate_offset:
            sx = float(w0 + self.interpolate_offset) / M
            sy = float(h0 + self.interpolate_offset) / M
            kwargs["scale_factor"] = (sx, sy)
        else:
            # Simply specify an output size instead of a scale factor
            kwargs["size"] = (w0, h0)
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, M, M, dim).permute(0, 3, 1, 2),
            mode="bicubic",
            antialias=self.interpolate_antialias,
            **kwargs,
        )
        assert (w0, h0) == patch_pos_embed.shape[-2:]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1).to(previous_dtype)

    def prepare_tokens_with_masks(self, x, masks=None):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)

        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)

        if self.register_tokens is not None:
            x = torch.cat(
                (
                    x[:, :1],
                    self.register_tokens.expand(x.shape[0], -1, -1),
                    x[:, 1:],
                ),
                dim=1,
            )

        return x

    def forward_features(self, x, masks=None):
        if isinstance(x, list):
            raise AssertionError("xFormers is required for using nested tensors")

        x = self.prepare_tokens_with_masks(x, masks)

        for blk in self.blocks:
            x = blk(x)

        x_norm = self.norm(x)
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_norm_regtokens": x_norm[:, 1 : self.num_register_tokens + 1],
            "x_norm_patchtokens": x_norm[:, self.num_register_tokens + 1 :],
            "x_prenorm": x,
            "masks": masks,
        }

    def forward(self, *args, is_training=False, **kwargs):
        ret = self.forward_features(*args, **kwargs)
        if is_training:
            return ret
        else:
            return self.head(ret["x_norm_clstoken"])


def init_weights_vit_timm(module: nn.Module, name: str = ""):
    """ViT weight initialization, original timm impl (for reproducibility)"""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def vit_small(patch_size=16, num_register_tokens=0, depth=2, **kwargs):
    model = DinoVisionTransformer(
        patch_size=patch_size,
        embed_dim=16,
        depth=depth,
        num_heads=2,
        mlp_ratio=4,
        block_fn=partial(Block, attn_class=MemEffAttention),
        num_register_tokens=num_register_tokens,
        **kwargs,
    )
    return model
'''

DINOV2_REG_FILES: dict[str, str | None] = {
    "hubconf.py": _DINOV2_HUBCONF,
    "dinov2/__init__.py": '__version__ = "0.0.1"\n',
    "dinov2/hub/__init__.py": "",
    "dinov2/hub/utils.py": _DINOV2_HUB_UTILS,
    "dinov2/hub/backbones.py": _DINOV2_BACKBONES,
    "dinov2/layers/__init__.py": _DINOV2_LAYERS_INIT,
    "dinov2/layers/attention.py": _DINOV2_ATTENTION,
    "dinov2/layers/block.py": _DINOV2_BLOCK,
    "dinov2/layers/drop_path.py": _DINOV2_DROP_PATH,
    "dinov2/layers/layer_scale.py": _DINOV2_LAYER_SCALE,
    "dinov2/layers/mlp.py": _DINOV2_MLP,
    "dinov2/layers/patch_embed.py": _DINOV2_PATCH_EMBED,
    "dinov2/models/__init__.py": "",
    "dinov2/models/vision_transformer.py": _DINOV2_VIT,
}

# --------------------------------------------------------------------------------------------------
# facebookresearch/deit: ``DistilledVisionTransformer(VisionTransformer)`` adds a second class token
# (``dist_token``), a position embedding two tokens longer and a second head (``head_dist``); its
# forward returns ``(x, x_dist)`` in train mode and their average in eval mode. Entrypoints download
# with ``check_hash=True`` (a ``-<sha256 prefix>.pth`` name) and load ``checkpoint["model"]``.
# Upstream subclasses timm's VisionTransformer (timm is not installed: round 1 asserts that
# ``dependency-missing``); the fork vendors a narrowed timm-like VisionTransformer (embed 16, depth 2,
# 2 heads, 32x32 images in 8x8 patches, 10 classes).
# --------------------------------------------------------------------------------------------------
_DEIT_HUBCONF = """# Copyright (c) 2015-present, Facebook, Inc.
# All rights reserved.
from models import *

dependencies = ["torch"]
"""

_DEIT_VIT = '''"""A timm-like VisionTransformer (vendored, narrowed)."""
from functools import partial

import torch
import torch.nn as nn
from torch.nn.init import trunc_normal_


def _cfg(url='', **kwargs):
    return {'url': url, 'num_classes': 10, 'input_size': (3, 32, 32), 'interpolation': 'bicubic',
            'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225), **kwargs}


class PatchEmbed(nn.Module):
    def __init__(self, img_size=32, patch_size=8, in_chans=3, embed_dim=16):
        super().__init__()
        self.num_patches = (img_size // patch_size) * (img_size // patch_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4., qkv_bias=False, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.norm2 = norm_layer(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    def __init__(self, img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=16, depth=2,
                 num_heads=2, mlp_ratio=4., qkv_bias=True, drop_rate=0., norm_layer=None):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, norm_layer)
                                     for _ in range(depth)])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        trunc_normal_(self.pos_embed, std=.02)
        trunc_normal_(self.cls_token, std=.02)
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward_features(self, x):
        B = x.shape[0]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = self.pos_drop(x + self.pos_embed)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]

    def forward(self, x):
        return self.head(self.forward_features(x))
'''

_DEIT_MODELS = """# Copyright (c) 2015-present, Facebook, Inc.
# All rights reserved.
import torch
import torch.nn as nn
from functools import partial

from vit import VisionTransformer, _cfg
from torch.nn.init import trunc_normal_


__all__ = [
    'deit_tiny_patch16_224', 'deit_tiny_distilled_patch16_224',
]


class DistilledVisionTransformer(VisionTransformer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dist_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        num_patches = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 2, self.embed_dim))
        self.head_dist = nn.Linear(self.embed_dim, self.num_classes) if self.num_classes > 0 else nn.Identity()

        trunc_normal_(self.dist_token, std=.02)
        trunc_normal_(self.pos_embed, std=.02)
        self.head_dist.apply(self._init_weights)

    def forward_features(self, x):
        # taken from timm's vision_transformer.py with slight modifications to add the dist_token
        B = x.shape[0]
        x = self.patch_embed(x)

        cls_tokens = self.cls_token.expand(B, -1, -1)
        dist_token = self.dist_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, dist_token, x), dim=1)

        x = x + self.pos_embed
        x = self.pos_drop(x)

        for blk in self.blocks:
            x = blk(x)

        x = self.norm(x)
        return x[:, 0], x[:, 1]

    def forward(self, x):
        x, x_dist = self.forward_features(x)
        x = self.head(x)
        x_dist = self.head_dist(x_dist)
        if self.training:
            return x, x_dist
        else:
            # during inference, return the average of both classifier predictions
            return (x + x_dist) / 2


def deit_tiny_patch16_224(pretrained=False, **kwargs):
    model = VisionTransformer(
        patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs)
    model.default_cfg = _cfg()
    if pretrained:
        checkpoint = torch.hub.load_state_dict_from_url(
            url="@DEIT_TINY_URL@",
            map_location="cpu", check_hash=True
        )
        model.load_state_dict(checkpoint["model"])
    return model


def deit_tiny_distilled_patch16_224(pretrained=False, **kwargs):
    model = DistilledVisionTransformer(
        patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=4, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs)
    model.default_cfg = _cfg()
    if pretrained:
        checkpoint = torch.hub.load_state_dict_from_url(
            url="@DEIT_TINY_DISTILLED_URL@",
            map_location="cpu", check_hash=True
        )
        model.load_state_dict(checkpoint["model"])
    return model
"""

DEIT_FORK_FILES: dict[str, str | None] = {"hubconf.py": _DEIT_HUBCONF, "models.py": _DEIT_MODELS, "vit.py": _DEIT_VIT}

# --------------------------------------------------------------------------------------------------
# ultralytics/yolov5 ``custom(path="path/to/model.pt", autoshape=True, _verbose=True, device=None)``:
# ``_create(path, ...)`` where ``path`` names the user's own checkpoint file (``best.pt``);
# ``attempt_download`` returns it when it exists and downloads only the release assets it knows by
# name, then ``torch.load(path)`` reads the file. The model the checkpoint pickles is rebuilt (narrowed:
# a plain state dict under ``"model"`` and the class names), wrapped in ``AutoShape`` and moved
# ``.to(device)``; users then set ``model.conf`` / ``model.iou``.
# --------------------------------------------------------------------------------------------------
_YOLO_HUBCONF = '''"""YOLOv5 PyTorch Hub models https://pytorch.org/hub/ultralytics_yolov5

Usage:
    import torch
    model = torch.hub.load('ultralytics/yolov5', 'custom', 'path/to/yolov5s.onnx')  # custom model from branch
"""

import torch

dependencies = ["torch"]


def _create(name, pretrained=True, channels=3, classes=4, autoshape=True, verbose=True, device=None):
    from pathlib import Path

    from models.common import AutoShape, DetectionModel
    from utils.downloads import attempt_download
    from utils.torch_utils import select_device

    path = Path(name).with_suffix(".pt") if Path(name).suffix == "" and not Path(name).is_dir() else Path(name)
    try:
        device = select_device(device)
        model = DetectionModel(channels, classes)
        if pretrained:
            ckpt = torch.load(attempt_download(path), map_location=device)
            model.load_state_dict(ckpt["model"])
            model.names = ckpt["names"]
        if autoshape:
            model = AutoShape(model)
        return model.to(device)

    except Exception as e:
        help_url = "https://docs.ultralytics.com/yolov5/tutorials/pytorch_hub_model_loading"
        s = f"{e}. Cache may be out of date, try `force_reload=True` or see {help_url} for help."
        raise Exception(s) from e


def custom(path="path/to/model.pt", autoshape=True, _verbose=True, device=None):
    """Loads a custom or local YOLOv5 model from a given path with optional autoshaping and device specification."""
    return _create(path, autoshape=autoshape, verbose=_verbose, device=device)


def yolov5n(pretrained=True, channels=3, classes=4, autoshape=True, _verbose=True, device=None):
    """Instantiates the YOLOv5-nano model with options for pretraining, input channels, class count, autoshaping,
    verbosity, and device.
    """
    return _create("yolov5n", pretrained, channels, classes, autoshape, _verbose, device)
'''

_YOLO_COMMON = """import torch
import torch.nn as nn


class DetectionModel(nn.Module):
    def __init__(self, ch=3, nc=4):
        super().__init__()
        self.nc = nc
        self.names = {i: f"class{i}" for i in range(nc)}
        self.backbone = nn.Sequential(nn.Conv2d(ch, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.SiLU())
        self.head = nn.Conv2d(8, nc + 5, 1)

    def forward(self, x):
        y = self.head(self.backbone(x))
        return y.flatten(2).transpose(1, 2)


class AutoShape(nn.Module):
    conf = 0.25  # NMS confidence threshold
    iou = 0.45  # NMS IoU threshold
    agnostic = False  # NMS class-agnostic
    multi_label = False  # NMS multiple labels per box
    classes = None  # (optional list) filter by class
    max_det = 1000  # maximum number of detections per image

    def __init__(self, model, verbose=True):
        super().__init__()
        self.model = model.eval()
        self.names = model.names

    @torch.no_grad()
    def forward(self, ims, size=32):
        y = self.model(ims)
        scores = y[..., 4:5].sigmoid() * y[..., 5:].sigmoid()
        return torch.where(scores > self.conf, scores, torch.zeros_like(scores))
"""

_YOLO_DOWNLOADS = '''import os
from pathlib import Path

import torch


def attempt_download(file, repo="ultralytics/yolov5", release="v7.0"):
    """Downloads a file from GitHub release assets if not found locally."""
    file = Path(str(file).strip().replace("'", ""))
    if not file.exists():
        name = file.name
        assets = [f"yolov5{size}{suffix}.pt" for size in "nsmlx" for suffix in ("", "6", "-cls", "-seg")]
        if name in assets:
            file.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file("@YOLO_RELEASES@/" + name, str(file))
    return str(file)
'''

_YOLO_TORCH_UTILS = """import os

import torch


def select_device(device="", batch_size=0, newline=True):
    device = str(device or "").strip().lower().replace("cuda:", "").replace("none", "")
    cpu = device == "cpu"
    if cpu or not torch.cuda.is_available():
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
        return torch.device("cpu")
    return torch.device("cuda:0")
"""

YOLO_CUSTOM_FILES: dict[str, str | None] = {
    "hubconf.py": _YOLO_HUBCONF,
    "models/__init__.py": "",
    "models/common.py": _YOLO_COMMON,
    "utils/__init__.py": "",
    "utils/downloads.py": _YOLO_DOWNLOADS,
    "utils/torch_utils.py": _YOLO_TORCH_UTILS,
}

# --------------------------------------------------------------------------------------------------
# NVIDIA DeepLearningExamples-style precision and device arguments: ``model_math="fp16"`` turns the
# model ``.half()`` and its batch norms back to float (``batchnorm_to_float``); a checkpoint saved from
# DistributedDataParallel (``state_dict`` keys under ``module.``) is unwrapped (``convnet``'s;
# ``mlp``'s is a plain one: NVIDIA's ``unwrap_distributed`` would strip ``module.1.`` from a Sequential's); ``device="cpu"`` and
# ``dtype="bfloat16"`` are applied with ``.to(device=..., dtype=...)`` after loading (silero-models'
# ``device`` argument). ``mlp`` is built from torch.nn classes only (trusted applies); ``convnet`` is
# the repository's own class (export).
# --------------------------------------------------------------------------------------------------
_DTYPE_HUBCONF = '''import torch
import torch.nn as nn

dependencies = ["torch"]


def checkpoint_from_distributed(state_dict):
    ret = False
    for key, _ in state_dict.items():
        if key.find("module.") != -1:
            ret = True
            break
    return ret


def unwrap_distributed(state_dict):
    new_state_dict = {}
    for key, value in state_dict.items():
        new_key = key.replace("module.1.", "")
        new_key = new_key.replace("module.", "")
        new_state_dict[new_key] = value
    return new_state_dict


def batchnorm_to_float(module):
    """Converts batch norm to FP32"""
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
        module.float()
    for child in module.children():
        batchnorm_to_float(child)
    return module


class ConvNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x).float()).to(x.dtype))
        return self.fc(x.mean((2, 3)))


def _load(model, url, map_location):
    ckpt = torch.hub.load_state_dict_from_url(url, map_location=map_location)
    state_dict = ckpt["state_dict"]
    if checkpoint_from_distributed(state_dict):
        state_dict = unwrap_distributed(state_dict)
    model.load_state_dict(state_dict)
    return model


def mlp(pretrained=True, device="cpu", dtype="float32", map_location="cpu"):
    """A torch.nn-only model: Linear, LayerNorm, GELU."""
    m = nn.Sequential(nn.Linear(12, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 5))
    if pretrained:
        m = _load(m, "@DTYPE_MLP_URL@", map_location)
    return m.to(device=torch.device(device), dtype=getattr(torch, dtype))


def convnet(pretrained=True, model_math="fp32", device="cpu", **kwargs):
    """NVIDIA style: ``model_math="fp16"`` halves the model, batch norms kept in float."""
    m = ConvNet()
    if pretrained:
        m = _load(m, "@DTYPE_CONV_URL@", "cpu")
    if model_math == "fp16":
        m = batchnorm_to_float(m.half())
    return m.to(device)
'''

DTYPE_FILES: dict[str, str | None] = {"hubconf.py": _DTYPE_HUBCONF}

# --------------------------------------------------------------------------------------------------
# facebookresearch/pytorchvideo ``x3d_s``: ``_x3d(pretrained, progress, checkpoint_path, **kwargs)``
# builds ``create_x3d(...)`` and loads ``checkpoint["model_state"]``. New here: ``Swish`` runs a custom
# ``torch.autograd.Function`` (``SwishFunction.apply``, ``ctx.save_for_backward``, its own backward);
# the stem is a (2+1)D ``Conv2plus1d`` (spatial conv, then a depthwise temporal one); blocks squeeze and
# excite (``SqueezeExcitation`` with ``round_width``); the head is ``ProjectedPool`` then a pooled
# ``ResNetBasicHead`` applying its softmax in eval mode only. Narrowed: 8 channels, one stage, 4 classes.
# --------------------------------------------------------------------------------------------------
_X3D_HUBCONF = """dependencies = ["torch"]
from pytorchvideo.models.hub import x3d_s, x3d_xs  # noqa: F401, E402
"""

_X3D_SWISH = '''import torch
import torch.nn as nn


class Swish(nn.Module):
    """
    Wrapper for the Swish activation function.
    """

    def forward(self, x):
        return SwishFunction.apply(x)


class SwishFunction(torch.autograd.Function):
    """
    Implementation of the Swish activation function: x * sigmoid(x).

    Searching for activation functions. Ramachandran, Prajit and Zoph, Barret
    and Le, Quoc V. 2017
    """

    @staticmethod
    def forward(ctx, x):
        result = x * torch.sigmoid(x)
        ctx.save_for_backward(x)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        x = ctx.saved_tensors[0]
        sigmoid_x = torch.sigmoid(x)
        return grad_output * (sigmoid_x * (1 + x * (1 - sigmoid_x)))
'''

_X3D_MODEL = """import math

import numpy as np
import torch
import torch.nn as nn

from pytorchvideo.layers.swish import Swish


def round_width(width, multiplier, min_width=8, divisor=8, ceil=False):
    if not multiplier:
        return width
    width *= multiplier
    min_width = min_width or divisor
    if ceil:
        width_out = max(min_width, int(math.ceil(width / divisor)) * divisor)
    else:
        width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)


class SqueezeExcitation(nn.Module):
    def __init__(self, num_channels, num_channels_reduced=None, reduction_ratio=2.0, is_3d=False, activation=None):
        super().__init__()
        if num_channels_reduced is None:
            num_channels_reduced = int(num_channels // reduction_ratio)
        conv = nn.Conv3d if is_3d else nn.Conv2d
        self.block = nn.Sequential(
            nn.AdaptiveAvgPool3d(1) if is_3d else nn.AdaptiveAvgPool2d(1),
            conv(num_channels, num_channels_reduced, kernel_size=1, bias=True),
            nn.ReLU() if activation is None else activation,
            conv(num_channels_reduced, num_channels, kernel_size=1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, input_tensor):
        return input_tensor * self.block(input_tensor)


class Conv2plus1d(nn.Module):
    def __init__(self, *, conv_t=None, norm=None, activation=None, conv_xy=None, conv_xy_first=False):
        super().__init__()
        self.conv_t = conv_t
        self.norm = norm
        self.activation = activation
        self.conv_xy = conv_xy
        self.conv_xy_first = conv_xy_first

    def forward(self, x):
        x = self.conv_xy(x) if self.conv_xy_first else self.conv_t(x)
        x = self.norm(x) if self.norm else x
        x = self.activation(x) if self.activation else x
        x = self.conv_t(x) if self.conv_xy_first else self.conv_xy(x)
        return x


class ResNetBasicStem(nn.Module):
    def __init__(self, *, conv=None, norm=None, activation=None, pool=None):
        super().__init__()
        self.conv, self.norm, self.activation, self.pool = conv, norm, activation, pool

    def forward(self, x):
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        if self.pool is not None:
            x = self.pool(x)
        return x


class BottleneckBlock(nn.Module):
    def __init__(self, *, conv_a, norm_a, act_a, conv_b, norm_b, act_b, conv_c, norm_c):
        super().__init__()
        self.conv_a, self.norm_a, self.act_a = conv_a, norm_a, act_a
        self.conv_b, self.norm_b, self.act_b = conv_b, norm_b, act_b
        self.conv_c, self.norm_c = conv_c, norm_c

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    def __init__(self, branch1_conv=None, branch1_norm=None, branch2=None, activation=None, branch_fusion=None):
        super().__init__()
        self.branch1_conv, self.branch1_norm = branch1_conv, branch1_norm
        self.branch2, self.activation, self.branch_fusion = branch2, activation, branch_fusion

    def forward(self, x):
        if self.branch1_conv is None:
            x = self.branch_fusion(x, self.branch2(x))
        else:
            shortcut = self.branch1_conv(x)
            if self.branch1_norm is not None:
                shortcut = self.branch1_norm(shortcut)
            x = self.branch_fusion(shortcut, self.branch2(x))
        if self.activation is not None:
            x = self.activation(x)
        return x


class ProjectedPool(nn.Module):
    def __init__(self, *, pre_conv=None, pre_norm=None, pre_act=None, pool=None, post_conv=None, post_norm=None,
                 post_act=None):
        super().__init__()
        self.pre_conv, self.pre_norm, self.pre_act = pre_conv, pre_norm, pre_act
        self.pool, self.post_conv, self.post_norm, self.post_act = pool, post_conv, post_norm, post_act

    def forward(self, x):
        x = self.pre_conv(x)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        if self.pre_act is not None:
            x = self.pre_act(x)
        x = self.pool(x)
        x = self.post_conv(x)
        if self.post_norm is not None:
            x = self.post_norm(x)
        if self.post_act is not None:
            x = self.post_act(x)
        return x


class ResNetBasicHead(nn.Module):
    def __init__(self, pool=None, dropout=None, proj=None, activation=None, output_pool=None):
        super().__init__()
        self.pool, self.dropout, self.proj = pool, dropout, proj
        self.activation, self.output_pool = activation, output_pool

    def forward(self, x):
        if self.pool is not None:
            x = self.pool(x)
        if self.dropout is not None:
            x = self.dropout(x)
        if self.proj is not None:
            x = x.permute((0, 2, 3, 4, 1))
            x = self.proj(x)
            x = x.permute((0, 4, 1, 2, 3))
        if self.activation is not None:
            x = self.activation(x)
        if self.output_pool is not None:
            x = self.output_pool(x)
            x = x.view(x.shape[0], -1)
        return x


class Net(nn.Module):
    def __init__(self, *, blocks):
        super().__init__()
        self.blocks = blocks

    def forward(self, x):
        for idx in range(len(self.blocks)):
            x = self.blocks[idx](x)
        return x


def create_x3d(*, input_channel=3, input_clip_length=4, input_crop_size=16, model_num_class=4, dropout_rate=0.5,
               width_factor=2.0, depth_factor=2.2, norm=nn.BatchNorm3d, norm_eps=1e-5, norm_momentum=0.1,
               activation=nn.ReLU, stem_dim_in=4, stem_conv_kernel_size=(5, 3, 3), stem_conv_stride=(1, 2, 2),
               bottleneck_factor=2.25, se_ratio=0.0625, inner_act=Swish, head_dim_out=16,
               head_pool_act=nn.ReLU, head_bn_lin5_on=False, head_activation=nn.Softmax,
               head_output_with_global_average=True):
    blocks = []
    stem_dim_out = round_width(stem_dim_in, width_factor)
    stem = ResNetBasicStem(
        conv=Conv2plus1d(
            conv_t=nn.Conv3d(input_channel, stem_dim_out, kernel_size=(1, 3, 3), stride=stem_conv_stride,
                             padding=(0, 1, 1), bias=False),
            norm=None, activation=None,
            conv_xy=nn.Conv3d(stem_dim_out, stem_dim_out, kernel_size=(stem_conv_kernel_size[0], 1, 1),
                              stride=(1, 1, 1), padding=(stem_conv_kernel_size[0] // 2, 0, 0), bias=False,
                              groups=stem_dim_out),
        ),
        norm=norm(num_features=stem_dim_out, eps=norm_eps, momentum=norm_momentum),
        activation=activation(),
    )
    blocks.append(stem)
    dim_in, dim_out = stem_dim_out, round_width(8, width_factor)
    dim_inner = int(bottleneck_factor * dim_out)
    branch2 = BottleneckBlock(
        conv_a=nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False),
        norm_a=norm(num_features=dim_inner, eps=norm_eps, momentum=norm_momentum),
        act_a=activation(),
        conv_b=nn.Conv3d(dim_inner, dim_inner, kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=1, bias=False,
                         groups=dim_inner),
        norm_b=nn.Sequential(
            norm(num_features=dim_inner, eps=norm_eps, momentum=norm_momentum),
            SqueezeExcitation(num_channels=dim_inner, num_channels_reduced=round_width(dim_inner, se_ratio),
                              is_3d=True),
        ),
        act_b=inner_act(),
        conv_c=nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False),
        norm_c=norm(num_features=dim_out, eps=norm_eps, momentum=norm_momentum),
    )
    blocks.append(ResBlock(
        branch1_conv=nn.Conv3d(dim_in, dim_out, kernel_size=1, stride=(1, 2, 2), bias=False),
        branch1_norm=norm(num_features=dim_out, eps=norm_eps, momentum=norm_momentum),
        branch2=branch2, activation=activation(), branch_fusion=lambda x, y: x + y,
    ))
    head_pool_kernel = (input_clip_length, int(math.ceil(input_crop_size / 32.0)),
                        int(math.ceil(input_crop_size / 32.0)))
    head = ResNetBasicHead(
        pool=ProjectedPool(
            pre_conv=nn.Conv3d(dim_out, dim_inner, kernel_size=1, bias=False),
            pre_norm=norm(num_features=dim_inner, eps=norm_eps, momentum=norm_momentum),
            pre_act=activation(),
            pool=nn.AvgPool3d(head_pool_kernel, stride=1),
            post_conv=nn.Conv3d(dim_inner, head_dim_out, kernel_size=1, bias=False),
            post_norm=None,
            post_act=head_pool_act(),
        ),
        dropout=nn.Dropout(dropout_rate),
        proj=nn.Linear(head_dim_out, model_num_class, bias=True),
        activation=head_activation(dim=1) if head_activation is not None else None,
        output_pool=nn.AdaptiveAvgPool3d(1) if head_output_with_global_average else None,
    )
    blocks.append(head)
    return Net(blocks=nn.ModuleList(blocks))
"""

_X3D_HUB = '''from typing import Any

import torch.nn as nn
from pytorchvideo.models.x3d import create_x3d
from torch.hub import load_state_dict_from_url


root_dir = "@X3D_ROOT@"
checkpoint_paths = {
    "x3d_xs": f"{root_dir}/X3D_XS.pyth",
    "x3d_s": f"{root_dir}/X3D_S.pyth",
}


def _x3d(pretrained: bool = False, progress: bool = True, checkpoint_path: str = "", **kwargs: Any) -> nn.Module:
    model = create_x3d(**kwargs)
    if pretrained and len(checkpoint_path) > 0:
        checkpoint = load_state_dict_from_url(checkpoint_path, progress=progress, map_location="cpu")
        state_dict = checkpoint["model_state"]
        model.load_state_dict(state_dict)
    return model


def x3d_xs(pretrained: bool = False, progress: bool = True, **kwargs):
    return _x3d(pretrained=pretrained, progress=progress, checkpoint_path=checkpoint_paths["x3d_xs"],
                input_clip_length=4, input_crop_size=16, depth_factor=2.2, **kwargs)


def x3d_s(pretrained: bool = False, progress: bool = True, **kwargs):
    """
    X3D-S model architecture [1] trained on the Kinetics dataset (narrowed).
    """
    return _x3d(pretrained=pretrained, progress=progress, checkpoint_path=checkpoint_paths["x3d_s"],
                input_clip_length=4, input_crop_size=16, depth_factor=2.2, **kwargs)
'''

X3D_FILES: dict[str, str | None] = {
    "hubconf.py": _X3D_HUBCONF,
    "pytorchvideo/__init__.py": "",
    "pytorchvideo/layers/__init__.py": "",
    "pytorchvideo/layers/swish.py": _X3D_SWISH,
    "pytorchvideo/models/__init__.py": "",
    "pytorchvideo/models/x3d.py": _X3D_MODEL,
    "pytorchvideo/models/hub/__init__.py": "from .x3d import x3d_s, x3d_xs\n",
    "pytorchvideo/models/hub/x3d.py": _X3D_HUB,
}
