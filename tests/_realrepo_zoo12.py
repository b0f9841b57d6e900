# ruff: noqa: E501  (repository code written in the upstream style, long lines included)
"""Generated repositories in the style of NVIDIA/DeepLearningExamples' GPUNet, ConvNets EfficientNet and
Tacotron2 entrypoints, and of snakers4/silero-models' TTS models shipped as ``torch.package`` archives
(real-code round 12).

The file texts for tests/integration/test_real_hub_zoo12.py (see its docstring). Each follows the
public repository's hubconf and model code, written anew and narrowed (few channels, few layers) so
the suite stays fast. Placeholders ``@NAME@`` are replaced by the test (artifact URLs).
"""

from __future__ import annotations

import json

__all__ = ["EFFNET_FILES", "GPUNET_CONFIG", "GPUNET_FILES", "SILERO_FILES", "SILERO_VENDORED_FILES", "TACOTRON2_CONFIG",
           "TACOTRON2_FILES", "TTS_PACKAGE_SOURCE"]  # fmt: skip

# --------------------------------------------------------------------------------------------------
# NVIDIA/DeepLearningExamples PyTorch/Classification/GPUNet ``nvidia_gpunet(pretrained, model_type=...)``:
# the network is assembled from a JSON model description shipped in the repository
# (``configs/batch1/GV100/0.65ms.json``, read with ``json.load(open(...))`` next to the module): a list
# of layer dicts whose ``"layer_type"`` string picks the class (``data``, ``head``, ``conv``, ``irb``,
# ``fused_irb``, ``tail``); activations named by strings; layers added with ``add_module`` under names
# holding spaces and colons (``"head: 1"``, ``"stage: 2 layer3"``, ``" layer6"`` with a leading space), so
# every state key does too; the builder returns the net in eval mode. Upstream fetches an NGC zip with
# ``urllib`` into the repository and loads it with timm's ``load_checkpoint(use_ema=True)``; this fork
# reads the ``.pth.tar`` with ``torch.hub.load_state_dict_from_url`` and picks ``state_dict_ema`` the way
# timm does. The hubconf imports from a namespace package path (no ``__init__.py`` above the model).
# Narrowed: 32x32 images, 8-16 channels, 10 classes.
# --------------------------------------------------------------------------------------------------
GPUNET_CONFIG = [
    {"layer_type": "data", "img_resolution": 32, "distill": False},
    {"layer_type": "head", "num_in_channels": 3, "num_out_channels": 8, "stage": 0, "act": "swish"},
    {
        "layer_type": "conv",
        "num_in_channels": 8,
        "num_out_channels": 8,
        "stage": 1,
        "kernel_size": 3,
        "stride": 1,
        "act": "swish",
    },
    {
        "layer_type": "fused_irb",
        "num_in_channels": 8,
        "num_out_channels": 8,
        "stage": 2,
        "kernel_size": 3,
        "stride": 2,
        "expansion": 2,
        "use_se": False,
        "act": "swish",
    },
    {
        "layer_type": "irb",
        "num_in_channels": 8,
        "num_out_channels": 16,
        "stage": 3,
        "kernel_size": 3,
        "stride": 2,
        "expansion": 2,
        "use_se": True,
        "act": "relu",
    },
    {
        "layer_type": "irb",
        "num_in_channels": 16,
        "num_out_channels": 16,
        "stage": 3,
        "kernel_size": 5,
        "stride": 1,
        "expansion": 2,
        "use_se": True,
        "act": "relu",
    },
    {"layer_type": "tail", "num_in_channels": 16, "num_out_channels": 32, "num_classes": 10},
]

_GPUNET_HUBCONF = """dependencies = ["torch"]

from PyTorch.Classification.GPUNet.configs.gpunet_torchhub import nvidia_gpunet  # noqa: E402,F401
"""

_GPUNET_TORCHHUB = '''import os
import torch


def nvidia_gpunet(pretrained=True, **kwargs):
    """Constructs a gpunet model (nn.module with additional infer(input) method).
    Args (type[, default value]):
        pretrained (bool, True): If True, returns a pretrained model.
        model_math (str, 'fp32'): returns a model in given precision ('fp32' or 'fp16').
        model_type (str, 'GPUNet-0'): loads selected model type GPUNet-1.... Defaults to GPUNet-0
    """
    from ..models.gpunet_builder import GPUNet_Builder
    from .model_hub import get_configs, MODEL_ZOO_NAME2TYPE_B1

    modelType = kwargs.get("model_type", "GPUNet-0")
    print("model_type=", modelType)
    errMsg = "model_type {} not found, available models are {}".format(modelType, list(MODEL_ZOO_NAME2TYPE_B1.keys()))
    assert modelType in MODEL_ZOO_NAME2TYPE_B1.keys(), errMsg

    modelLatency = MODEL_ZOO_NAME2TYPE_B1[modelType]
    print("mapped model latency=", modelLatency)
    modelJSON, cpkUrl = get_configs(batch=1, latency=modelLatency, gpuType="GV100", config_root_dir=os.path.dirname(__file__))

    builder = GPUNet_Builder()
    model = builder.get_model(modelJSON)

    if pretrained:
        checkpoint = torch.hub.load_state_dict_from_url(cpkUrl, map_location="cpu", progress=False)
        # what timm's load_checkpoint(model, path, use_ema=True) does
        state_dict_key = "state_dict_ema" if "state_dict_ema" in checkpoint else "state_dict"
        state_dict = {(k[7:] if k.startswith("module.") else k): v for k, v in checkpoint[state_dict_key].items()}
        model.load_state_dict(state_dict)

    modelMath = kwargs.get("model_math", "fp32")
    modelMath = torch.float16 if modelMath == "fp16" else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device, modelMath)
    return model
'''

_GPUNET_MODEL_HUB = '''import json

MODEL_ZOO_KEYS_B1_NGC = {}
MODEL_ZOO_KEYS_B1_NGC["GV100"] = {}
# GPUNet-0: 0.62ms on GV100
MODEL_ZOO_KEYS_B1_NGC["GV100"]["0.65ms"] = "@GPUNET_0@"
MODEL_ZOO_BATCH_NGC = {"1": MODEL_ZOO_KEYS_B1_NGC}

MODEL_ZOO_NAME2TYPE_B1 = {}
MODEL_ZOO_NAME2TYPE_B1["GPUNet-0"] = "0.65ms"


def get_configs(batch=1, latency="GPUNet_1ms", gpuType="GV100", config_root_dir="./configs"):
    """The model description (JSON, shipped with the repository) and the checkpoint URL."""
    batch = str(batch)
    assert batch in MODEL_ZOO_BATCH_NGC.keys(), "Batch {} not found".format(batch)
    assert gpuType in MODEL_ZOO_BATCH_NGC[batch].keys(), "GPU {} not found".format(gpuType)
    assert latency in MODEL_ZOO_BATCH_NGC[batch][gpuType].keys(), "Latency {} not found".format(latency)
    configPath = config_root_dir + "/batch" + str(batch)
    configPath += "/" + gpuType + "/" + latency + ".json"
    with open(configPath) as configFile:
        modelJSON = json.load(configFile)
        configFile.close()
    return modelJSON, MODEL_ZOO_BATCH_NGC[batch][gpuType][latency]
'''

