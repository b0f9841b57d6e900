"""Repositories written like snakers4/silero-models' speech-to-text entrypoint (real-code round 13), narrowed.

Written for tests/integration/test_real_hub_zoo13.py, not taken from upstream: the *pattern* of the
upstream code, small enough to run in the sandbox in seconds.

- ``SILERO_FILES``: ``hubconf.py`` imports ``silero_stt`` from ``src/silero``; ``init_jit_model`` makes a
  ``model`` directory *next to its own module* (``os.makedirs(os.path.join(os.path.dirname(__file__),
  "model"), exist_ok=True)``) and downloads the model into it with ``torch.hub.download_url_to_file``.
  Under torch.hub the checkout is writable; securehub's tree is the pinned content, so the ``mkdir`` is
  refused before anything is fetched.
- ``SILERO_FORK_FILES``: the fork the refusal's message describes: the same code writing under
  ``torch.hub.get_dir()`` (writable in the sandbox), the model a plain state dict.
- ``SWAG_FILES``: facebookresearch/SWAG's RegNetY (its ``models`` package; torchvision's RegNet is built the
  same way): ``AnyStage(nn.Sequential)`` adds its blocks with ``self.add_module(f"block{stage_index}-{i}",
  block)``, so every state name holds a hyphen (``trunk_output.block1.block1-0.f.a.weight``); squeeze-
  excitation, an ``Enum`` of checkpoint URLs, ``build_model(cls, url, pretrained, **kwargs)``, the
  trunk without a head (``num_classes=None``).
- ``EFFNET_FILES``: lukemelas/EfficientNet-PyTorch: entrypoints made by ``locals()[name] =
  _create_model_fn(name)`` in a loop, every conv a ``Conv2dStaticSamePadding`` holding its
  ``nn.ZeroPad2d`` as a child, ``MemoryEfficientSwish`` (a custom ``autograd.Function``),
  ``from_pretrained`` dropping the head's weights when ``num_classes != 1000`` (``strict=False``, the
  missing keys asserted) and ``_change_in_channels`` replacing the stem after loading; and upstream's
  ``pretrained=None`` branch, which passes ``override_params={...}`` as one keyword and raises
  ``ValueError`` under torch.hub too.
"""

from __future__ import annotations

_SILERO_HUBCONF = """dependencies = ["torch"]

import sys

from src.silero import silero_stt

__all__ = ["silero_stt"]

sys.path.append("src/silero")
"""

_SILERO_INIT = """from .silero import silero_stt
"""

_SILERO_MODULE = '''import os

import torch

MODELS = {"en": {"latest": {"jit": "@STT_EN@"}}}


def silero_stt(language="en", version="latest", jit_model="jit", **kwargs):
    """Silero Speech-To-Text Model(s)
    language (str): language of the model, now available are ['en']
    """
    from .utils import init_jit_model

    assert language in MODELS
    return init_jit_model(model_url=MODELS[language][version][jit_model], **kwargs)
'''

_SILERO_UTILS = """import os

import torch
from torch import nn


class TinySTT(nn.Module):
    def __init__(self, n_mels=8, n_labels=5):
        super().__init__()
        self.conv = nn.Conv1d(n_mels, 16, 3, padding=1)
        self.head = nn.Linear(16, n_labels)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).transpose(1, 2)).log_softmax(-1)


def init_jit_model(model_url, device=torch.device("cpu")):
    torch.set_grad_enabled(False)

    model_dir = os.path.join(@MODEL_ROOT@, "model")
    os.makedirs(model_dir, exist_ok=True)
    model_path = os.path.join(model_dir, os.path.basename(model_url))

    if not os.path.isfile(model_path):
        torch.hub.download_url_to_file(model_url, model_path, progress=True)

    model = TinySTT()
    model.load_state_dict(torch.load(model_path, map_location=device))
    model.eval()
    return model
"""

#: upstream: the directory of ``src/silero/utils.py``, inside the repository
_IN_THE_TREE = "os.path.dirname(__file__)"
#: the fork: the hub directory, writable in the sandbox
_IN_THE_HUB_DIR = 'os.path.join(torch.hub.get_dir(), "snakers4_silero-models_master")'

