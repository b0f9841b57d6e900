# ruff: noqa: E501  (repository code copied in the upstream style, long lines included)
"""Generated repositories in the style of pytorch/vision, ultralytics/yolov5, gen-efficientnet/timm and silero.

The file texts for tests/integration/test_real_hub_styles.py (see its docstring). Each copies the public
repository's hubconf and model code patterns closely, narrowed (fewer channels) so the suite stays fast.
Placeholders ``@NAME_URL@`` are replaced by the artifact URLs the test serves.
"""

from __future__ import annotations

__all__ = ["EFFNET_FILES", "SILERO_HUBCONF", "SILERO_UTILS", "VISION_FILES", "YOLO_FILES"]

VISION_FILES = {
    "hubconf.py": """
# Optional list of dependencies required by the package
dependencies = ["torch"]

from torchvision.models.resnet import resnet18, resnet34
""",
    "torchvision/__init__.py": """
import warnings

import torch

from torchvision import models

__version__ = "0.20.0a0+hub"

_image_backend = "PIL"


def _is_tracing():
    return torch._C._get_tracing_state()
""",
    "torchvision/utils.py": """
from types import FunctionType
from typing import Any

import torch


def _log_api_usage_once(obj: Any) -> None:
    module = obj.__module__
    if not module.startswith("torchvision"):
        module = f"torchvision.internal.{module}"
    name = obj.__class__.__name__
    if isinstance(obj, FunctionType):
        name = obj.__name__
    torch._C._log_api_usage_once(f"{module}.{name}")
""",
    "torchvision/_internally_replaced_utils.py": """
try:
    from torch.hub import load_state_dict_from_url  # noqa: 401
except ImportError:
    from torch.utils.model_zoo import load_url as load_state_dict_from_url  # noqa: 401
""",
    "torchvision/transforms/__init__.py": "",
    "torchvision/transforms/_presets.py": """
from typing import Optional, Tuple

import torch
from torch import nn, Tensor


class ImageClassification(nn.Module):
    def __init__(self, *, crop_size: int, resize_size: int = 256,
                 mean: Tuple[float, ...] = (0.485, 0.456, 0.406), std: Tuple[float, ...] = (0.229, 0.224, 0.225)):
        super().__init__()
        self.crop_size = [crop_size]
        self.resize_size = [resize_size]
        self.mean = list(mean)
        self.std = list(std)

    def forward(self, img: Tensor) -> Tensor:
        return (img - torch.tensor(self.mean).view(-1, 1, 1)) / torch.tensor(self.std).view(-1, 1, 1)
""",
    "torchvision/models/__init__.py": """
from .resnet import *
from ._api import get_model, get_model_weights, get_weight, list_models
""",
    "torchvision/models/_meta.py": """
_IMAGENET_CATEGORIES = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead", "electric ray",
                        "stingray", "cock", "hen", "ostrich"]
""",
    "torchvision/models/_api.py": """
import fnmatch
import importlib
import inspect
import sys
from dataclasses import dataclass
from enum import Enum
from functools import partial
from inspect import signature
from types import ModuleType
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Type, TypeVar, Union

from torch import nn

from .._internally_replaced_utils import load_state_dict_from_url

__all__ = ["WeightsEnum", "Weights", "get_model", "get_model_weights", "get_weight", "list_models"]


@dataclass
class Weights:
    url: str
    transforms: Callable
    meta: Dict[str, Any]

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Weights):
            return NotImplemented
        if self.url != other.url or self.meta != other.meta:
            return False
        if isinstance(self.transforms, partial) and isinstance(other.transforms, partial):
            return (self.transforms.func == other.transforms.func and self.transforms.args == other.transforms.args
                    and self.transforms.keywords == other.transforms.keywords)
        return self.transforms == other.transforms


class WeightsEnum(Enum):
    @classmethod
    def verify(cls, obj: Any) -> Any:
        if obj is not None:
            if type(obj) is str:
                obj = cls[obj.replace(cls.__name__ + ".", "")]
            elif not isinstance(obj, cls):
                raise TypeError(f"Invalid Weight class provided; expected {cls.__name__} but received {obj.__class__.__name__}.")
        return obj

    def get_state_dict(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        return load_state_dict_from_url(self.url, *args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}.{self._name_}"

    @property
    def url(self):
        return self.value.url

    @property
    def transforms(self):
        return self.value.transforms

    @property
    def meta(self):
        return self.value.meta


def get_weight(name: str) -> WeightsEnum:
    try:
        enum_name, value_name = name.split(".")
    except ValueError:
        raise ValueError(f"Invalid weight name provided: '{name}'.")
    base_module_name = ".".join(sys.modules[__name__].__name__.split(".")[:-1])
    base_module = importlib.import_module(base_module_name)
    model_modules = [base_module] + [x[1] for x in inspect.getmembers(base_module, inspect.ismodule)
                                     if x[1].__file__.endswith("__init__.py")]
    weights_enum = None
    for m in model_modules:
        potential_class = m.__dict__.get(enum_name, None)
        if potential_class is not None and issubclass(potential_class, WeightsEnum):
            weights_enum = potential_class
            break
    if weights_enum is None:
        raise ValueError(f"The weight enum '{enum_name}' for the specific method couldn't be retrieved.")
    return weights_enum[value_name]


def get_model_weights(name: Union[Callable, str]) -> Type[WeightsEnum]:
    model = get_model_builder(name) if isinstance(name, str) else name
    return _get_enum_from_fn(model)


def _get_enum_from_fn(fn: Callable) -> Type[WeightsEnum]:
    sig = signature(fn)
    if "weights" not in sig.parameters:
        raise ValueError("The method is missing the 'weights' argument.")
    ann = signature(fn).parameters["weights"].annotation
    weights_enum = None
    if isinstance(ann, type) and issubclass(ann, WeightsEnum):
        weights_enum = ann
    else:
        for t in ann.__args__:  # type: ignore[union-attr]
            if isinstance(t, type) and issubclass(t, WeightsEnum):
                weights_enum = t
                break
    if weights_enum is None:
        raise ValueError("The WeightsEnum class for the specific method couldn't be retrieved.")
    return weights_enum


M = TypeVar("M", bound=nn.Module)
BUILTIN_MODELS = {}


def register_model(name: Optional[str] = None) -> Callable[[Callable[..., M]], Callable[..., M]]:
    def wrapper(fn: Callable[..., M]) -> Callable[..., M]:
        key = name if name is not None else fn.__name__
        if key in BUILTIN_MODELS:
            raise ValueError(f"An entry is already registered under the name '{key}'.")
        BUILTIN_MODELS[key] = fn
        return fn
    return wrapper


def list_models(module: Optional[ModuleType] = None, include=None, exclude=None) -> List[str]:
    all_models = {k for k, v in BUILTIN_MODELS.items() if module is None or v.__module__.rsplit(".", 1)[0] == module.__name__}
    return sorted(all_models)


def get_model_builder(name: str) -> Callable[..., nn.Module]:
    name = name.lower()
    try:
        fn = BUILTIN_MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model {name}")
    return fn


def get_model(name: str, **config: Any) -> nn.Module:
    fn = get_model_builder(name)
    return fn(**config)
""",
    "torchvision/models/_utils.py": """
import functools
import inspect
import warnings
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union

from torch import nn

from ._api import WeightsEnum

V = TypeVar("V")


def _ovewrite_named_param(kwargs: Dict[str, Any], param: str, new_value: V) -> None:
    if param in kwargs:
        if kwargs[param] != new_value:
            raise ValueError(f"The parameter '{param}' expected value {new_value} but got {kwargs[param]} instead.")
    else:
        kwargs[param] = new_value


def handle_legacy_interface(**weights: Tuple[str, Union[Optional[WeightsEnum], Callable[[Dict[str, Any]], Optional[WeightsEnum]]]]):
    def outer_wrapper(builder):
        @functools.wraps(builder)
        def inner_wrapper(*args: Any, **kwargs: Any):
            for weights_param, (pretrained_param, default) in weights.items():
                sentinel = object()
                weights_arg = kwargs.get(weights_param, sentinel)
                if ((weights_param not in kwargs and pretrained_param not in kwargs)
                        or isinstance(weights_arg, WeightsEnum) or (isinstance(weights_arg, str) and weights_arg != "legacy")
                        or weights_arg is None):
                    continue
                pretrained_positional = weights_arg is not sentinel
                if pretrained_positional:
                    kwargs[pretrained_param] = pretrained_arg = kwargs.pop(weights_param)
                else:
                    pretrained_arg = kwargs[pretrained_param]
                if pretrained_arg:
                    default_weights_arg = default(kwargs) if callable(default) else default
                    if not isinstance(default_weights_arg, WeightsEnum):
                        raise ValueError(f"No weights available for model {builder.__name__}")
                else:
                    default_weights_arg = None
                if not pretrained_positional:
                    warnings.warn(
                        f"The parameter '{pretrained_param}' is deprecated since 0.13 and may be removed in the future, "
                        f"please use '{weights_param}' instead."
                    )
                del kwargs[pretrained_param]
                kwargs[weights_param] = default_weights_arg
            return builder(*args, **kwargs)
        return inner_wrapper
    return outer_wrapper
""",
    "torchvision/models/resnet.py": '''
from functools import partial
from typing import Any, Callable, List, Optional, Type, Union

import torch
import torch.nn as nn
from torch import Tensor

from ..transforms._presets import ImageClassification
from ..utils import _log_api_usage_once
from ._api import register_model, Weights, WeightsEnum
from ._meta import _IMAGENET_CATEGORIES
from ._utils import _ovewrite_named_param, handle_legacy_interface

__all__ = ["ResNet", "ResNet18_Weights", "ResNet34_Weights", "resnet18", "resnet34"]

# This copy is narrowed 8x (64 -> 8 base planes) so that the test suite stays fast.
_BASE = 8


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups,
                     bias=False, dilation=dilation)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 groups: int = 1, base_width: int = 64, dilation: int = 1,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: List[int], num_classes: int = 1000,
                 zero_init_residual: bool = False, groups: int = 1, width_per_group: int = 64,
                 replace_stride_with_dilation: Optional[List[bool]] = None,
                 norm_layer: Optional[Callable[..., nn.Module]] = None) -> None:
        super().__init__()
        _log_api_usage_once(self)
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = _BASE
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None "
                             f"or a 3-element tuple, got {replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, _BASE, layers[0])
        self.layer2 = self._make_layer(block, _BASE * 2, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, _BASE * 4, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, _BASE * 8, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(_BASE * 8 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation, norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def _resnet(block, layers: List[int], weights: Optional[WeightsEnum], progress: bool, **kwargs: Any) -> ResNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    model = ResNet(block, layers, **kwargs)
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model


_COMMON_META = {"min_size": (1, 1), "categories": _IMAGENET_CATEGORIES}


class ResNet18_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(
        url="@RESNET18_URL@",
        transforms=partial(ImageClassification, crop_size=224),
        meta={**_COMMON_META, "num_params": 11689512, "recipe": "https://github.com/pytorch/vision/tree/main/references/classification#resnet",
              "_metrics": {"ImageNet-1K": {"acc@1": 69.758, "acc@5": 89.078}}, "_docs": "These weights reproduce closely the results of the paper."},
    )
    DEFAULT = IMAGENET1K_V1


class ResNet34_Weights(WeightsEnum):
    IMAGENET1K_V1 = Weights(url="@RESNET34_URL@", transforms=partial(ImageClassification, crop_size=224),
                            meta={**_COMMON_META, "num_params": 21797672})
    DEFAULT = IMAGENET1K_V1


@register_model()
@handle_legacy_interface(weights=("pretrained", ResNet18_Weights.IMAGENET1K_V1))
def resnet18(*, weights: Optional[ResNet18_Weights] = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-18 from `Deep Residual Learning for Image Recognition <https://arxiv.org/abs/1512.03385>`__."""
    weights = ResNet18_Weights.verify(weights)
    return _resnet(BasicBlock, [2, 2, 2, 2], weights, progress, **kwargs)


@register_model()
@handle_legacy_interface(weights=("pretrained", ResNet34_Weights.IMAGENET1K_V1))
def resnet34(*, weights: Optional[ResNet34_Weights] = None, progress: bool = True, **kwargs: Any) -> ResNet:
    """ResNet-34 from `Deep Residual Learning for Image Recognition <https://arxiv.org/abs/1512.03385>`__."""
    weights = ResNet34_Weights.verify(weights)
    return _resnet(BasicBlock, [3, 4, 6, 3], weights, progress, **kwargs)
''',
}