_GPUNET_MODULES = '''import torch
import torch.nn as nn
import torch.nn.functional as F


def get_act(act_layer):
    """Activation class by name, as the JSON names it."""
    return {"swish": nn.SiLU, "silu": nn.SiLU, "relu": nn.ReLU, "hard_swish": nn.Hardswish}[act_layer]


def drop_path(x, drop_prob: float = 0.0, training: bool = False):
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    random_tensor.floor_()
    return x.div(keep_prob) * random_tensor


def make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class SqueezeExcite(nn.Module):
    def __init__(self, in_chs, se_ratio=0.25, act_layer=nn.ReLU, gate_fn=torch.sigmoid, divisor=1):
        super(SqueezeExcite, self).__init__()
        reduced_chs = make_divisible(in_chs * se_ratio, divisor)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)
        self.gate_fn = gate_fn

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.conv_reduce(x_se)
        x_se = self.act1(x_se)
        x_se = self.conv_expand(x_se)
        return x * self.gate_fn(x_se)


class ConvBnAct(nn.Module):
    def __init__(self, in_chs, out_chs, kernel_size, stride=1, dilation=1, skip=False, act_layer="relu", drop_path_rate=0.0):
        super(ConvBnAct, self).__init__()
        self.has_residual = skip and stride == 1 and in_chs == out_chs
        self.drop_path_rate = drop_path_rate
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=kernel_size // 2, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs, eps=0.001)
        self.act1 = get_act(act_layer)(inplace=True)

    def forward(self, x):
        shortcut = x
        x = self.act1(self.bn1(self.conv(x)))
        if self.has_residual:
            x = drop_path(x, self.drop_path_rate, self.training) + shortcut
        return x


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: point-wise expansion, depth-wise conv, optional SE, linear point-wise."""

    def __init__(self, in_chs, out_chs, dw_kernel_size=3, stride=1, exp_ratio=1.0, use_se=False, act_layer="relu", drop_path_rate=0.0):
        super(InvertedResidual, self).__init__()
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.has_residual = in_chs == out_chs and stride == 1
        self.drop_path_rate = drop_path_rate
        act = get_act(act_layer)
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs, eps=0.001)
        self.act1 = act(inplace=True)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride=stride, padding=dw_kernel_size // 2, groups=mid_chs, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_chs, eps=0.001)
        self.act2 = act(inplace=True)
        self.se = SqueezeExcite(mid_chs, se_ratio=0.25 / exp_ratio * exp_ratio, act_layer=act) if use_se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs, eps=0.001)

    def forward(self, x):
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        x = self.se(x)
        x = self.bn3(self.conv_pwl(x))
        if self.has_residual:
            x = drop_path(x, self.drop_path_rate, self.training) + shortcut
        return x


class EdgeResidual(nn.Module):
    """Fused IRB: one full expansion conv instead of point-wise + depth-wise."""

    def __init__(self, in_chs, out_chs, exp_kernel_size=3, stride=1, dilation=1, pad_type="same", exp_ratio=1.0, use_se=False, act_layer="relu", drop_path_rate=0.0):
        super(EdgeResidual, self).__init__()
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.has_residual = in_chs == out_chs and stride == 1
        self.drop_path_rate = drop_path_rate
        act = get_act(act_layer)
        padding = exp_kernel_size // 2 if pad_type == "same" else 0
        self.conv_exp = nn.Conv2d(in_chs, mid_chs, exp_kernel_size, stride=stride, padding=padding, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_chs, eps=0.001)
        self.act1 = act(inplace=True)
        self.se = SqueezeExcite(mid_chs, act_layer=act) if use_se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs, eps=0.001)

    def forward(self, x):
        shortcut = x
        x = self.act1(self.bn1(self.conv_exp(x)))
        x = self.se(x)
        x = self.bn2(self.conv_pwl(x))
        if self.has_residual:
            x = drop_path(x, self.drop_path_rate, self.training) + shortcut
        return x


class Prologue(nn.Module):
    def __init__(self, num_in_channels, num_out_channels, act_layer="relu"):
        super().__init__()
        self.num_in_channels = num_in_channels
        self.net = nn.Sequential(
            nn.Conv2d(num_in_channels, num_out_channels, 3, padding=1, stride=2, bias=False),
            nn.BatchNorm2d(num_out_channels, eps=1e-03),
            get_act(act_layer)(inplace=True),
        )

    def forward(self, x):
        return self.net(x)


class Epilogue(nn.Module):
    def __init__(self, num_in_channels, num_out_channels, num_classes, act_layer="relu"):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(num_in_channels, num_out_channels, 1, bias=False),
            nn.BatchNorm2d(num_out_channels, eps=1e-03),
            get_act(act_layer)(inplace=True),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Dropout(p=0.2),
            nn.Linear(num_out_channels, num_classes),
        )

    def forward(self, x):
        return self.net(x)
'''

_GPUNET_BUILDER = """import torch.nn as nn

from .gpunet_modules import ConvBnAct, EdgeResidual, Epilogue, InvertedResidual, Prologue


class GPUNet(nn.Module):
    def __init__(self, imgRes):
        super(GPUNet, self).__init__()
        self.imgRes = imgRes
        self.network = nn.Sequential()

    def add_layer(self, name, layer):
        self.network.add_module(name, layer)

    def forward(self, x):
        return self.network(x)


class GPUNet_Builder:
    def config_checker(self, layerConfig):
        assert "layer_type" in layerConfig.keys()
        layerType = layerConfig["layer_type"]
        if layerType in ("head", "tail", "irb"):
            assert "num_in_channels" in layerConfig.keys()
            assert "num_out_channels" in layerConfig.keys()
        if layerType == "tail":
            assert "num_classes" in layerConfig.keys()
        if layerType == "irb":
            assert "kernel_size" in layerConfig.keys()
            assert "expansion" in layerConfig.keys()
            assert "stride" in layerConfig.keys()

    def get_model(self, config=None):
        msg = "the model json needs specify whether a distilled model or not."
        assert "distill" in config[0].keys(), msg
        if config[0]["distill"]:
            raise NotImplementedError("distilled GPUNets are not part of this fork")
        return self._get_model(config)

    def _get_model(self, config=None):
        assert len(config) > 0
        dataLayer = config[0]
        assert dataLayer["layer_type"] == "data"
        assert dataLayer["img_resolution"] > 0
        imgRes = dataLayer["img_resolution"]

        net = GPUNet(imgRes)
        dropPathRateBase = 0.2
        layerCount = len(config) - 1
        layerCounter = 0
        for layerConfig in config:
            dropPathRate = dropPathRateBase * layerCounter / layerCount
            layerCounter = layerCounter + 1
            self.config_checker(layerConfig)
            layerType = layerConfig["layer_type"]
            if layerType == "head":
                name = "head: " + str(layerCounter)
                layer = Prologue(num_in_channels=layerConfig["num_in_channels"], num_out_channels=layerConfig["num_out_channels"], act_layer=layerConfig.get("act", "swish"))
                net.add_layer(name, layer)
            elif layerType == "tail":
                name = " layer" + str(layerCounter)
                layer = Epilogue(num_in_channels=layerConfig["num_in_channels"], num_out_channels=layerConfig["num_out_channels"], num_classes=layerConfig["num_classes"])
                net.add_layer(name, layer)
            elif layerType == "conv":
                name = "stage: " + str(layerConfig["stage"]) + " layer"
                name += str(layerCounter)
                layer = ConvBnAct(in_chs=layerConfig["num_in_channels"], out_chs=layerConfig["num_out_channels"], kernel_size=layerConfig["kernel_size"], stride=layerConfig["stride"], act_layer=layerConfig["act"], drop_path_rate=dropPathRate)
                net.add_layer(name, layer)
            elif layerType == "irb":
                name = "stage: " + str(layerConfig["stage"]) + " layer"
                name += str(layerCounter)
                layer = InvertedResidual(in_chs=layerConfig["num_in_channels"], out_chs=layerConfig["num_out_channels"], dw_kernel_size=layerConfig["kernel_size"], stride=layerConfig["stride"], exp_ratio=layerConfig["expansion"], use_se=layerConfig["use_se"], act_layer=layerConfig["act"], drop_path_rate=dropPathRate)
                net.add_layer(name, layer)
            elif layerType == "fused_irb":
                name = "stage: " + str(layerConfig["stage"]) + " layer"
                name += str(layerCounter)
                layer = EdgeResidual(in_chs=layerConfig["num_in_channels"], out_chs=layerConfig["num_out_channels"], exp_kernel_size=layerConfig["kernel_size"], stride=layerConfig["stride"], dilation=1, pad_type="same", exp_ratio=layerConfig["expansion"], use_se=layerConfig["use_se"], act_layer=layerConfig["act"], drop_path_rate=dropPathRate)
                net.add_layer(name, layer)
            elif layerType == "data":
                net.imgRes = layerConfig["img_resolution"]
            else:
                raise NotImplementedError
        net.eval()
        return net
"""

