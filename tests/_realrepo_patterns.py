"""Small hub repositories that copy what real torch.hub repos do (issue 10 item 7).

Every pattern is one entrypoint of one generated repository (``hubconf.py`` +
``models.py``), all taking a ``(2, 4)`` float input so one recorded example
input serves them all:

- ``appended``: a ``Sequential`` grown with ``append``/``extend``/``insert`` and a child replaced;
- ``partial_and_class_args``: a timm-style block given ``functools.partial(nn.LayerNorm, eps=1e-6)``
  and ``act_layer=nn.GELU``;
- ``attrs_after``: plain data attributes set on the model after construction;
- ``parametrized``: ``nn.utils.parametrizations.weight_norm`` on a layer of a ``Sequential``;
- ``weight_norm_eval``: pretrained weights stored with weight norm, removed in an overridden ``eval()``;
- ``tied``: two layers sharing one weight;
- ``dyn_5``: an entrypoint created with ``globals().update`` (as some repos build their model zoo);
- ``nested``: ``torch.hub.load`` of another repository inside the entrypoint;
- ``namedtuple_cfg`` / ``dataclass_cfg``: constructor arguments that are a namedtuple / a dataclass;
- ``renamed_keys``: a model that loads an old checkpoint and renames its own submodule in ``__init__``.

:func:`reference_model` builds the same model directly (the generated files
imported the way the sandbox child imports them, RNG seeded at the same two
points, artifacts answered from the local weights), the output every load must equal.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.hub
from safetensors.torch import save
from torch import nn

from securehub._util.determinism import preserved_rng, seed_all

__all__ = [
    "INPUT_SPEC",
    "PATTERNS",
    "REPO_CLASS_PATTERNS",
    "inner_files",
    "outer_files",
    "reference_model",
    "weights",
]

INPUT_SPEC = "2x4:float32"

MODELS = '''
"""Model code in the style of real hub repositories."""
import collections
import dataclasses
import functools

import torch
from torch import nn

Config = collections.namedtuple("Config", ["width", "depth"])


@dataclasses.dataclass
class DataConfig:
    width: int = 4
    hidden: int = 6
    act: str = "gelu"


class TupleNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.Sequential(*[nn.Linear(cfg.width, cfg.width) for _ in range(cfg.depth)])

    def forward(self, x):
        return torch.tanh(self.layers(x))


class DataNet(nn.Module):
    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg
        self.fc1 = nn.Linear(cfg.width, cfg.hidden)
        self.act = nn.GELU() if cfg.act == "gelu" else nn.ReLU()
        self.fc2 = nn.Linear(cfg.hidden, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """timm style: layer classes and partials as constructor arguments."""

    def __init__(self, dim, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU):
        super().__init__()
        self.norm = norm_layer(dim)
        self.fc = nn.Linear(dim, dim * 2)
        self.act = act_layer()
        self.out = nn.Linear(dim * 2, dim)

    def forward(self, x):
        return x + self.out(self.act(self.fc(self.norm(x))))


class WNNet(nn.Module):
    """Weight norm for training, removed in eval() (as vocoders do)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.utils.parametrizations.weight_norm(nn.Linear(4, 6))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(torch.tanh(self.lin(x)))

    def eval(self):
        super().eval()
        if nn.utils.parametrize.is_parametrized(self.lin):
            nn.utils.parametrize.remove_parametrizations(self.lin, "weight")
        return self


class Renamed(nn.Module):
    """Loads a checkpoint written by an older version, then renames its own submodule."""

    def __init__(self, url=None):
        super().__init__()
        self.old_proj = nn.Linear(4, 4)
        self.ln = nn.LayerNorm(4)
        if url is not None:
            self.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False))
        self.encoder = self._modules.pop("old_proj")
        self.norm = self._modules.pop("ln")

    def forward(self, x):
        return self.norm(torch.relu(self.encoder(x)))
'''

HUBCONF = '''
dependencies = ["torch"]
import functools

import torch
from torch import nn

from models import Block, Config, DataConfig, DataNet, Renamed, TupleNet, WNNet


def appended():
    model = nn.Sequential(nn.Linear(4, 8))
    model.append(nn.ReLU())
    model.extend([nn.Linear(8, 8), nn.Tanh()])
    model.insert(1, nn.LayerNorm(8))
    model[3] = nn.Linear(8, 5)  # a child replaced after construction
    return model


def partial_and_class_args():
    return Block(4, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU)


def attrs_after():
    model = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=-1))
    model.class_names = ["cat", "dog", "bird"]
    model.version = 2
    return model


def parametrized():
    return nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 5)), nn.ReLU(), nn.Linear(5, 2))


def weight_norm_eval(pretrained=True):
    model = WNNet()
    if pretrained:
        model.load_state_dict(torch.hub.load_state_dict_from_url("@WN_URL@", progress=False))
    return model


def tied():
    model = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Tanh(), nn.Linear(4, 4, bias=False))
    model[2].weight = model[0].weight
    return model


def _zoo(width):
    def entry():
        return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))

    entry.__doc__ = f"MLP of width {width}"
    return entry