SILERO_FILES: dict[str, str | None] = {
    "hubconf.py": _SILERO_HUBCONF,
    "src/__init__.py": "",
    "src/silero/__init__.py": _SILERO_INIT,
    "src/silero/silero.py": _SILERO_MODULE,
    "src/silero/utils.py": _SILERO_UTILS.replace("@MODEL_ROOT@", _IN_THE_TREE),
}

SILERO_FORK_FILES: dict[str, str | None] = {
    **SILERO_FILES,
    "src/silero/utils.py": _SILERO_UTILS.replace("@MODEL_ROOT@", _IN_THE_HUB_DIR),
}

_SWAG_HUBCONF = """dependencies = ["torch"]

from models import regnety_16gf, regnety_16gf_in1k
"""

_SWAG_MODELS_INIT = """from enum import Enum

from torch.hub import load_state_dict_from_url

from .regnet import RegNetY16gf


class ModelCheckpoints(Enum):
    regnety_16gf = "@REGNETY_16GF@"
    regnety_16gf_in1k = "@REGNETY_16GF_IN1K@"


IN1K_CLASSES = 1000


def build_model(cls, checkpoint_path, pretrained=True, progress=True, **kwargs):
    model = cls(**kwargs)
    if pretrained:
        checkpoint = load_state_dict_from_url(checkpoint_path, progress=progress)
        model.load_state_dict(checkpoint)
    return model


def regnety_16gf(pretrained=True, progress=True, **kwargs):
    return build_model(RegNetY16gf, ModelCheckpoints.regnety_16gf.value, num_classes=None,
                       pretrained=pretrained, progress=progress, **kwargs)


def regnety_16gf_in1k(pretrained=True, progress=True, **kwargs):
    return build_model(RegNetY16gf, ModelCheckpoints.regnety_16gf_in1k.value, num_classes=IN1K_CLASSES,
                       pretrained=pretrained, progress=progress, **kwargs)
"""

_SWAG_REGNET = '''from collections import OrderedDict

import torch.nn as nn


class SqueezeExcitation(nn.Module):
    def __init__(self, in_planes, reduction_ratio=16, reduced_planes=None, activation=None):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        reduced_planes = in_planes // reduction_ratio if reduced_planes is None else reduced_planes
        self.excitation = nn.Sequential(
            nn.Conv2d(in_planes, reduced_planes, kernel_size=1, stride=1, bias=True),
            nn.ReLU() if activation is None else activation,
            nn.Conv2d(reduced_planes, in_planes, kernel_size=1, stride=1, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.excitation(self.avgpool(x))


class BottleneckTransform(nn.Sequential):
    def __init__(self, width_in, width_out, stride, group_width, se_ratio):
        super().__init__()
        g = width_out // group_width
        self.a = nn.Conv2d(width_in, width_out, 1, bias=False)
        self.a_bn = nn.BatchNorm2d(width_out)
        self.a_act = nn.ReLU(inplace=True)
        self.b = nn.Conv2d(width_out, width_out, 3, stride=stride, padding=1, groups=g, bias=False)
        self.b_bn = nn.BatchNorm2d(width_out)
        self.b_act = nn.ReLU(inplace=True)
        self.se = SqueezeExcitation(width_out, reduced_planes=int(round(se_ratio * width_in)))
        self.c = nn.Conv2d(width_out, width_out, 1, bias=False)
        self.final_bn = nn.BatchNorm2d(width_out)
        self.depth = 3


class ResBottleneckBlock(nn.Module):
    def __init__(self, width_in, width_out, stride, group_width, se_ratio):
        super().__init__()
        self.proj_block = width_in != width_out or stride != 1
        if self.proj_block:
            self.proj = nn.Conv2d(width_in, width_out, 1, stride=stride, bias=False)
            self.bn = nn.BatchNorm2d(width_out)
        self.f = BottleneckTransform(width_in, width_out, stride, group_width, se_ratio)
        self.activation = nn.ReLU(inplace=True)
        self.depth = self.f.depth

    def forward(self, x):
        if self.proj_block:
            x = self.bn(self.proj(x)) + self.f(x)
        else:
            x = x + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    """AnyNet stage (sequence of blocks w/ the same output shape)."""

    def __init__(self, width_in, width_out, stride, depth, group_width, se_ratio, stage_index=0):
        super().__init__()
        self.stage_depth = 0
        for i in range(depth):
            block = ResBottleneckBlock(width_in if i == 0 else width_out, width_out, stride if i == 0 else 1,
                                       group_width, se_ratio)
            self.stage_depth += block.depth
            self.add_module(f"block{stage_index}-{i}", block)


class RegNet(nn.Module):
    def __init__(self, depths, widths, group_width, num_classes=None, stem_width=8, se_ratio=0.25):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True))
        current_width = stem_width
        blocks = []
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks.append((f"block{i + 1}", AnyStage(current_width, width, 2, depth, group_width, se_ratio,
                                                     stage_index=i + 1)))
            current_width = width
        self.trunk_output = nn.Sequential(OrderedDict(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.head = None if num_classes is None else nn.Linear(current_width, num_classes)

    def forward(self, x):
        x = self.avgpool(self.trunk_output(self.stem(x))).flatten(start_dim=1)
        return x if self.head is None else self.head(x)


class RegNetY16gf(RegNet):
    def __init__(self, **kwargs):
        super().__init__(depths=[1, 2], widths=[8, 16], group_width=4, **kwargs)
'''