_GPU = "PyTorch/Classification/GPUNet"
GPUNET_FILES: dict[str, str | None] = {
    "hubconf.py": _GPUNET_HUBCONF,
    f"{_GPU}/configs/gpunet_torchhub.py": _GPUNET_TORCHHUB,
    f"{_GPU}/configs/model_hub.py": _GPUNET_MODEL_HUB,
    f"{_GPU}/configs/batch1/GV100/0.65ms.json": json.dumps(GPUNET_CONFIG, indent=4) + "\n",
    f"{_GPU}/models/gpunet_builder.py": _GPUNET_BUILDER,
    f"{_GPU}/models/gpunet_modules.py": _GPUNET_MODULES,
}

# --------------------------------------------------------------------------------------------------
# NVIDIA/DeepLearningExamples PyTorch/Classification/ConvNets ``nvidia_efficientnet_b0`` and
# ``nvidia_efficientnet_widese_b0``: the hubconf's entrypoints are *callable instances*
# (``EntryPoint.create(name, model)`` objects with ``__call__`` and an instance ``__doc__``), the
# architecture is an ``EffNetArch`` dataclass (its ``block`` a function, widese made with
# ``dataclasses.replace(arch, block=widese_mbconv)``), the constructor's keywords come from
# ``asdict(replace(EffNetParams(...), **kwargs))``, layers are built by a ``LayerBuilder`` holding a
# nested dataclass ``Config`` (kept on the model as ``self.builder``), activations from a dict of
# lambdas, ``self.residual_add = torch.add`` (a torch function as a plain attribute) or a
# ``StochasticDepthResidual``; ``try: from pytorch_quantization ... except ImportError:
# warnings.warn(...)`` at import. The checkpoint's keys are remapped by a function chosen from the
# URL's version component (``url.split("/")[8]``: old ``layer1.*`` keys become ``layers.0.*``),
# ``module.`` stripped, and the squeeze-excitation weights, stored 4-D (1x1 convolutions), reshaped to
# the ``nn.Linear`` layout. ``nvidia_convnets_processing_utils`` returns a ``Processing`` helper object
# (upstream imports PIL, torchvision, requests and validators first). Narrowed: three stages of 8-16
# channels, 32 feature channels, 10 classes.
# --------------------------------------------------------------------------------------------------
_EFFNET_HUBCONF = """dependencies = ["torch"]

from PyTorch.Classification.ConvNets.image_classification.models import (  # noqa: E402,F401
    efficientnet_b0 as nvidia_efficientnet_b0,
    efficientnet_widese_b0 as nvidia_efficientnet_widese_b0,
)
from PyTorch.Classification.ConvNets.image_classification.models.entrypoints import (  # noqa: E402,F401
    nvidia_convnets_processing_utils,
)
"""

_EFFNET_INIT = """from .efficientnet import efficientnet_b0, efficientnet_widese_b0  # noqa: F401
"""

_EFFNET_COMMON = """from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


class LayerBuilder(object):
    @dataclass
    class Config:
        activation: str = "relu"
        conv_init: str = "fan_in"
        bn_momentum: Optional[float] = None
        bn_epsilon: Optional[float] = None

    def __init__(self, config: "LayerBuilder.Config"):
        self.config = config

    def conv(self, kernel_size, in_planes, out_planes, groups=1, stride=1, bn=False, zero_init_bn=False, act=False):
        conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, groups=groups, stride=stride, padding=int((kernel_size - 1) / 2), bias=False)
        nn.init.kaiming_normal_(conv.weight, mode=self.config.conv_init, nonlinearity="relu")
        layers = [("conv", conv)]
        if bn:
            layers.append(("bn", self.batchnorm(out_planes, zero_init_bn)))
        if act:
            layers.append(("act", self.activation()))
        if bn or act:
            return nn.Sequential(OrderedDict(layers))
        return conv

    def convDepSep(self, kernel_size, in_planes, out_planes, stride=1, bn=False, act=False):
        return self.conv(kernel_size, in_planes, out_planes, groups=in_planes, stride=stride, bn=bn, act=act)

    def conv3x3(self, in_planes, out_planes, stride=1, groups=1, bn=False, act=False):
        return self.conv(3, in_planes, out_planes, groups=groups, stride=stride, bn=bn, act=act)

    def conv1x1(self, in_planes, out_planes, stride=1, groups=1, bn=False, act=False):
        return self.conv(1, in_planes, out_planes, groups=groups, stride=stride, bn=bn, act=act)

    def batchnorm(self, planes, zero_init=False):
        bn_cfg = {}
        if self.config.bn_momentum is not None:
            bn_cfg["momentum"] = self.config.bn_momentum
        if self.config.bn_epsilon is not None:
            bn_cfg["eps"] = self.config.bn_epsilon
        bn = nn.BatchNorm2d(planes, **bn_cfg)
        nn.init.constant_(bn.weight, 0 if zero_init else 1)
        nn.init.constant_(bn.bias, 0)
        return bn

    def activation(self):
        return {
            "silu": lambda: nn.SiLU(inplace=True),
            "relu": lambda: nn.ReLU(inplace=True),
            "onnx-silu": ONNXSiLU,
        }[self.config.activation]()


class ONNXSiLU(nn.Module):
    def __init__(self, *args, **kwargs):
        super(ONNXSiLU, self).__init__()

    def forward(self, x):
        return x * torch.sigmoid(x)


class SqueezeAndExcitation(nn.Module):
    def __init__(self, in_channels, squeeze, activation):
        super(SqueezeAndExcitation, self).__init__()
        self.squeeze = nn.Linear(in_channels, squeeze)
        self.expand = nn.Linear(squeeze, in_channels)
        self.activation = activation
        self.sigmoid = nn.Sigmoid()

    def _attention(self, x):
        out = torch.mean(x, [2, 3])
        out = self.squeeze(out)
        out = self.activation(out)
        out = self.expand(out)
        out = self.sigmoid(out)
        out = out.unsqueeze(2).unsqueeze(3)
        return out


class SequentialSqueezeAndExcitation(SqueezeAndExcitation):
    def __init__(self, in_channels, squeeze, activation, quantized=False):
        super().__init__(in_channels, squeeze, activation)
        self.quantized = quantized

    def forward(self, x):
        return self._attention(x) * x


class StochasticDepthResidual(nn.Module):
    def __init__(self, survival_prob: float):
        super().__init__()
        self.survival_prob = survival_prob
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return torch.add(residual, other=x)
        with torch.no_grad():
            mask = torch.bernoulli(self.mask.expand(x.shape[0]).float().fill_(self.survival_prob)).view(-1, 1, 1, 1)
        return torch.addcmul(residual, mask, x, value=1.0 / self.survival_prob)


class Flatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(-1).squeeze(-1)
"""

