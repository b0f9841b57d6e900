"""Models rebuilt by ``export`` take other image sizes when torch can trace them (end to end).

chenyaofo's CIFAR ResNets, locked with ``--example-input auto``, got 1x3x224x224 as their example
(the first candidate a model with adaptive pooling accepts), and the loaded model then refused
``torch.randn(2, 3, 32, 32)`` -- what every CIFAR user feeds it -- because only the batch was
symbolic. Here a CIFAR-ResNet-like repo class goes through the real git server, ``lock -e
--example-input auto`` under strict (two sandbox runs that must agree on the pinned program), a
strict load from that lock (the sandbox child exports, the parent rebuilds), and calls at 32x32,
at the auto size and at another; a ViT-like class with fixed position embeddings keeps fixed
H and W and says so when called with another size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import securehub
from securehub.pipeline.lock import lock_repos
from tests._hub_helpers import NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = '''
import torch
from torch import nn

dependencies = ["torch"]


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + identity)


class CifarResNet(nn.Module):
    """chenyaofo/pytorch-cifar-models' layout, narrower: 3x3 stem, three stages, AdaptiveAvgPool2d."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = BasicBlock(8, 8)
        self.layer2 = BasicBlock(8, 16, 2)
        self.layer3 = BasicBlock(16, 32, 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class PatchViT(nn.Module):
    """Fixed position embeddings for 224x224 in 32x32 patches: torch fixes H and W."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 32, stride=32)
        self.pos = nn.Parameter(torch.zeros(1, 49, 8))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head((self.patch(x).flatten(2).transpose(1, 2) + self.pos).mean(1))


def cifar10_resnet(pretrained=False):
    torch.manual_seed(7)
    model = CifarResNet()
    model.train()
    model(torch.randn(4, 3, 32, 32))  # non-default batch-norm statistics
    return model.eval()


def patch_vit():
    torch.manual_seed(8)
    return PatchViT().eval()
'''


def _direct(entrypoint: str) -> Any:
    ns: dict[str, Any] = {}
    exec(compile(HUBCONF, "hubconf.py", "exec"), ns)  # noqa: S102 - the test's own reference code
    return ns[entrypoint]()


def test_cifar_resnet_locked_with_auto_inputs_runs_at_32x32_and_at_the_auto_size(
    tmp_path: Path, git_server: GitServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with hub_env_context(tmp_path, git_server) as env:
        repo = publish(env, "cifar-sizes", {"hubconf.py": HUBCONF})
        spec = env.spec(repo)
        lock = env.root / "hub.lock"
        lock_repos([spec], entrypoints=["cifar10_resnet"], policy="strict", lock=lock, example_inputs=["auto"])
        entry = json.loads(lock.read_bytes())["repos"][spec]["entrypoints"]["cifar10_resnet"]
        assert entry["example_inputs"] == [{"shape": [1, 3, 224, 224], "dtype": "float32"}]
        before = lock.read_bytes()
        capsys.readouterr()
        model = securehub.load(spec, "cifar10_resnet", policy="strict", lock=lock, verbose=True)
        assert audit_records(env)[-1]["strategy"] == "export"
        assert "(any batch size, and any size of input 0 dims 2, 3; every other" in capsys.readouterr().err
        assert lock.read_bytes() == before
    reference = _direct("cifar10_resnet")
    with torch.no_grad():
        for shape in ((2, 3, 32, 32), (1, 3, 224, 224), (3, 3, 64, 48)):
            x = torch.randn(*shape)
            assert torch.allclose(model(x), reference(x), rtol=1e-5, atol=1e-5), shape


def test_vit_with_fixed_position_embeddings_keeps_fixed_sizes_and_names_them(
    tmp_path: Path, git_server: GitServer
) -> None:
    with hub_env_context(tmp_path, git_server) as env:
        repo = publish(env, "vit-sizes", {"hubconf.py": HUBCONF})
        model = securehub.load(
            env.spec(repo), "patch_vit", example_inputs=(torch.randn(1, 3, 224, 224),), verbose=False
        )
        assert audit_records(env)[-1]["strategy"] == "export"
    reference = _direct("patch_vit")
    with torch.no_grad():
        x = torch.randn(2, 3, 224, 224)
        assert torch.allclose(model(x), reference(x), atol=1e-6)
        with pytest.raises(RuntimeError) as excinfo:
            model(torch.randn(2, 3, 32, 32))
    message = str(excinfo.value)
    assert "fixed: input 0 dim 1 = 3, input 0 dim 2 = 224, input 0 dim 3 = 224." in message
    assert "--example-input" in message