YOLO_FILES = {
    "hubconf.py": '''
"""PyTorch Hub models https://pytorch.org/hub/ultralytics_yolov5 (style copy)."""
import torch

YOLOV5N_URL = "@YOLOV5N_URL@"


def _create(name, pretrained=True, channels=3, classes=80, autoshape=True, verbose=True, device=None):
    """Creates or loads a YOLOv5 model."""
    from pathlib import Path

    from models.common import AutoShape
    from models.yolo import DetectionModel
    from utils.general import intersect_dicts

    cfg = Path(__file__).parent / "models" / f"{name}.yaml"
    model = DetectionModel(cfg, channels, classes)
    if pretrained:
        ckpt = torch.hub.load_state_dict_from_url(YOLOV5N_URL, map_location="cpu", progress=False)
        csd = intersect_dicts(ckpt["model"], model.state_dict(), exclude=["anchors"])
        model.load_state_dict(csd, strict=False)
        if len(ckpt["names"]) == classes:
            model.names = ckpt["names"]
    model.fuse().eval()
    if autoshape:
        model = AutoShape(model)
    return model.to(device)


def custom(path="path/to/model.pt", autoshape=True, _verbose=True, device=None):
    raise NotImplementedError("not in this copy")


def conv_fused():
    """Not in yolov5's hubconf: one Conv block as fuse() leaves it (BatchNorm folded, forward rebound)."""
    from models.common import Conv
    from utils.torch_utils import fuse_conv_and_bn

    m = Conv(3, 8, 3, 2)
    m.bn.running_mean.uniform_(-0.5, 0.5)
    m.bn.running_var.uniform_(0.5, 2.0)
    m.conv = fuse_conv_and_bn(m.conv, m.bn)  # gradients enabled, as in fuse(): the fused weights are non-leaf
    delattr(m, "bn")
    m.forward = m.forward_fuse
    return m.eval()


def yolov5n(pretrained=True, channels=3, classes=80, autoshape=True, _verbose=True, device=None):
    """YOLOv5-nano model https://github.com/ultralytics/yolov5"""
    return _create("yolov5n", pretrained, channels, classes, autoshape, _verbose, device)


def yolov5n_raw(pretrained=True, channels=3, classes=80, device=None):
    """YOLOv5-nano without the AutoShape wrapper (fused DetectionModel)."""
    return _create("yolov5n", pretrained, channels, classes, False, False, device)
''',
    "models/__init__.py": "",
    "models/yolov5n.yaml": """
# Parameters
nc: 80 # number of classes
depth_multiple: 0.33 # model depth multiple
width_multiple: 0.0625 # layer channel multiple (narrowed for the test suite)
anchors:
  - [10, 13, 16, 30, 33, 23] # P3/8
  - [30, 61, 62, 45, 59, 119] # P4/16
  - [116, 90, 156, 198, 373, 326] # P5/32

backbone:
  [
    [-1, 1, Conv, [64, 6, 2, 2]], # 0-P1/2
    [-1, 1, Conv, [128, 3, 2]], # 1-P2/4
    [-1, 1, C3, [128]],
    [-1, 1, Conv, [256, 3, 2]], # 3-P3/8
    [-1, 1, C3, [256]],
    [-1, 1, Conv, [512, 3, 2]], # 5-P4/16
    [-1, 1, C3, [512]],
    [-1, 1, Conv, [1024, 3, 2]], # 7-P5/32
    [-1, 1, C3, [1024]],
    [-1, 1, SPPF, [1024, 5]], # 9
  ]

head:
  [
    [-1, 1, Conv, [512, 1, 1]],
    [-1, 1, nn.Upsample, [None, 2, "nearest"]],
    [[-1, 6], 1, Concat, [1]], # cat backbone P4
    [-1, 1, C3, [512, False]], # 13
    [-1, 1, Conv, [256, 1, 1]],
    [-1, 1, nn.Upsample, [None, 2, "nearest"]],
    [[-1, 4], 1, Concat, [1]], # cat backbone P3
    [-1, 1, C3, [256, False]], # 17 (P3/8-small)
    [-1, 1, Conv, [256, 3, 2]],
    [[-1, 14], 1, Concat, [1]], # cat head P4
    [-1, 1, C3, [512, False]], # 20 (P4/16-medium)
    [-1, 1, Conv, [512, 3, 2]],
    [[-1, 10], 1, Concat, [1]], # cat head P5
    [-1, 1, C3, [1024, False]], # 23 (P5/32-large)
    [[17, 20, 23], 1, Detect, [nc, anchors]], # Detect(P3, P4, P5)
  ]
""",
    "models/common.py": '''
"""Common modules."""
import math
import warnings

import torch
import torch.nn as nn

from utils.general import smart_inference_mode


def autopad(k, p=None, d=1):
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class Conv(nn.Module):
    default_act = nn.SiLU()  # default activation

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x):
        return self.act(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y1 = self.m(x)
            y2 = self.m(y1)
            return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


def copy_attr(a, b, include=(), exclude=()):
    for k, v in b.__dict__.items():
        if (len(include) and k not in include) or k.startswith("_") or k in exclude:
            continue
        else:
            setattr(a, k, v)


class AutoShape(nn.Module):
    """Input-robust model wrapper (cv2/np/PIL/torch inputs; only the torch path in this copy)."""

    conf = 0.25  # NMS confidence threshold
    iou = 0.45  # NMS IoU threshold
    agnostic = False
    multi_label = False
    classes = None
    max_det = 1000
    amp = False

    def __init__(self, model, verbose=True):
        super().__init__()
        copy_attr(self, model, include=("yaml", "nc", "hyp", "names", "stride", "abc"), exclude=())
        self.dmb = False
        self.pt = True
        self.model = model.eval()
        m = self.model.model[-1]  # Detect()
        m.inplace = False  # Detect.inplace=False for safe multithread inference
        m.export = True  # do not output loss values

    def _apply(self, fn):
        self = super()._apply(fn)
        m = self.model.model[-1]
        m.stride = fn(m.stride)
        m.grid = list(map(fn, m.grid))
        if isinstance(m.anchor_grid, list):
            m.anchor_grid = list(map(fn, m.anchor_grid))
        return self

    @smart_inference_mode()
    def forward(self, ims, size=640, augment=False, profile=False):
        p = next(self.model.parameters())
        if isinstance(ims, torch.Tensor):  # torch
            return self.model(ims.to(p.device).type_as(p), augment=augment)
        raise NotImplementedError("file/URL/PIL/numpy inputs are not part of this copy")
''',
    "models/yolo.py": '''
"""YOLO-specific modules."""
import contextlib
import math
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn as nn

from models.common import C3, SPPF, Bottleneck, Concat, Conv
from utils.general import make_divisible
from utils.torch_utils import fuse_conv_and_bn, initialize_weights


class Detect(nn.Module):
    stride = None  # strides computed during build
    dynamic = False  # force grid reconstruction
    export = False  # export mode

    def __init__(self, nc=80, anchors=(), ch=(), inplace=True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                if self.dynamic or self.grid[i].shape[2:4] != x[i].shape[2:4]:
                    self.grid[i], self.anchor_grid[i] = self._make_grid(nx, ny, i)
                xy, wh, conf = x[i].sigmoid().split((2, 2, self.nc + 1), 4)
                xy = (xy * 2 + self.grid[i]) * self.stride[i]
                wh = (wh * 2) ** 2 * self.anchor_grid[i]
                y = torch.cat((xy, wh, conf), 4)
                z.append(y.view(bs, self.na * nx * ny, self.no))
        return x if self.training else (torch.cat(z, 1),) if self.export else (torch.cat(z, 1), x)

    def _make_grid(self, nx=20, ny=20, i=0):
        d = self.anchors[i].device
        t = self.anchors[i].dtype
        shape = 1, self.na, ny, nx, 2
        y, x = torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t)
        yv, xv = torch.meshgrid(y, x, indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view((1, self.na, 1, 1, 2)).expand(shape)
        return grid, anchor_grid


class BaseModel(nn.Module):
    def forward(self, x, profile=False, visualize=False):
        return self._forward_once(x, profile, visualize)

    def _forward_once(self, x, profile=False, visualize=False):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def fuse(self):
        for m in self.model.modules():
            if isinstance(m, Conv) and hasattr(m, "bn"):
                m.conv = fuse_conv_and_bn(m.conv, m.bn)  # update conv
                delattr(m, "bn")  # remove batchnorm
                m.forward = m.forward_fuse  # update forward
        return self

    def _apply(self, fn):
        self = super()._apply(fn)
        m = self.model[-1]
        if isinstance(m, Detect):
            m.stride = fn(m.stride)
            m.grid = list(map(fn, m.grid))
            if isinstance(m.anchor_grid, list):
                m.anchor_grid = list(map(fn, m.anchor_grid))
        return self


class DetectionModel(BaseModel):
    def __init__(self, cfg="yolov5s.yaml", ch=3, nc=None, anchors=None):
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = cfg
        else:
            import yaml

            self.yaml_file = Path(cfg).name
            with open(cfg, encoding="ascii", errors="ignore") as f:
                self.yaml = yaml.safe_load(f)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml["nc"]:
            self.yaml["nc"] = nc
        self.model, self.save = parse_model(deepcopy(self.yaml), ch=[ch])
        self.names = [str(i) for i in range(self.yaml["nc"])]
        self.inplace = self.yaml.get("inplace", True)

        m = self.model[-1]
        if isinstance(m, Detect):
            s = 256
            m.inplace = self.inplace
            m.stride = torch.tensor([s / x.shape[-2] for x in self.forward(torch.zeros(1, ch, s, s))])
            m.anchors /= m.stride.view(-1, 1, 1)
            self.stride = m.stride
            self._initialize_biases()

        initialize_weights(self)

    def forward(self, x, augment=False, profile=False, visualize=False):
        if augment:
            raise NotImplementedError("augmented inference is not part of this copy")
        return self._forward_once(x, profile, visualize)

    def _initialize_biases(self, cf=None):
        m = self.model[-1]
        for mi, s in zip(m.m, m.stride):
            b = mi.bias.view(m.na, -1)
            b.data[:, 4] += math.log(8 / (640 / s) ** 2)
            b.data[:, 5 : 5 + m.nc] += math.log(0.6 / (m.nc - 0.99999)) if cf is None else torch.log(cf / cf.sum())
            mi.bias = torch.nn.Parameter(b.view(-1), requires_grad=True)


Model = DetectionModel


def parse_model(d, ch):
    anchors, nc, gd, gw, act = d["anchors"], d["nc"], d["depth_multiple"], d["width_multiple"], d.get("activation")
    if act:
        Conv.default_act = eval(act)
    na = (len(anchors[0]) // 2) if isinstance(anchors, list) else anchors
    no = na * (nc + 5)
    layers, save, c2 = [], [], ch[-1]
    for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
        m = eval(m) if isinstance(m, str) else m
        for j, a in enumerate(args):
            with contextlib.suppress(NameError):
                args[j] = eval(a) if isinstance(a, str) else a
        n = n_ = max(round(n * gd), 1) if n > 1 else n
        if m in {Conv, Bottleneck, SPPF, C3}:
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if m in {C3}:
                args.insert(2, n)
                n = 1
        elif m is nn.BatchNorm2d:
            args = [ch[f]]
        elif m is Concat:
            c2 = sum(ch[x] for x in f)
        elif m is Detect:
            args.append([ch[x] for x in f])
            if isinstance(args[1], int):
                args[1] = [list(range(args[1] * 2))] * len(f)
        else:
            c2 = ch[f]
        m_ = nn.Sequential(*(m(*args) for _ in range(n))) if n > 1 else m(*args)
        t = str(m)[8:-2].replace("__main__.", "")
        np = sum(x.numel() for x in m_.parameters())
        m_.i, m_.f, m_.type, m_.np = i, f, t, np
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(m_)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(save)
''',
    "utils/__init__.py": "",
    "utils/general.py": """
import math

import torch


def make_divisible(x, divisor):
    if isinstance(divisor, torch.Tensor):
        divisor = int(divisor.max())
    return math.ceil(x / divisor) * divisor


def intersect_dicts(da, db, exclude=()):
    return {k: v for k, v in da.items() if k in db and all(x not in k for x in exclude) and v.shape == db[k].shape}


def smart_inference_mode(torch_1_9=True):
    def decorate(fn):
        return (torch.inference_mode if torch_1_9 else torch.no_grad)()(fn)

    return decorate
""",
    "utils/torch_utils.py": """
import torch
import torch.nn as nn


def initialize_weights(model):
    for m in model.modules():
        t = type(m)
        if t is nn.Conv2d:
            pass
        elif t is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03
        elif t in [nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU]:
            m.inplace = True


def fuse_conv_and_bn(conv, bn):
    fusedconv = (
        nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
        .requires_grad_(False)
        .to(conv.weight.device)
    )
    w_conv = conv.weight.view(conv.out_channels, -1)
    w_bn = torch.diag(bn.weight.div(torch.sqrt(bn.eps + bn.running_var)))
    fusedconv.weight.copy_(torch.mm(w_bn, w_conv).view(fusedconv.weight.shape))
    b_conv = torch.zeros(conv.weight.shape[0], device=conv.weight.device) if conv.bias is None else conv.bias
    b_bn = bn.bias - bn.weight.mul(bn.running_mean).div(torch.sqrt(bn.running_var + bn.eps))
    fusedconv.bias.copy_(torch.mm(w_bn, b_conv.reshape(-1, 1)).reshape(-1) + b_bn)
    return fusedconv
""",
}