_EFFNET_MODEL = '''from dataclasses import dataclass, asdict, replace
from typing import Optional, Callable
import os

import torch


@dataclass
class ModelArch:
    pass


@dataclass
class ModelParams:
    pass


@dataclass
class Model:
    constructor: Callable
    arch: ModelArch
    params: Optional[ModelParams]
    checkpoint_url: Optional[str] = None


def torchhub_docstring(name: str):
    return f"""Constructs a {name} model.
    Args:
        pretrained (bool, True): If True, returns a model pretrained on IMAGENET dataset.
    """


def is_se_weight(key, value):
    return key.endswith("squeeze.weight") or key.endswith("expand.weight")


class EntryPoint:
    @staticmethod
    def create(name: str, model: Model):
        ep = EntryPoint(name, model)
        ep.__doc__ = torchhub_docstring(name)
        return ep

    def __init__(self, name: str, model: Model):
        self.name = name
        self.model = model

    def __call__(self, pretrained=True, pretrained_from_file=None, state_dict_key_map_fn=None, **kwargs):
        assert not (pretrained and (pretrained_from_file is not None))
        params = replace(self.model.params, **kwargs)
        model = self.model.constructor(arch=self.model.arch, **asdict(params))

        state_dict = None
        if pretrained:
            assert self.model.checkpoint_url is not None
            state_dict = torch.hub.load_state_dict_from_url(self.model.checkpoint_url, map_location=torch.device("cpu"), progress=False)
        if pretrained_from_file is not None and os.path.isfile(pretrained_from_file):
            state_dict = torch.load(pretrained_from_file, map_location=torch.device("cpu"))

        if state_dict is not None:
            state_dict = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}

            def reshape(t, conv):
                if conv:
                    return t if len(t.shape) == 4 else t.view(t.shape[0], -1, 1, 1)
                return t.view(t.shape[0], t.shape[1]) if len(t.shape) == 4 else t

            if state_dict_key_map_fn is not None:
                state_dict = {state_dict_key_map_fn(k): v for k, v in state_dict.items()}
            if pretrained and hasattr(model, "ngc_checkpoint_remap"):
                remap_fn = model.ngc_checkpoint_remap(url=self.model.checkpoint_url)
                state_dict = {remap_fn(k): v for k, v in state_dict.items()}
            state_dict = {k: reshape(v, conv=False) if is_se_weight(k, v) else v for k, v in state_dict.items()}
            model.load_state_dict(state_dict)
        return model
'''

_EFFNET_EFFICIENTNET = """import math
import warnings
from typing import List, Any
from collections import OrderedDict
from dataclasses import dataclass, replace

import torch
from torch import nn

try:
    from pytorch_quantization import nn as quant_nn
except ImportError as e:
    warnings.warn("pytorch_quantization module not found, quantization will not be available")
    quant_nn = None

from .common import SequentialSqueezeAndExcitation, LayerBuilder, StochasticDepthResidual, Flatten
from .model import Model, ModelParams, ModelArch, EntryPoint


@dataclass
class EffNetArch(ModelArch):
    block: Any
    stem_channels: int
    feature_channels: int
    kernel: List[int]
    stride: List[int]
    num_repeat: List[int]
    expansion: List[int]
    channels: List[int]
    default_image_size: int
    squeeze_excitation_ratio: float = 0.25

    def enumerate(self):
        return enumerate(zip(self.kernel, self.stride, self.num_repeat, self.expansion, self.channels))

    def num_layers(self):
        _f = lambda l: len(set(map(len, l)))
        l = [self.kernel, self.stride, self.num_repeat, self.expansion, self.channels]
        assert _f(l) == 1
        return len(self.kernel)


@dataclass
class EffNetParams(ModelParams):
    dropout: float
    num_classes: int = 10
    activation: str = "silu"
    conv_init: str = "fan_in"
    bn_momentum: float = 1 - 0.99
    bn_epsilon: float = 1e-3
    survival_prob: float = 1
    quantized: bool = False
    trt: bool = False


class EfficientNet(nn.Module):
    def __init__(self, arch: EffNetArch, dropout: float, num_classes: int = 1000, activation: str = "silu", conv_init: str = "fan_in",
                 bn_momentum: float = 1 - 0.99, bn_epsilon: float = 1e-3, survival_prob: float = 1, quantized: bool = False, trt: bool = False):
        super(EfficientNet, self).__init__()
        self.quantized = quantized
        self.arch = arch
        self.num_layers = arch.num_layers()
        self.num_blocks = sum(arch.num_repeat)
        self.survival_prob = survival_prob
        self.builder = LayerBuilder(LayerBuilder.Config(activation=activation, conv_init=conv_init, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon))
        self.stem = self._make_stem(arch.stem_channels)
        out_channels = arch.stem_channels

        plc = 0
        layers = []
        for i, (k, s, r, e, c) in arch.enumerate():
            layer, out_channels = self._make_layer(block=arch.block, kernel_size=k, stride=s, num_repeat=r, expansion=e, in_channels=out_channels,
                                                   out_channels=c, squeeze_excitation_ratio=arch.squeeze_excitation_ratio, prev_layer_count=plc, trt=trt)
            plc = plc + r
            layers.append(layer)
        self.layers = nn.Sequential(*layers)
        self.features = self._make_features(out_channels, arch.feature_channels)
        self.classifier = self._make_classifier(arch.feature_channels, num_classes, dropout)

    def forward(self, x):
        x = self.stem(x)
        x = self.layers(x)
        x = self.features(x)
        x = self.classifier(x)
        return x

    def extract_features(self, x, layers=None):
        if layers is None:
            layers = [f"layer{i+1}" for i in range(self.num_layers)] + ["features", "classifier"]
        output = {}
        x = self.stem(x)
        for i in range(self.num_layers):
            x = self.layers[i](x)
            if f"layer{i+1}" in layers:
                output[f"layer{i+1}"] = x
        x = self.features(x)
        if "features" in layers:
            output["features"] = x
        if "classifier" in layers:
            output["classifier"] = self.classifier(x)
        return output

    def _make_stem(self, stem_width):
        return nn.Sequential(OrderedDict([
            ("conv", self.builder.conv3x3(3, stem_width, stride=2)),
            ("bn", self.builder.batchnorm(stem_width)),
            ("activation", self.builder.activation()),
        ]))

    def _get_survival_prob(self, block_id):
        drop_rate = 1.0 - self.survival_prob
        return 1.0 - drop_rate * float(block_id) / self.num_blocks

    def _make_features(self, in_channels, num_features):
        return nn.Sequential(OrderedDict([
            ("conv", self.builder.conv1x1(in_channels, num_features)),
            ("bn", self.builder.batchnorm(num_features)),
            ("activation", self.builder.activation()),
        ]))

    def _make_classifier(self, num_features, num_classes, dropout):
        return nn.Sequential(OrderedDict([
            ("pooling", nn.AdaptiveAvgPool2d(1)),
            ("squeeze", Flatten()),
            ("dropout", nn.Dropout(dropout)),
            ("fc", nn.Linear(num_features, num_classes)),
        ]))

    def _make_layer(self, block, kernel_size, stride, num_repeat, expansion, in_channels, out_channels, squeeze_excitation_ratio, prev_layer_count, trt):
        layers = []
        idx = 0
        survival_prob = self._get_survival_prob(idx + prev_layer_count)
        blk = block(self.builder, kernel_size, in_channels, out_channels, expansion, stride, self.arch.squeeze_excitation_ratio,
                    survival_prob if stride == 1 and in_channels == out_channels else 1.0, self.quantized, trt=trt)
        layers.append((f"block{idx}", blk))
        for idx in range(1, num_repeat):
            survival_prob = self._get_survival_prob(idx + prev_layer_count)
            blk = block(self.builder, kernel_size, out_channels, out_channels, expansion, 1, squeeze_excitation_ratio, survival_prob, self.quantized, trt=trt)
            layers.append((f"block{idx}", blk))
        return nn.Sequential(OrderedDict(layers)), out_channels

    def ngc_checkpoint_remap(self, url=None, version=None):
        if version is None:
            version = url.split("/")[8]

        def to_sequential_remap(s):
            splited = s.split(".")
            if splited[0].startswith("layer"):
                return ".".join(["layers." + str(int(splited[0][len("layer"):]) - 1)] + splited[1:])
            return s

        def no_remap(s):
            return s

        return {"20.12.0": to_sequential_remap, "21.03.0": to_sequential_remap}.get(version, no_remap)


class MBConvBlock(nn.Module):
    __constants__ = ["quantized"]

    def __init__(self, builder: LayerBuilder, depsep_kernel_size: int, in_channels: int, out_channels: int, expand_ratio: int, stride: int,
                 squeeze_excitation_ratio: float, squeeze_hidden=False, survival_prob: float = 1.0, quantized: bool = False, trt: bool = False):
        super().__init__()
        self.quantized = quantized
        self.residual = stride == 1 and in_channels == out_channels
        hidden_dim = in_channels * expand_ratio
        squeeze_base = hidden_dim if squeeze_hidden else in_channels
        squeeze_dim = max(1, int(squeeze_base * squeeze_excitation_ratio))
        self.expand = None if in_channels == hidden_dim else builder.conv1x1(in_channels, hidden_dim, bn=True, act=True)
        self.depsep = builder.convDepSep(depsep_kernel_size, hidden_dim, hidden_dim, stride, bn=True, act=True)
        self.se: nn.Module = SequentialSqueezeAndExcitation(hidden_dim, squeeze_dim, builder.activation(), self.quantized)
        self.proj = builder.conv1x1(hidden_dim, out_channels, bn=True)
        if survival_prob == 1.0:
            self.residual_add = torch.add
        else:
            self.residual_add = StochasticDepthResidual(survival_prob=survival_prob)
        self.residual_quantizer = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.residual:
            return self.proj(self.se(self.depsep(x if self.expand is None else self.expand(x))))
        b = self.proj(self.se(self.depsep(x if self.expand is None else self.expand(x))))
        return self.residual_add(x, b)


def original_mbconv(builder, depsep_kernel_size, in_channels, out_channels, expand_ratio, stride, squeeze_excitation_ratio, survival_prob, quantized, trt):
    return MBConvBlock(builder, depsep_kernel_size, in_channels, out_channels, expand_ratio, stride, squeeze_excitation_ratio,
                       squeeze_hidden=False, survival_prob=survival_prob, quantized=quantized, trt=trt)


def widese_mbconv(builder, depsep_kernel_size, in_channels, out_channels, expand_ratio, stride, squeeze_excitation_ratio, survival_prob, quantized, trt):
    return MBConvBlock(builder, depsep_kernel_size, in_channels, out_channels, expand_ratio, stride, squeeze_excitation_ratio,
                       squeeze_hidden=True, survival_prob=survival_prob, quantized=quantized, trt=trt)


# fmt: off
effnet_b0_layers = EffNetArch(
    block = original_mbconv,
    stem_channels = 8,
    feature_channels=32,
    kernel     = [3, 3, 5],
    stride     = [1, 2, 2],
    num_repeat = [1, 2, 1],
    expansion  = [1, 2, 2],
    channels   = [8, 8, 16],
    default_image_size=32,
)

urls = {
    "efficientnet-b0": "@EFFNET_B0@",
    "efficientnet-widese-b0": "@EFFNET_WIDESE_B0@",
}


def _m(*args, **kwargs):
    return Model(constructor=EfficientNet, *args, **kwargs)


architectures = {
    "efficientnet-b0": _m(arch=effnet_b0_layers, params=EffNetParams(dropout=0.2, survival_prob=0.8), checkpoint_url=urls["efficientnet-b0"]),
    "efficientnet-widese-b0": _m(arch=replace(effnet_b0_layers, block=widese_mbconv), params=EffNetParams(dropout=0.2), checkpoint_url=urls["efficientnet-widese-b0"]),
}
# fmt: on

_ce = lambda n: EntryPoint.create(n, architectures[n])
efficientnet_b0 = _ce("efficientnet-b0")
efficientnet_widese_b0 = _ce("efficientnet-widese-b0")
"""