SWAG_FILES: dict[str, str | None] = {
    "hubconf.py": _SWAG_HUBCONF,
    "models/__init__.py": _SWAG_MODELS_INIT,
    "models/regnet.py": _SWAG_REGNET,
}

_EFFNET_HUBCONF = '''from efficientnet_pytorch import EfficientNet as _EfficientNet

dependencies = ['torch']


def _create_model_fn(model_name):
    def _model_fn(num_classes=1000, in_channels=3, pretrained='imagenet'):
        """Create Efficient Net.

        pretrained (str, optional): One of [None, 'imagenet', 'advprop']
        """
        model_name_ = model_name.replace('_', '-')
        if pretrained is not None:
            model = _EfficientNet.from_pretrained(
                model_name=model_name_,
                advprop=(pretrained == 'advprop'),
                num_classes=num_classes,
                in_channels=in_channels)
        else:
            model = _EfficientNet.from_name(
                model_name=model_name_,
                override_params={'num_classes': num_classes},
            )
            model._change_in_channels(in_channels)
        return model
    return _model_fn


for model_name in ['efficientnet_b0']:
    locals()[model_name] = _create_model_fn(model_name)
'''

_EFFNET_INIT = """from .model import EfficientNet
"""

_EFFNET_UTILS = '''import collections
import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils import model_zoo

GlobalParams = collections.namedtuple('GlobalParams', ['image_size', 'num_classes', 'width'])
GlobalParams.__new__.__defaults__ = (None,) * len(GlobalParams._fields)


class SwishImplementation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, i):
        result = i * torch.sigmoid(i)
        ctx.save_for_backward(i)
        return result

    @staticmethod
    def backward(ctx, grad_output):
        i = ctx.saved_tensors[0]
        sigmoid_i = torch.sigmoid(i)
        return grad_output * (sigmoid_i * (1 + i * (1 - sigmoid_i)))


class MemoryEfficientSwish(nn.Module):
    def forward(self, x):
        return SwishImplementation.apply(x)


class Conv2dStaticSamePadding(nn.Conv2d):
    """2D Convolutions like TensorFlow's 'SAME' mode, with the given input image size."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, image_size=None, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, **kwargs)
        self.stride = self.stride if len(self.stride) == 2 else [self.stride[0]] * 2
        ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
        kh, kw = self.weight.size()[-2:]
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        pad_h = max((oh - 1) * self.stride[0] + (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pad_w = max((ow - 1) * self.stride[1] + (kw - 1) * self.dilation[1] + 1 - iw, 0)
        if pad_h > 0 or pad_w > 0:
            self.static_padding = nn.ZeroPad2d((pad_w // 2, pad_w - pad_w // 2,
                                                pad_h // 2, pad_h - pad_h // 2))
        else:
            self.static_padding = nn.Identity()

    def forward(self, x):
        x = self.static_padding(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def get_same_padding_conv2d(image_size=None):
    from functools import partial
    return partial(Conv2dStaticSamePadding, image_size=image_size)


def efficientnet_params(model_name):
    return {'efficientnet-b0': (8, 224)}[model_name]


url_map = {
    'efficientnet-b0': '@EFFNET_B0@',
}

url_map_advprop = {
    'efficientnet-b0': '@EFFNET_B0@',
}


def load_pretrained_weights(model, model_name, weights_path=None, load_fc=True, advprop=False, verbose=True):
    if isinstance(weights_path, str):
        state_dict = torch.load(weights_path)
    else:
        url_map_ = url_map_advprop if advprop else url_map
        state_dict = model_zoo.load_url(url_map_[model_name])

    if load_fc:
        ret = model.load_state_dict(state_dict, strict=False)
        assert not ret.missing_keys, 'Missing keys when loading pretrained weights: {}'.format(ret.missing_keys)
    else:
        state_dict.pop('_fc.weight')
        state_dict.pop('_fc.bias')
        ret = model.load_state_dict(state_dict, strict=False)
        assert set(ret.missing_keys) == set(
            ['_fc.weight', '_fc.bias']), 'Missing keys when loading pretrained weights: {}'.format(ret.missing_keys)
    assert not ret.unexpected_keys, 'Missing keys when loading pretrained weights: {}'.format(ret.unexpected_keys)

    if verbose:
        print('Loaded pretrained weights for {}'.format(model_name))
'''