EFFNET_FILES = {
    "hubconf.py": """
dependencies = ["torch", "math"]

import functools
import sys

from geffnet import gen_efficientnet as _gen
from geffnet.gen_efficientnet import _ARCHS, create_model

# timm/gen-efficientnet style: one entrypoint per architecture, generated in a loop
for _name in _ARCHS:
    setattr(sys.modules[__name__], _name, _gen._entrypoint(_name))

# and one as a functools.partial of the factory
mobilenetv3_partial = functools.partial(create_model, "mobilenetv3_small_050")
""",
    "geffnet/__init__.py": """
from .gen_efficientnet import *
from .config import set_layer_config
""",
    "geffnet/config.py": """
_EXPORTABLE = False
_SCRIPTABLE = False


def set_layer_config(scriptable=None, exportable=None):
    global _EXPORTABLE, _SCRIPTABLE
    if exportable is not None:
        _EXPORTABLE = exportable
    if scriptable is not None:
        _SCRIPTABLE = scriptable
""",
    "geffnet/activations.py": """
import torch
from torch import nn
from torch.nn import functional as F


def swish(x, inplace: bool = False):
    return x.mul_(x.sigmoid()) if inplace else x.mul(x.sigmoid())


def sigmoid(x, inplace: bool = False):
    return x.sigmoid_() if inplace else x.sigmoid()


def hard_sigmoid(x, inplace: bool = False):
    return F.relu6(x + 3.0, inplace=inplace) / 6.0


class HardSwish(nn.Module):
    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return x * F.relu6(x + 3.0) / 6.0


def get_act_fn(name="relu"):
    return {"sigmoid": torch.sigmoid, "hard_sigmoid": hard_sigmoid, "swish": swish}[name]


def get_act_layer(name="relu"):
    return {"relu": nn.ReLU, "swish": nn.SiLU, "hard_swish": HardSwish, "relu6": nn.ReLU6}[name]
""",
    "geffnet/efficientnet_builder.py": '''
import math
from copy import deepcopy
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from .activations import get_act_fn, get_act_layer, sigmoid

BN_MOMENTUM_TF_DEFAULT = 1 - 0.99
BN_EPS_TF_DEFAULT = 1e-3
_BN_ARGS_TF = dict(momentum=BN_MOMENTUM_TF_DEFAULT, eps=BN_EPS_TF_DEFAULT)


def resolve_bn_args(kwargs):
    bn_args = _BN_ARGS_TF.copy() if kwargs.pop("bn_tf", False) else {}
    bn_momentum = kwargs.pop("bn_momentum", None)
    if bn_momentum is not None:
        bn_args["momentum"] = bn_momentum
    bn_eps = kwargs.pop("bn_eps", None)
    if bn_eps is not None:
        bn_args["eps"] = bn_eps
    return bn_args


def make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def round_channels(channels, multiplier=1.0, divisor=8, channel_min=None):
    if not multiplier:
        return channels
    return make_divisible(channels * multiplier, divisor, channel_min)


def drop_connect(inputs, training: bool = False, drop_connect_rate: float = 0.0):
    """Apply drop connect."""
    if not training:
        return inputs
    keep_prob = 1 - drop_connect_rate
    random_tensor = keep_prob + torch.rand((inputs.size()[0], 1, 1, 1), dtype=inputs.dtype, device=inputs.device)
    random_tensor.floor_()
    return inputs.div(keep_prob) * random_tensor


class SqueezeExcite(nn.Module):
    def __init__(self, in_chs, se_ratio=0.25, reduced_base_chs=None, act_layer=nn.ReLU, gate_fn=sigmoid, divisor=1):
        super().__init__()
        reduced_chs = make_divisible((reduced_base_chs or in_chs) * se_ratio, divisor)
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
    def __init__(self, in_chs, out_chs, kernel_size, stride=1, act_layer=nn.ReLU, norm_layer=nn.BatchNorm2d, norm_kwargs=None):
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False)
        self.bn1 = norm_layer(out_chs, **norm_kwargs)
        self.act1 = act_layer(inplace=True)

    def forward(self, x):
        return self.act1(self.bn1(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_chs, out_chs, dw_kernel_size=3, stride=1, act_layer=nn.ReLU, se_ratio=0.0,
                 se_kwargs=None, norm_layer=nn.BatchNorm2d, norm_kwargs=None, drop_connect_rate=0.0):
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        self.has_se = se_ratio is not None and se_ratio > 0.0
        self.has_residual = stride == 1 and in_chs == out_chs
        self.drop_connect_rate = drop_connect_rate
        self.conv_dw = nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, dw_kernel_size // 2, groups=in_chs, bias=False)
        self.bn1 = norm_layer(in_chs, **norm_kwargs)
        self.act1 = act_layer(inplace=True)
        if self.has_se:
            se_kwargs = dict(se_kwargs or {})
            se_kwargs.setdefault("act_layer", act_layer)
            self.se = SqueezeExcite(in_chs, se_ratio=se_ratio, **se_kwargs)
        else:
            self.se = nn.Identity()
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = norm_layer(out_chs, **norm_kwargs)

    def forward(self, x):
        residual = x
        x = self.act1(self.bn1(self.conv_dw(x)))
        x = self.se(x)
        x = self.bn2(self.conv_pw(x))
        if self.has_residual:
            if self.drop_connect_rate > 0.0:
                x = drop_connect(x, self.training, self.drop_connect_rate)
            x += residual
        return x


class InvertedResidual(nn.Module):
    def __init__(self, in_chs, out_chs, dw_kernel_size=3, stride=1, act_layer=nn.ReLU, exp_ratio=1.0,
                 se_ratio=0.0, se_kwargs=None, norm_layer=nn.BatchNorm2d, norm_kwargs=None, drop_connect_rate=0.0):
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.has_se = se_ratio is not None and se_ratio > 0.0
        self.has_residual = in_chs == out_chs and stride == 1
        self.drop_connect_rate = drop_connect_rate
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = norm_layer(mid_chs, **norm_kwargs)
        self.act1 = act_layer(inplace=True)
        self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, dw_kernel_size // 2, groups=mid_chs, bias=False)
        self.bn2 = norm_layer(mid_chs, **norm_kwargs)
        self.act2 = act_layer(inplace=True)
        if self.has_se:
            se_kwargs = dict(se_kwargs or {})
            self.se = SqueezeExcite(mid_chs, se_ratio=se_ratio, reduced_base_chs=in_chs, **se_kwargs)
        else:
            self.se = nn.Identity()
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = norm_layer(out_chs, **norm_kwargs)

    def forward(self, x):
        residual = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        x = self.se(x)
        x = self.bn3(self.conv_pwl(x))
        if self.has_residual:
            if self.drop_connect_rate > 0.0:
                x = drop_connect(x, self.training, self.drop_connect_rate)
            x += residual
        return x


def _decode_block_str(block_str):
    """'ir_r2_k3_s2_e6_c24_se0.25' -> (type, repeats, kwargs)."""
    ops = block_str.split("_")
    block_type, options = ops[0], {}
    for op in ops[1:]:
        key = op[0] if op[0] != "s" or not op.startswith("se") else "se"
        options[key] = op[len(key):]
    kw = dict(dw_kernel_size=int(options["k"]), stride=int(options["s"]), out_chs=int(options["c"]),
              se_ratio=float(options.get("se", 0.0)))
    if block_type == "ir":
        kw["exp_ratio"] = float(options["e"])
    return block_type, int(options["r"]), kw


class EfficientNetBuilder:
    def __init__(self, channel_multiplier=1.0, act_layer=None, se_kwargs=None, norm_layer=nn.BatchNorm2d,
                 norm_kwargs=None, drop_connect_rate=0.0):
        self.channel_multiplier = channel_multiplier
        self.act_layer = act_layer
        self.se_kwargs = se_kwargs
        self.norm_layer = norm_layer
        self.norm_kwargs = norm_kwargs
        self.drop_connect_rate = drop_connect_rate
        self.in_chs = None
        self.block_idx = 0
        self.block_count = 0

    def _make_block(self, block_type, ba):
        bt = block_type
        ba["in_chs"] = self.in_chs
        ba["out_chs"] = round_channels(ba["out_chs"], self.channel_multiplier)
        ba["norm_layer"] = self.norm_layer
        ba["norm_kwargs"] = self.norm_kwargs
        ba["act_layer"] = self.act_layer
        ba["se_kwargs"] = self.se_kwargs
        ba["drop_connect_rate"] = self.drop_connect_rate * self.block_idx / self.block_count
        block = InvertedResidual(**ba) if bt == "ir" else DepthwiseSeparableConv(**ba)
        self.in_chs = ba["out_chs"]
        return block

    def __call__(self, in_chs, arch_def):
        self.in_chs = in_chs
        decoded = [[_decode_block_str(s) for s in stage] for stage in arch_def]
        self.block_count = sum(r for stage in decoded for _, r, _ in stage)
        self.block_idx = 0
        stages = []
        for stage in decoded:
            blocks = []
            for block_type, repeats, kw in stage:
                for r in range(repeats):
                    ba = deepcopy(kw)
                    if r >= 1:
                        ba["stride"] = 1
                    blocks.append(self._make_block(block_type, ba))
                    self.block_idx += 1
            stages.append(nn.Sequential(*blocks))
        return stages
''',
    "geffnet/gen_efficientnet.py": '''
"""Generic EfficientNet / MobileNetV3 (gen-efficientnet-pytorch style copy, narrowed for tests)."""
import functools
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from .activations import HardSwish, get_act_fn, get_act_layer, hard_sigmoid
from .efficientnet_builder import (BN_EPS_TF_DEFAULT, EfficientNetBuilder, _BN_ARGS_TF, resolve_bn_args,
                                   round_channels)

__all__ = ["GenEfficientNet", "create_model", "efficientnet_b0", "mnasnet_a1", "mobilenetv3_small_050"]

_ARCHS = {
    "efficientnet_b0": dict(
        arch_def=[["ds_r1_k3_s1_e1_c8_se0.25"], ["ir_r2_k3_s2_e6_c12_se0.25"], ["ir_r2_k5_s2_e6_c16_se0.25"]],
        act="swish", gate="sigmoid", bn_tf=False, drop_connect_rate=0.2, num_features=64,
        default_cfg={"url": "", "input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.875,
                     "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "first_conv": "conv_stem",
                     "classifier": "classifier"},
    ),
    "tf_efficientnet_b0": dict(
        arch_def=[["ds_r1_k3_s1_e1_c8_se0.25"], ["ir_r2_k3_s2_e6_c12_se0.25"], ["ir_r1_k5_s2_e6_c16_se0.25"]],
        act="swish", gate="sigmoid", bn_tf=True, drop_connect_rate=0.2, num_features=64,
        default_cfg={"url": "", "input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.875,
                     "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    ),
    "mobilenetv3_small_050": dict(
        arch_def=[["ds_r1_k3_s2_e1_c8_se0.25"], ["ir_r2_k3_s2_e4_c12"], ["ir_r1_k5_s2_e6_c16_se0.25"]],
        act="hard_swish", gate="hard_sigmoid", bn_tf=False, drop_connect_rate=0.0, num_features=32,
        default_cfg={"url": "", "input_size": (3, 32, 32), "interpolation": "bilinear"},
    ),
}


class GenEfficientNet(nn.Module):
    def __init__(self, block_args, num_classes=10, in_chans=3, num_features=64, stem_size=16,
                 channel_multiplier=1.0, act_layer=nn.ReLU, drop_rate=0.0, drop_connect_rate=0.0,
                 se_kwargs=None, norm_layer=nn.BatchNorm2d, norm_kwargs=None):
        super().__init__()
        self.drop_rate = drop_rate
        stem_size = round_channels(stem_size, channel_multiplier)
        self.conv_stem = nn.Conv2d(in_chans, stem_size, 3, 2, 1, bias=False)
        self.bn1 = norm_layer(stem_size, **(norm_kwargs or {}))
        self.act1 = act_layer(inplace=True)
        builder = EfficientNetBuilder(channel_multiplier, act_layer, se_kwargs, norm_layer, norm_kwargs,
                                      drop_connect_rate)
        self.blocks = nn.Sequential(*builder(stem_size, block_args))
        self.conv_head = nn.Conv2d(builder.in_chs, num_features, 1, bias=False)
        self.bn2 = norm_layer(num_features, **(norm_kwargs or {}))
        self.act2 = act_layer(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(num_features, num_classes)
        for n, m in self.named_modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1.0)
                m.bias.data.zero_()

    def features(self, x):
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        return self.act2(self.bn2(self.conv_head(x)))

    def as_sequential(self):
        layers = [self.conv_stem, self.bn1, self.act1]
        layers.extend(self.blocks)
        layers.extend([self.conv_head, self.bn2, self.act2, self.global_pool, nn.Flatten(), nn.Dropout(self.drop_rate),
                       self.classifier])
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.features(x)
        x = self.global_pool(x).flatten(1)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return self.classifier(x)


def _gen_model(variant, pretrained=False, **kwargs):
    arch = _ARCHS[variant]
    bn_args = resolve_bn_args({"bn_tf": arch["bn_tf"], **{k: kwargs.pop(k) for k in ("bn_eps", "bn_momentum") if k in kwargs}})
    norm_layer = partial(nn.BatchNorm2d, **bn_args) if bn_args else nn.BatchNorm2d
    model = GenEfficientNet(
        arch["arch_def"], num_features=arch["num_features"], act_layer=get_act_layer(arch["act"]),
        drop_connect_rate=kwargs.pop("drop_connect_rate", arch["drop_connect_rate"]),
        se_kwargs=dict(gate_fn=get_act_fn(arch["gate"]), act_layer=nn.ReLU),
        norm_layer=norm_layer, **kwargs,
    )
    model.default_cfg = dict(arch["default_cfg"])
    return model


def create_model(model_name="efficientnet_b0", pretrained=False, num_classes=10, in_chans=3, checkpoint_path="",
                 **kwargs):
    """Create a model by name (timm's create_model)."""
    model = _gen_model(model_name, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    return model


def _entrypoint(name):
    def fn(pretrained=False, **kwargs):
        return create_model(name, pretrained=pretrained, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"{name} (generated entrypoint)"
    return fn


efficientnet_b0 = _entrypoint("efficientnet_b0")
mnasnet_a1 = _entrypoint("tf_efficientnet_b0")
mobilenetv3_small_050 = _entrypoint("mobilenetv3_small_050")
''',
}