_EFFNET_ENTRYPOINTS = '''def nvidia_efficientnet(type="efficientnet-b0", pretrained=True, **kwargs):
    """Constructs a EfficientNet model."""
    from .efficientnet import _ce

    return _ce(type)(pretrained=pretrained, **kwargs)


def nvidia_convnets_processing_utils():
    import numpy as np
    import torch

    class Processing:
        @staticmethod
        def prepare_input(img):
            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            return img.float().unsqueeze(0).sub_(mean).div_(std)

        @staticmethod
        def pick_n_best(predictions, n=5):
            predictions = predictions.float().cpu().numpy()
            return np.argsort(-1 * predictions, axis=-1)[:, :n]

    return Processing()
'''

_CONV = "PyTorch/Classification/ConvNets/image_classification/models"
EFFNET_FILES: dict[str, str | None] = {
    "hubconf.py": _EFFNET_HUBCONF,
    f"{_CONV}/__init__.py": _EFFNET_INIT,
    f"{_CONV}/common.py": _EFFNET_COMMON,
    f"{_CONV}/model.py": _EFFNET_MODEL,
    f"{_CONV}/efficientnet.py": _EFFNET_EFFICIENTNET,
    f"{_CONV}/entrypoints.py": _EFFNET_ENTRYPOINTS,
}

# --------------------------------------------------------------------------------------------------
# NVIDIA/DeepLearningExamples PyTorch/SpeechSynthesis/Tacotron2 ``nvidia_tacotron2``: the checkpoint is
# ``{"state_dict": ..., "config": {...}}`` with DDP ``module.`` keys, ``Tacotron2(**config)``. New here:
# the decoder steps two ``nn.LSTMCell``s frame by frame, keeping its recurrent state as plain tensor
# attributes (``self.attention_hidden`` ...) set by ``initialize_decoder_states``; location-sensitive
# attention (``LocationLayer``: a Conv1d over the previous and cumulative alignments) with the padding
# masked by ``masked_fill(mask, -inf)`` from ``get_mask_from_lengths``; the prenet's dropout stays on in
# eval mode (``F.dropout(..., training=True)``); ``forward`` takes one ``inputs`` tuple (text, lengths,
# mels, max_len, output lengths; teacher forcing) and users call ``infer(sequences, lengths)``, whose
# decoder loop stops when the gate fires or at ``max_decoder_steps`` (data-dependent). Upstream
# downloads with ``urllib`` (a ``sandbox-violation``, see the user guide); this fork uses
# ``torch.hub.load_state_dict_from_url``. Narrowed: 4 mel channels, 8-wide embeddings, one encoder
# convolution, 8-unit LSTMs, at most 6 decoder steps.
# --------------------------------------------------------------------------------------------------
TACOTRON2_CONFIG = {
    "mask_padding": True, "n_mel_channels": 4, "n_symbols": 12, "symbols_embedding_dim": 8,
    "encoder_kernel_size": 5, "encoder_n_convolutions": 1, "encoder_embedding_dim": 8,
    "attention_rnn_dim": 8, "attention_dim": 4, "attention_location_n_filters": 2,
    "attention_location_kernel_size": 3, "n_frames_per_step": 1, "decoder_rnn_dim": 8, "prenet_dim": 4,
    "max_decoder_steps": 6, "gate_threshold": 0.5, "p_attention_dropout": 0.1, "p_decoder_dropout": 0.1,
    "postnet_embedding_dim": 4, "postnet_kernel_size": 5, "postnet_n_convolutions": 2, "decoder_no_early_stopping": False,
}  # fmt: skip

_TACOTRON2_HUBCONF = """dependencies = ["torch"]

from PyTorch.SpeechSynthesis.Tacotron2.tacotron2 import nvidia_tacotron2  # noqa: E402,F401
"""

_TACOTRON2_INIT = """from .entrypoints import nvidia_tacotron2  # noqa: F401
"""

_TACOTRON2_LAYERS = """import torch
from torch import nn


class LinearNorm(torch.nn.Module):
    def __init__(self, in_dim, out_dim, bias=True, w_init_gain="linear"):
        super(LinearNorm, self).__init__()
        self.linear_layer = torch.nn.Linear(in_dim, out_dim, bias=bias)
        torch.nn.init.xavier_uniform_(self.linear_layer.weight, gain=torch.nn.init.calculate_gain(w_init_gain))

    def forward(self, x):
        return self.linear_layer(x)


class ConvNorm(torch.nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=1, stride=1, padding=None, dilation=1, bias=True, w_init_gain="linear"):
        super(ConvNorm, self).__init__()
        if padding is None:
            assert kernel_size % 2 == 1
            padding = int(dilation * (kernel_size - 1) / 2)
        self.conv = torch.nn.Conv1d(in_channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, bias=bias)
        torch.nn.init.xavier_uniform_(self.conv.weight, gain=torch.nn.init.calculate_gain(w_init_gain))

    def forward(self, signal):
        return self.conv(signal)
"""