_EFFNET_MODEL = """from torch import nn

from .utils import (GlobalParams, MemoryEfficientSwish, efficientnet_params, get_same_padding_conv2d,
                    load_pretrained_weights)


class EfficientNet(nn.Module):
    def __init__(self, global_params=None):
        super().__init__()
        self._global_params = global_params
        width, image_size = global_params.width, global_params.image_size
        Conv2d = get_same_padding_conv2d(image_size=image_size)
        self._conv_stem = Conv2d(3, width, kernel_size=3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(num_features=width, momentum=0.01, eps=1e-3)
        Conv2d = get_same_padding_conv2d(image_size=image_size // 2)
        self._depthwise_conv = Conv2d(width, width, kernel_size=3, stride=2, groups=width, bias=False)
        self._bn1 = nn.BatchNorm2d(num_features=width, momentum=0.01, eps=1e-3)
        self._conv_head = get_same_padding_conv2d(image_size=image_size // 4)(width, 2 * width, 1, bias=False)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(2 * width, global_params.num_classes)
        self._swish = MemoryEfficientSwish()

    def forward(self, inputs):
        x = self._swish(self._bn0(self._conv_stem(inputs)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        x = self._avg_pooling(self._swish(self._conv_head(x))).flatten(start_dim=1)
        return self._fc(self._dropout(x))

    @classmethod
    def from_name(cls, model_name, in_channels=3, **override_params):
        width, image_size = efficientnet_params(model_name)
        params = dict(width=width, image_size=image_size, num_classes=1000)
        unexpected = set(override_params) - set(GlobalParams._fields)
        if unexpected:
            raise ValueError(f'Got unexpected field names: {sorted(unexpected)!r}')
        params.update(override_params)
        model = cls(GlobalParams(**params))
        model._change_in_channels(in_channels)
        return model

    @classmethod
    def from_pretrained(cls, model_name, weights_path=None, advprop=False,
                        in_channels=3, num_classes=1000, **override_params):
        model = cls.from_name(model_name, num_classes=num_classes, **override_params)
        load_pretrained_weights(model, model_name, weights_path=weights_path,
                                load_fc=(num_classes == 1000), advprop=advprop)
        model._change_in_channels(in_channels)
        return model

    def _change_in_channels(self, in_channels):
        if in_channels != 3:
            Conv2d = get_same_padding_conv2d(image_size=self._global_params.image_size)
            out_channels = self._global_params.width
            self._conv_stem = Conv2d(in_channels, out_channels, kernel_size=3, stride=2, bias=False)
"""

EFFNET_FILES: dict[str, str | None] = {
    "hubconf.py": _EFFNET_HUBCONF,
    "efficientnet_pytorch/__init__.py": _EFFNET_INIT,
    "efficientnet_pytorch/utils.py": _EFFNET_UTILS,
    "efficientnet_pytorch/model.py": _EFFNET_MODEL,
}