globals().update({f"dyn_{w}": _zoo(w) for w in (3, 5)})


def nested():
    inner = torch.hub.load("@INNER_SPEC@", "lin")
    return nn.Sequential(inner, nn.ReLU())


def namedtuple_cfg():
    return TupleNet(Config(width=4, depth=2))


def dataclass_cfg():
    return DataNet(DataConfig(width=4, hidden=6, act="gelu"))


def renamed_keys(pretrained=True):
    return Renamed("@RENAMED_URL@" if pretrained else None)
'''

INNER_HUBCONF = '''
dependencies = ["torch"]
from torch import nn


def lin():
    return nn.Linear(4, 4)
'''

#: every entrypoint of the generated repository, in the order of the module docstring
PATTERNS: tuple[str, ...] = (
    "appended",
    "partial_and_class_args",
    "attrs_after",
    "parametrized",
    "weight_norm_eval",
    "tied",
    "dyn_5",
    "nested",
    "namedtuple_cfg",
    "dataclass_cfg",
    "renamed_keys",
)
#: patterns whose model class the repository defines (the trusted strategy cannot rebuild them)
REPO_CLASS_PATTERNS = frozenset(
    {"partial_and_class_args", "weight_norm_eval", "namedtuple_cfg", "dataclass_cfg", "renamed_keys"}
)


def _random(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def weights() -> dict[str, dict[str, torch.Tensor]]:
    """The pretrained checkpoints the artifact server serves, by name (``wn``, ``renamed``)."""
    gen = torch.Generator().manual_seed(1234)
    wn = {
        "lin.parametrizations.weight.original0": _random(gen, 6, 1).abs() + 0.5,
        "lin.parametrizations.weight.original1": _random(gen, 6, 4),
        "lin.bias": _random(gen, 6),
        "head.weight": _random(gen, 2, 6),
        "head.bias": _random(gen, 2),
    }
    renamed = {
        "old_proj.weight": _random(gen, 4, 4),
        "old_proj.bias": _random(gen, 4),
        "ln.weight": _random(gen, 4).abs() + 0.5,
        "ln.bias": _random(gen, 4),
    }
    return {"wn": wn, "renamed": renamed}


def checkpoint_bytes(name: str) -> bytes:
    """A checkpoint of :func:`weights` as safetensors bytes."""
    return save(weights()[name])


def outer_files(urls: Mapping[str, str], inner_spec: str) -> dict[str, str]:
    """The pattern repository's files; ``urls`` maps ``wn``/``renamed`` to where their checkpoints are served."""
    hubconf = HUBCONF.replace("@WN_URL@", urls["wn"]).replace("@RENAMED_URL@", urls["renamed"])
    return {"hubconf.py": hubconf.replace("@INNER_SPEC@", inner_spec), "models.py": MODELS}


def inner_files() -> dict[str, str]:
    """The repository the ``nested`` pattern loads with ``torch.hub.load``."""
    return {"hubconf.py": INNER_HUBCONF}


@contextmanager
def _imported_like_the_child(files: Mapping[str, str], root: Path) -> Iterator[Any]:
    """Write ``files`` under ``root``, import hubconf as the child does (tree on sys.path); undo on exit."""
    tree = root / uuid.uuid4().hex
    tree.mkdir(parents=True)
    for name, text in files.items():
        (tree / name).write_text(text)
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    name = f"_securehub_hubconf_{uuid.uuid4().hex}"
    try:
        sys.path.insert(0, str(tree))
        spec = importlib.util.spec_from_file_location(name, tree / "hubconf.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        seed_all()  # where the child seeds: before importing hubconf.py ...
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = saved_path
        for key in set(sys.modules) - saved_modules:
            del sys.modules[key]


def _call_like_the_child(module: Any, entrypoint: str) -> nn.Module:
    seed_all()  # ... and before calling the entrypoint
    model: nn.Module = getattr(module, entrypoint)()
    return model


@contextmanager
def _patched_hub(urls: Mapping[str, str], nested: Callable[..., nn.Module]) -> Iterator[None]:
    by_url = {urls[name]: state for name, state in weights().items()}

    def load_state_dict_from_url(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in by_url[url].items()}

    saved = (torch.hub.load_state_dict_from_url, torch.hub.load)
    torch.hub.load_state_dict_from_url = load_state_dict_from_url
    torch.hub.load = nested
    try:
        yield
    finally:
        torch.hub.load_state_dict_from_url, torch.hub.load = saved


def reference_model(entrypoint: str, urls: Mapping[str, str], inner_spec: str, root: Path) -> nn.Module:
    """The pattern's model built directly from the generated code, as the sandbox child builds it."""

    def nested(repo_or_dir: str, model: str, *args: Any, **kwargs: Any) -> nn.Module:
        assert repo_or_dir == inner_spec and model == "lin"
        with preserved_rng(), _imported_like_the_child(inner_files(), root) as inner:
            return _call_like_the_child(inner, model)  # a nested load runs in its own seeded child

    with preserved_rng(), _patched_hub(urls, nested):
        with _imported_like_the_child(outer_files(urls, inner_spec), root) as module:
            return _call_like_the_child(module, entrypoint)