_TACOTRON2_UTILS = """import torch


def get_mask_from_lengths(lengths):
    max_len = torch.max(lengths).item()
    ids = torch.arange(0, max_len, device=lengths.device, dtype=lengths.dtype)
    mask = (ids < lengths.unsqueeze(1)).byte()
    mask = torch.le(mask, 0)
    return mask
"""

_TACOTRON2_MODEL = """from math import sqrt
import torch
from torch import nn
from torch.nn import functional as F

from ..common.layers import ConvNorm, LinearNorm
from ..common.utils import get_mask_from_lengths


class LocationLayer(nn.Module):
    def __init__(self, attention_n_filters, attention_kernel_size, attention_dim):
        super(LocationLayer, self).__init__()
        padding = int((attention_kernel_size - 1) / 2)
        self.location_conv = ConvNorm(2, attention_n_filters, kernel_size=attention_kernel_size, padding=padding, bias=False, stride=1, dilation=1)
        self.location_dense = LinearNorm(attention_n_filters, attention_dim, bias=False, w_init_gain="tanh")

    def forward(self, attention_weights_cat):
        processed_attention = self.location_conv(attention_weights_cat)
        processed_attention = processed_attention.transpose(1, 2)
        processed_attention = self.location_dense(processed_attention)
        return processed_attention


class Attention(nn.Module):
    def __init__(self, attention_rnn_dim, embedding_dim, attention_dim, attention_location_n_filters, attention_location_kernel_size):
        super(Attention, self).__init__()
        self.query_layer = LinearNorm(attention_rnn_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.memory_layer = LinearNorm(embedding_dim, attention_dim, bias=False, w_init_gain="tanh")
        self.v = LinearNorm(attention_dim, 1, bias=False)
        self.location_layer = LocationLayer(attention_location_n_filters, attention_location_kernel_size, attention_dim)
        self.score_mask_value = -float("inf")

    def get_alignment_energies(self, query, processed_memory, attention_weights_cat):
        processed_query = self.query_layer(query.unsqueeze(1))
        processed_attention_weights = self.location_layer(attention_weights_cat)
        energies = self.v(torch.tanh(processed_query + processed_attention_weights + processed_memory))
        energies = energies.squeeze(2)
        return energies

    def forward(self, attention_hidden_state, memory, processed_memory, attention_weights_cat, mask):
        alignment = self.get_alignment_energies(attention_hidden_state, processed_memory, attention_weights_cat)
        alignment = alignment.masked_fill(mask, self.score_mask_value)
        attention_weights = F.softmax(alignment, dim=1)
        attention_context = torch.bmm(attention_weights.unsqueeze(1), memory)
        attention_context = attention_context.squeeze(1)
        return attention_context, attention_weights


class Prenet(nn.Module):
    def __init__(self, in_dim, sizes):
        super(Prenet, self).__init__()
        in_sizes = [in_dim] + sizes[:-1]
        self.layers = nn.ModuleList([LinearNorm(in_size, out_size, bias=False) for (in_size, out_size) in zip(in_sizes, sizes)])

    def forward(self, x):
        for linear in self.layers:
            # dropout in inference too, as upstream
            x = F.dropout(F.relu(linear(x)), p=0.5, training=True)
        return x


class Postnet(nn.Module):
    def __init__(self, n_mel_channels, postnet_embedding_dim, postnet_kernel_size, postnet_n_convolutions):
        super(Postnet, self).__init__()
        self.convolutions = nn.ModuleList()
        self.convolutions.append(nn.Sequential(
            ConvNorm(n_mel_channels, postnet_embedding_dim, kernel_size=postnet_kernel_size, stride=1, padding=int((postnet_kernel_size - 1) / 2), dilation=1, w_init_gain="tanh"),
            nn.BatchNorm1d(postnet_embedding_dim)))
        for i in range(1, postnet_n_convolutions - 1):
            self.convolutions.append(nn.Sequential(
                ConvNorm(postnet_embedding_dim, postnet_embedding_dim, kernel_size=postnet_kernel_size, stride=1, padding=int((postnet_kernel_size - 1) / 2), dilation=1, w_init_gain="tanh"),
                nn.BatchNorm1d(postnet_embedding_dim)))
        self.convolutions.append(nn.Sequential(
            ConvNorm(postnet_embedding_dim, n_mel_channels, kernel_size=postnet_kernel_size, stride=1, padding=int((postnet_kernel_size - 1) / 2), dilation=1, w_init_gain="linear"),
            nn.BatchNorm1d(n_mel_channels)))
        self.n_convs = len(self.convolutions)

    def forward(self, x):
        i = 0
        for conv in self.convolutions:
            if i < self.n_convs - 1:
                x = F.dropout(torch.tanh(conv(x)), 0.5, training=self.training)
            else:
                x = F.dropout(conv(x), 0.5, training=self.training)
            i += 1
        return x


class Encoder(nn.Module):
    def __init__(self, encoder_n_convolutions, encoder_embedding_dim, encoder_kernel_size):
        super(Encoder, self).__init__()
        convolutions = []
        for _ in range(encoder_n_convolutions):
            conv_layer = nn.Sequential(
                ConvNorm(encoder_embedding_dim, encoder_embedding_dim, kernel_size=encoder_kernel_size, stride=1, padding=int((encoder_kernel_size - 1) / 2), dilation=1, w_init_gain="relu"),
                nn.BatchNorm1d(encoder_embedding_dim))
            convolutions.append(conv_layer)
        self.convolutions = nn.ModuleList(convolutions)
        self.lstm = nn.LSTM(encoder_embedding_dim, int(encoder_embedding_dim / 2), 1, batch_first=True, bidirectional=True)

    def forward(self, x, input_lengths):
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x)), 0.5, self.training)
        x = x.transpose(1, 2)
        # pytorch tensor are not reversible, hence the conversion
        input_lengths = input_lengths.cpu().numpy()
        x = nn.utils.rnn.pack_padded_sequence(x, input_lengths, batch_first=True)
        self.lstm.flatten_parameters()
        outputs, _ = self.lstm(x)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return outputs

    def infer(self, x, input_lengths):
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x)), 0.5, self.training)
        x = x.transpose(1, 2)
        input_lengths = input_lengths.cpu()
        x = nn.utils.rnn.pack_padded_sequence(x, input_lengths, batch_first=True)
        outputs, _ = self.lstm(x)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return outputs


class Decoder(nn.Module):
    def __init__(self, n_mel_channels, n_frames_per_step, encoder_embedding_dim, attention_dim, attention_location_n_filters, attention_location_kernel_size,
                 attention_rnn_dim, decoder_rnn_dim, prenet_dim, max_decoder_steps, gate_threshold, p_attention_dropout, p_decoder_dropout, early_stopping):
        super(Decoder, self).__init__()
        self.n_mel_channels = n_mel_channels
        self.n_frames_per_step = n_frames_per_step
        self.encoder_embedding_dim = encoder_embedding_dim
        self.attention_rnn_dim = attention_rnn_dim
        self.decoder_rnn_dim = decoder_rnn_dim
        self.prenet_dim = prenet_dim
        self.max_decoder_steps = max_decoder_steps
        self.gate_threshold = gate_threshold
        self.p_attention_dropout = p_attention_dropout
        self.p_decoder_dropout = p_decoder_dropout
        self.early_stopping = early_stopping

        self.prenet = Prenet(n_mel_channels * n_frames_per_step, [prenet_dim, prenet_dim])
        self.attention_rnn = nn.LSTMCell(prenet_dim + encoder_embedding_dim, attention_rnn_dim)
        self.attention_layer = Attention(attention_rnn_dim, encoder_embedding_dim, attention_dim, attention_location_n_filters, attention_location_kernel_size)
        self.decoder_rnn = nn.LSTMCell(attention_rnn_dim + encoder_embedding_dim, decoder_rnn_dim, 1)
        self.linear_projection = LinearNorm(decoder_rnn_dim + encoder_embedding_dim, n_mel_channels * n_frames_per_step)
        self.gate_layer = LinearNorm(decoder_rnn_dim + encoder_embedding_dim, 1, bias=True, w_init_gain="sigmoid")

    def get_go_frame(self, memory):
        B = memory.size(0)
        dtype = memory.dtype
        device = memory.device
        decoder_input = torch.zeros(B, self.n_mel_channels * self.n_frames_per_step, dtype=dtype, device=device)
        return decoder_input

    def initialize_decoder_states(self, memory):
        B = memory.size(0)
        MAX_TIME = memory.size(1)
        dtype = memory.dtype
        device = memory.device
        attention_hidden = torch.zeros(B, self.attention_rnn_dim, dtype=dtype, device=device)
        attention_cell = torch.zeros(B, self.attention_rnn_dim, dtype=dtype, device=device)
        decoder_hidden = torch.zeros(B, self.decoder_rnn_dim, dtype=dtype, device=device)
        decoder_cell = torch.zeros(B, self.decoder_rnn_dim, dtype=dtype, device=device)
        attention_weights = torch.zeros(B, MAX_TIME, dtype=dtype, device=device)
        attention_weights_cum = torch.zeros(B, MAX_TIME, dtype=dtype, device=device)
        attention_context = torch.zeros(B, self.encoder_embedding_dim, dtype=dtype, device=device)
        processed_memory = self.attention_layer.memory_layer(memory)
        return (attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context, processed_memory)

    def parse_decoder_inputs(self, decoder_inputs):
        decoder_inputs = decoder_inputs.transpose(1, 2)
        decoder_inputs = decoder_inputs.view(decoder_inputs.size(0), int(decoder_inputs.size(1) / self.n_frames_per_step), -1)
        decoder_inputs = decoder_inputs.transpose(0, 1)
        return decoder_inputs

    def parse_decoder_outputs(self, mel_outputs, gate_outputs, alignments):
        alignments = alignments.transpose(0, 1).contiguous()
        gate_outputs = gate_outputs.transpose(0, 1).contiguous()
        mel_outputs = mel_outputs.transpose(0, 1).contiguous()
        shape = (mel_outputs.shape[0], -1, self.n_mel_channels)
        mel_outputs = mel_outputs.view(*shape)
        mel_outputs = mel_outputs.transpose(1, 2)
        return mel_outputs, gate_outputs, alignments

    def decode(self, decoder_input, attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context, memory, processed_memory, mask):
        cell_input = torch.cat((decoder_input, attention_context), -1)
        attention_hidden, attention_cell = self.attention_rnn(cell_input, (attention_hidden, attention_cell))
        attention_hidden = F.dropout(attention_hidden, self.p_attention_dropout, self.training)
        attention_weights_cat = torch.cat((attention_weights.unsqueeze(1), attention_weights_cum.unsqueeze(1)), dim=1)
        attention_context, attention_weights = self.attention_layer(attention_hidden, memory, processed_memory, attention_weights_cat, mask)
        attention_weights_cum += attention_weights
        decoder_input = torch.cat((attention_hidden, attention_context), -1)
        decoder_hidden, decoder_cell = self.decoder_rnn(decoder_input, (decoder_hidden, decoder_cell))
        decoder_hidden = F.dropout(decoder_hidden, self.p_decoder_dropout, self.training)
        decoder_hidden_attention_context = torch.cat((decoder_hidden, attention_context), dim=1)
        decoder_output = self.linear_projection(decoder_hidden_attention_context)
        gate_prediction = self.gate_layer(decoder_hidden_attention_context)
        return (decoder_output, gate_prediction, attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context)

    def forward(self, memory, decoder_inputs, memory_lengths):
        decoder_input = self.get_go_frame(memory).unsqueeze(0)
        decoder_inputs = self.parse_decoder_inputs(decoder_inputs)
        decoder_inputs = torch.cat((decoder_input, decoder_inputs), dim=0)
        decoder_inputs = self.prenet(decoder_inputs)
        mask = get_mask_from_lengths(memory_lengths)
        (attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context, processed_memory) = self.initialize_decoder_states(memory)
        mel_outputs, gate_outputs, alignments = [], [], []
        while len(mel_outputs) < decoder_inputs.size(0) - 1:
            decoder_input = decoder_inputs[len(mel_outputs)]
            (mel_output, gate_output, attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context) = self.decode(
                decoder_input, attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context, memory, processed_memory, mask)
            mel_outputs += [mel_output.squeeze(1)]
            gate_outputs += [gate_output.squeeze()]
            alignments += [attention_weights]
        mel_outputs, gate_outputs, alignments = self.parse_decoder_outputs(torch.stack(mel_outputs), torch.stack(gate_outputs), torch.stack(alignments))
        return mel_outputs, gate_outputs, alignments

    def infer(self, memory, memory_lengths):
        decoder_input = self.get_go_frame(memory)
        mask = get_mask_from_lengths(memory_lengths)
        (attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context, processed_memory) = self.initialize_decoder_states(memory)
        mel_lengths = torch.zeros([memory.size(0)], dtype=torch.int32, device=memory.device)
        not_finished = torch.ones([memory.size(0)], dtype=torch.int32, device=memory.device)
        mel_outputs, gate_outputs, alignments = (torch.zeros(1), torch.zeros(1), torch.zeros(1))
        first_iter = True
        while True:
            decoder_input = self.prenet(decoder_input)
            (mel_output, gate_output, attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context) = self.decode(
                decoder_input, attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights, attention_weights_cum, attention_context, memory, processed_memory, mask)
            if first_iter:
                mel_outputs = mel_output.unsqueeze(0)
                gate_outputs = gate_output
                alignments = attention_weights
                first_iter = False
            else:
                mel_outputs = torch.cat((mel_outputs, mel_output.unsqueeze(0)), dim=0)
                gate_outputs = torch.cat((gate_outputs, gate_output), dim=0)
                alignments = torch.cat((alignments, attention_weights), dim=0)
            dec = torch.le(torch.sigmoid(gate_output), self.gate_threshold).to(torch.int32).squeeze(1)
            not_finished = not_finished * dec
            mel_lengths += not_finished
            if self.early_stopping and torch.sum(not_finished) == 0:
                break
            if len(mel_outputs) == self.max_decoder_steps:
                break
            decoder_input = mel_output
        mel_outputs, gate_outputs, alignments = self.parse_decoder_outputs(mel_outputs, gate_outputs, alignments)
        return mel_outputs, gate_outputs, alignments, mel_lengths


class Tacotron2(nn.Module):
    def __init__(self, mask_padding, n_mel_channels, n_symbols, symbols_embedding_dim, encoder_kernel_size, encoder_n_convolutions, encoder_embedding_dim,
                 attention_rnn_dim, attention_dim, attention_location_n_filters, attention_location_kernel_size, n_frames_per_step, decoder_rnn_dim, prenet_dim,
                 max_decoder_steps, gate_threshold, p_attention_dropout, p_decoder_dropout, postnet_embedding_dim, postnet_kernel_size, postnet_n_convolutions,
                 decoder_no_early_stopping):
        super(Tacotron2, self).__init__()
        self.mask_padding = mask_padding
        self.n_mel_channels = n_mel_channels
        self.n_frames_per_step = n_frames_per_step
        self.embedding = nn.Embedding(n_symbols, symbols_embedding_dim)
        std = sqrt(2.0 / (n_symbols + symbols_embedding_dim))
        val = sqrt(3.0) * std  # uniform bounds for std
        self.embedding.weight.data.uniform_(-val, val)
        self.encoder = Encoder(encoder_n_convolutions, encoder_embedding_dim, encoder_kernel_size)
        self.decoder = Decoder(n_mel_channels, n_frames_per_step, encoder_embedding_dim, attention_dim, attention_location_n_filters, attention_location_kernel_size,
                               attention_rnn_dim, decoder_rnn_dim, prenet_dim, max_decoder_steps, gate_threshold, p_attention_dropout, p_decoder_dropout,
                               not decoder_no_early_stopping)
        self.postnet = Postnet(n_mel_channels, postnet_embedding_dim, postnet_kernel_size, postnet_n_convolutions)

    def parse_output(self, outputs, output_lengths):
        if self.mask_padding and output_lengths is not None:
            mask = get_mask_from_lengths(output_lengths)
            mask = mask.expand(self.n_mel_channels, mask.size(0), mask.size(1))
            mask = mask.permute(1, 0, 2)
            outputs[0].data.masked_fill_(mask, 0.0)
            outputs[1].data.masked_fill_(mask, 0.0)
            outputs[2].data.masked_fill_(mask[:, 0, :], 1e3)  # gate energies
        return outputs

    def forward(self, inputs):
        # Parse inputs
        inputs, input_lengths, targets, max_len, output_lengths = inputs
        input_lengths, output_lengths = input_lengths.data, output_lengths.data
        embedded_inputs = self.embedding(inputs).transpose(1, 2)
        encoder_outputs = self.encoder(embedded_inputs, input_lengths)
        mel_outputs, gate_outputs, alignments = self.decoder(encoder_outputs, targets, memory_lengths=input_lengths)
        mel_outputs_postnet = self.postnet(mel_outputs)
        mel_outputs_postnet = mel_outputs + mel_outputs_postnet
        return self.parse_output([mel_outputs, mel_outputs_postnet, gate_outputs, alignments], output_lengths)

    def infer(self, inputs, input_lengths):
        embedded_inputs = self.embedding(inputs).transpose(1, 2)
        encoder_outputs = self.encoder.infer(embedded_inputs, input_lengths)
        mel_outputs, gate_outputs, alignments, mel_lengths = self.decoder.infer(encoder_outputs, input_lengths)
        mel_outputs_postnet = self.postnet(mel_outputs)
        mel_outputs_postnet = mel_outputs + mel_outputs_postnet
        BS = mel_outputs_postnet.size(0)
        alignments = alignments.unfold(1, BS, BS).transpose(0, 2)
        return mel_outputs_postnet, mel_lengths, alignments
"""

