"""Models rebuilt by ``export`` accept any batch size when torch can trace one (real repos, end to end).

DINOv2's ``forward(self, *args, is_training=False, **kwargs)`` and IBN-Net's
instance norm over half the channels were exported with the example's batch
size fixed, silently: the loaded model then refused a batch of 2. Here both
go through the real git server, the real sandbox (the child exports) and the
parent's rebuild, with a batch-1 example input (what ``--example-input``
suggests), and the rebuilt model is called with other batch sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

import securehub
from tests._hub_helpers import NEEDS_FULL_SANDBOX, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = """
import torch
from torch import nn

dependencies = ["torch"]


class VarArgsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, *args, is_training=False, **kwargs):
        return self.fc(args[0])


class IBNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.inorm = nn.InstanceNorm2d(4, affine=True)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        a, b = torch.split(self.conv(x), 4, 1)
        return torch.cat((self.inorm(a.contiguous()), self.bn(b.contiguous())), 1).mean((2, 3))


def varargs():
    torch.manual_seed(1)
    return VarArgsNet().eval()


def ibn():
    torch.manual_seed(2)
    return IBNNet().eval()


class ByBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) * 2 if x.shape[0] == 3 else self.fc(x)


def by_batch():
    torch.manual_seed(3)
    return ByBatch().eval()
"""


@pytest.mark.parametrize(("entrypoint", "shape"), [("varargs", (4,)), ("ibn", (3, 8, 8))])
def test_exported_model_takes_other_batch_sizes(
    tmp_path: Path, git_server: GitServer, entrypoint: str, shape: tuple[int, ...]
) -> None:
    with hub_env_context(tmp_path, git_server) as env:
        repo = publish(env, "dynbatch", {"hubconf.py": HUBCONF})
        model = securehub.load(env.spec(repo), entrypoint, example_inputs=(torch.randn(1, *shape),), verbose=False)
        assert audit_records(env)[-1]["strategy"] == "export"
        ns: dict[str, Any] = {}
        exec(compile(HUBCONF, "hubconf.py", "exec"), ns)  # noqa: S102 - the test's own reference code
        reference = ns[entrypoint]()
        with torch.no_grad():
            for batch in (1, 2, 5):
                x = torch.randn(batch, *shape)
                assert torch.allclose(model(x), reference(x), atol=1e-6)


@pytest.mark.parametrize(
    ("entrypoint", "says"),
    [
        ("varargs", "(any batch size; every other input dimension is fixed to the example inputs)"),
        (
            "by_batch",
            "(input shapes fixed to the example inputs, batch size included: torch could not export a "
            "symbolic batch for this model)",
        ),
    ],
)
def test_the_verbose_line_says_which_input_shapes_an_exported_model_takes(
    tmp_path: Path, git_server: GitServer, capsys: pytest.CaptureFixture[str], entrypoint: str, says: str
) -> None:
    """A model torch cannot export with a symbolic batch is no longer fixed silently."""
    with hub_env_context(tmp_path, git_server) as env:
        repo = publish(env, "dynbatch-say", {"hubconf.py": HUBCONF})
        example = (torch.randn(3, 4),)
        securehub.load(env.spec(repo), entrypoint, example_inputs=example, verbose=True)
    assert f"rebuilt with the 'export' strategy {says}; isolation" in capsys.readouterr().err