SILERO_HUBCONF = '''
dependencies = ["torch"]
import os

import torch

from utils_vad import (VADIterator, collect_chunks, get_speech_timestamps, init_jit_model, read_audio,
                       save_audio)


def silero_vad(onnx=False, force_onnx_cpu=False):
    """Silero Voice Activity Detector: returns (model, utils)."""
    model_dir = os.path.join(os.path.dirname(__file__), "files")
    model = init_jit_model(os.path.join(model_dir, "silero_vad.jit"))
    utils = (get_speech_timestamps, save_audio, read_audio, VADIterator, collect_chunks)
    return model, utils


def silero_vad_jit():
    """Only the TorchScript model."""
    model_dir = os.path.join(os.path.dirname(__file__), "files")
    return init_jit_model(os.path.join(model_dir, "silero_vad.jit"))
'''

SILERO_UTILS = """
import torch


def init_jit_model(model_path, device=torch.device("cpu")):
    model = torch.jit.load(model_path, map_location=device)
    model.eval()
    return model


def read_audio(path, sampling_rate=16000):
    raise NotImplementedError


def save_audio(path, tensor, sampling_rate=16000):
    raise NotImplementedError


def get_speech_timestamps(audio, model, threshold=0.5, sampling_rate=16000):
    return []


def collect_chunks(tss, wav):
    return wav


class VADIterator:
    def __init__(self, model, threshold=0.5, sampling_rate=16000):
        self.model = model
"""