_TACOTRON2_ENTRYPOINTS = '''import torch


def unwrap_distributed(state_dict):
    new_state_dict = {}
    for key, value in state_dict.items():
        new_key = key.replace("module.1.", "")
        new_key = new_key.replace("module.", "")
        new_state_dict[new_key] = value
    return new_state_dict


def nvidia_tacotron2(pretrained=True, **kwargs):
    """Constructs a Tacotron 2 model (nn.module with additional infer(input) method).
    Args:
        pretrained (bool): If True, returns a model pretrained on LJ Speech dataset.
        model_math (str, 'fp32'): returns a model in given precision ('fp32' or 'fp16')
        n_symbols (int, 148): Number of symbols used in a sequence passed to the prenet.
    """
    from .model import Tacotron2

    fp16 = "model_math" in kwargs and kwargs["model_math"] == "fp16"
    if pretrained:
        checkpoint = "@TACOTRON2_FP16@" if fp16 else "@TACOTRON2_FP32@"
        ckpt = torch.hub.load_state_dict_from_url(checkpoint, map_location="cpu", progress=False)
        state_dict = ckpt["state_dict"]
        if any(key.startswith("module.") for key in state_dict):
            state_dict = unwrap_distributed(state_dict)
        config = ckpt["config"]
    else:
        config = @TACOTRON2_CONFIG@
    for k, v in kwargs.items():
        if k in config.keys():
            config[k] = v

    m = Tacotron2(**config)
    if pretrained:
        m.load_state_dict(state_dict)
    return m
'''

