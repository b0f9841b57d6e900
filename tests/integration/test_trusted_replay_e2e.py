"""Real hub-repo patterns rebuilt by the ``trusted`` strategy (issue 10 items 1-2, SPEC section 7).

Patterns copied from real repositories that failed before: a ``Sequential``/``ModuleList`` filled with
``.append()`` in a loop, torchvision densenet's ``nn.Sequential(OrderedDict(...))``,
``functools.partial(nn.LayerNorm, eps=1e-6)`` and ``act_layer=nn.GELU`` handed to a block factory, a
``partial`` of an activation passed to a torch.nn constructor, and data attributes (``model.names``,
``model.cfg``, ``model.some_attr``) set after construction. Each is loaded through the real git server,
sandbox and torch under ``default`` and ``permissive``, rebuilt with ``trusted`` (never ``source``), and
must compute exactly what the model built directly computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

import securehub
from tests._hub_helpers import NEEDS_FULL_SANDBOX, HubEnv, audit_records, hub_env_context, publish
from tests._servers import GitServer

pytestmark = NEEDS_FULL_SANDBOX

HUBCONF = """
import functools
from collections import OrderedDict

import torch
from torch import nn
import torch.nn.functional as F

dependencies = ["torch"]


def appended():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.append(nn.Linear(4, 8))
    for _ in range(3):
        model.append(nn.Sequential(nn.Linear(8, 8), nn.ReLU()))
    model.insert(1, nn.Tanh())
    heads = nn.ModuleList()
    for _ in range(2):
        heads.append(nn.Linear(8, 2))
    heads.insert(0, nn.Linear(8, 3))
    return nn.ModuleDict({"body": model, "heads": heads}).eval()


def _block(dim, norm_layer=nn.LayerNorm, act_layer=nn.ReLU):
    return nn.Sequential(norm_layer(dim), nn.Linear(dim, 2 * dim), act_layer(), nn.Linear(2 * dim, dim))


def partials():
    torch.manual_seed(0)
    norm_layer = functools.partial(nn.LayerNorm, eps=1e-6)
    blocks = nn.ModuleList()
    for _ in range(2):
        blocks.append(_block(8, norm_layer=norm_layer, act_layer=nn.GELU))
    encoder = nn.TransformerEncoderLayer(
        8, 2, 16, dropout=0.0, batch_first=True, activation=functools.partial(F.gelu, approximate="tanh")
    )
    return nn.Sequential(nn.Linear(4, 8), *blocks, encoder).eval()


def with_attrs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    model.names = ["cat", "dog", "bird"]
    model.cfg = {"depth": 2, "scale": (0.5, 1.0), "nested": {"a": [1, 2]}}
    model.some_attr = "text"
    model[2].stride_hint = 16
    return model.eval()


def named_blocks():
    torch.manual_seed(0)
    features = nn.Sequential(OrderedDict([("conv0", nn.Conv2d(3, 4, 3, padding=1, bias=False)),
                                          ("norm0", nn.BatchNorm2d(4)), ("relu0", nn.ReLU(inplace=True))]))
    for i in range(2):
        features.add_module(f"denselayer{i + 1}", nn.Sequential(OrderedDict(
            norm=nn.BatchNorm2d(4), relu=nn.ReLU(), conv=nn.Conv2d(4, 4, 1))))
    model = nn.Sequential(OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(),
                                      classifier=nn.Linear(4, 3)))
    model.class_to_idx = OrderedDict([("zebra", 0), ("ant", 1), ("moth", 2)])
    return model.eval()
"""


def _direct(entrypoint: str) -> nn.Module:
    namespace: dict[str, Any] = {}
    exec(compile(HUBCONF, "hubconf.py", "exec"), namespace)  # noqa: S102 - the test's own model code
    model: nn.Module = namespace[entrypoint]()
    return model


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[tuple[HubEnv, str]]:
    with hub_env_context(tmp_path_factory.mktemp("trusted-replay-e2e"), git_server) as hub_env:
        repo = publish(hub_env, "trusted-patterns", {"hubconf.py": HUBCONF})
        yield hub_env, hub_env.spec(repo)


def _load(env: tuple[HubEnv, str], entrypoint: str, policy: str) -> nn.Module:
    hub_env, spec = env
    model = securehub.load(spec, entrypoint, policy=policy, verbose=False, force_reload=True)
    record = audit_records(hub_env)[-1]
    assert record["outcome"] == "ok" and record["strategy"] == "trusted", record
    return model


def _same_output(loaded: nn.Module, direct: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert torch.equal(loaded(x), direct(x))
    assert [n for n, _ in loaded.named_modules()] == [n for n, _ in direct.named_modules()]
    assert [type(m) for m in loaded.modules()] == [type(m) for m in direct.modules()]


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_appended_sequential_and_modulelist(env: tuple[HubEnv, str], policy: str) -> None:
    loaded, direct = _load(env, "appended", policy), _direct("appended")
    x = torch.randn(3, 4)
    _same_output(loaded["body"], direct["body"], x)
    assert isinstance(loaded["body"][1], nn.Tanh)
    with torch.no_grad():
        features = direct["body"](x)
        for mine, theirs in zip(loaded["heads"], direct["heads"], strict=True):
            assert torch.equal(mine(features), theirs(features))
    assert [m.out_features for m in loaded["heads"]] == [3, 2, 2]


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_partial_norm_layer_and_class_act_layer(env: tuple[HubEnv, str], policy: str) -> None:
    loaded = _load(env, "partials", policy)
    direct = _direct("partials")
    _same_output(loaded, direct, torch.randn(2, 5, 4))
    assert loaded[1][0].eps == 1e-6 and isinstance(loaded[1][2], nn.GELU)
    activation = loaded[3].activation
    assert activation.func is torch.nn.functional.gelu and activation.keywords == {"approximate": "tanh"}


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_data_attributes_set_after_construction(env: tuple[HubEnv, str], policy: str) -> None:
    loaded = _load(env, "with_attrs", policy)
    _same_output(loaded, _direct("with_attrs"), torch.randn(2, 4))
    assert loaded.names == ["cat", "dog", "bird"]
    assert loaded.cfg == {"depth": 2, "scale": (0.5, 1.0), "nested": {"a": [1, 2]}}
    assert loaded.some_attr == "text" and loaded[2].stride_hint == 16


@pytest.mark.parametrize("policy", ["default", "permissive"])
def test_sequential_of_an_ordered_dict_and_an_ordered_dict_attribute(env: tuple[HubEnv, str], policy: str) -> None:
    """torchvision densenet's ``nn.Sequential(OrderedDict([("conv0", ...), ...]))``, extended with
    ``add_module``: rebuilt by trusted with its children named and ordered as built (before 2026-12-08 its
    argument had no JSON form and only export or source could rebuild it)."""
    loaded, direct = _load(env, "named_blocks", policy), _direct("named_blocks")
    _same_output(loaded, direct, torch.randn(2, 3, 6, 6))
    assert list(dict(loaded.features.named_children())) == ["conv0", "norm0", "relu0", "denselayer1", "denselayer2"]
    assert list(loaded.class_to_idx.items()) == [("zebra", 0), ("ant", 1), ("moth", 2)]
    assert loaded.state_dict().keys() == direct.state_dict().keys()