_TACO = "PyTorch/SpeechSynthesis/Tacotron2"
TACOTRON2_FILES: dict[str, str | None] = {
    "hubconf.py": _TACOTRON2_HUBCONF,
    f"{_TACO}/tacotron2/__init__.py": _TACOTRON2_INIT,
    f"{_TACO}/tacotron2/model.py": _TACOTRON2_MODEL,
    f"{_TACO}/tacotron2/entrypoints.py": _TACOTRON2_ENTRYPOINTS.replace("@TACOTRON2_CONFIG@", repr(TACOTRON2_CONFIG)),
    f"{_TACO}/common/__init__.py": "",
    f"{_TACO}/common/layers.py": _TACOTRON2_LAYERS,
    f"{_TACO}/common/utils.py": _TACOTRON2_UTILS,
}

# --------------------------------------------------------------------------------------------------
# snakers4/silero-models ``silero_tts``: the model is a ``torch.package`` archive downloaded into the
# hub dir (``torch.hub.download_url_to_file``) and opened with
# ``torch.package.PackageImporter(path).load_pickle("tts_models", "model")``: its class comes from the
# module the archive ships, which torch.package names ``<torch_package_0>.tts_models``. Upstream reads
# ``models.yml`` with omegaconf and returns ``(model, example_text)``; this fork keeps the model list in
# Python and returns the model alone (a tuple is refused, see the user guide). The archive is built by
# the test from :data:`TTS_PACKAGE_SOURCE` (token embedding, a 1-D convolution, tanh): its ``forward``
# takes a batch of symbol ids. Downloaded, the archive is refused before the sandbox sees it (code is
# never an artifact); :data:`SILERO_VENDORED_FILES` is a fork that commits it to the repository.
# --------------------------------------------------------------------------------------------------
TTS_PACKAGE_SOURCE = '''import torch
from torch import nn


class TinyTTS(nn.Module):
    """A text-to-spectrogram stand-in: symbol embedding, one convolution over time, tanh."""

    def __init__(self, n_symbols=12, dim=4, n_mels=3):
        super().__init__()
        self.symbols = "_abcdefghij "
        self.emb = nn.Embedding(n_symbols, dim)
        self.conv = nn.Conv1d(dim, n_mels, 3, padding=1)

    def forward(self, x):
        return torch.tanh(self.conv(self.emb(x).transpose(1, 2)))
'''

_SILERO_HUBCONF = '''dependencies = ["torch"]
import os

import torch

MODELS = {"en": {"v3_en": {"package": "@SILERO_V3_EN@", "example_text": "the quick brown fox"}}}


def silero_tts(language="en", speaker="v3_en", **kwargs):
    """Silero Text-To-Speech Models (this fork returns the model alone)."""
    assert language in MODELS, f"Language not in the supported list {list(MODELS.keys())}"
    assert speaker in MODELS[language], f"Speaker not in the supported list {list(MODELS[language].keys())}"
    model_conf = MODELS[language][speaker]
    hub_dir = torch.hub.get_dir()
    package_path = os.path.join(hub_dir, "snakers4_silero-models_master", "model", f"{speaker}.pt")
    os.makedirs(os.path.dirname(package_path), exist_ok=True)
    if not os.path.isfile(package_path):
        torch.hub.download_url_to_file(model_conf["package"], package_path, progress=False)
    imp = torch.package.PackageImporter(package_path)
    model = imp.load_pickle("tts_models", "model")
    return model
'''

SILERO_FILES: dict[str, str | None] = {"hubconf.py": _SILERO_HUBCONF}

# A fork that commits the archive to its tree (``models/v3_en.pt``, added by the test) and opens it from
# there: the archive's code is then repository content, pinned with the tree.
_SILERO_VENDORED_HUBCONF = '''dependencies = ["torch"]
import os

import torch

MODELS = {"en": {"v3_en": {"package": "models/v3_en.pt", "example_text": "the quick brown fox"}}}


def silero_tts(language="en", speaker="v3_en", **kwargs):
    """Silero Text-To-Speech Models, the archives shipped in this repository (the model alone)."""
    assert language in MODELS, f"Language not in the supported list {list(MODELS.keys())}"
    model_conf = MODELS[language][speaker]
    imp = torch.package.PackageImporter(os.path.join(os.path.dirname(__file__), model_conf["package"]))
    return imp.load_pickle("tts_models", "model")
'''

SILERO_VENDORED_FILES: dict[str, str | None] = {"hubconf.py": _SILERO_VENDORED_HUBCONF}
