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
- ``renamed_keys``: a model that loads an old checkpoint and renames its own submodule in ``__init__``;
- ``frozen_cfg``: a frozen dataclass config (with a tuple field);
- ``wn_removed_in_init``: old-style (hook) weight norm, pretrained weights loaded and weight norm removed
  in ``__init__`` (HiFi-GAN style);
- ``load_hook_renamed`` / ``pre_hook_renamed``: a repo class that loads a checkpoint with old key names,
  renamed by an overridden ``_load_from_state_dict`` / a ``_register_load_state_dict_pre_hook`` hook;
- ``nn_wn_removed``: the same weight-norm removal on plain ``torch.nn`` layers, in the entrypoint;
- ``nn_pre_hook``: a plain ``torch.nn`` model given a load-state-dict pre-hook (a private torch hook
  the trusted strategy must refuse, never drop);
- ``nn_cfg_attr``: a namedtuple config stored on a plain ``torch.nn`` model after construction (no
  plain-data form: trusted and export must refuse it, never drop it or turn it into a bare tuple).

:func:`reference_model` builds the same model directly (the generated files
imported the way the sandbox child imports them, RNG seeded at the same two
points, artifacts answered from the local weights), the output every load must equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.hub
from safetensors.torch import save
from torch import nn

from securehub._util.determinism import preserved_rng, seed_all
from tests._hubconf_import import imported_like_the_child

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


@dataclasses.dataclass(frozen=True)
class FrozenConfig:
    width: int = 4
    widths: tuple = (6, 3)
    eps: float = 1e-5


class FrozenNet(nn.Module):
    def __init__(self, cfg: FrozenConfig):
        super().__init__()
        self.cfg = cfg
        dims = (cfg.width, *cfg.widths)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:]))
        self.norm = nn.LayerNorm(dims[-1], eps=cfg.eps)

    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.norm(x)


class WNRemovedNet(nn.Module):
    """Trained with (old, hook-based) weight norm; the constructor loads and then removes it."""

    def __init__(self, url=None):
        super().__init__()
        self.lin = nn.utils.weight_norm(nn.Linear(4, 6))
        self.head = nn.Linear(6, 2)
        if url is not None:
            self.load_state_dict(torch.hub.load_state_dict_from_url(url, progress=False))
        nn.utils.remove_weight_norm(self.lin)

    def forward(self, x):
        return self.head(torch.tanh(self.lin(x)))


def rename_legacy(state_dict, prefix, old, new):
    for key in list(state_dict):
        if key.startswith(prefix + old):
            state_dict[prefix + new + key[len(prefix + old):]] = state_dict.pop(key)


class LegacyKeysNet(nn.Module):
    """Checkpoints from an older version call the layer ``proj``: renamed while loading."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        rename_legacy(state_dict, prefix, "proj.", "fc.")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


def _legacy_pre_hook(state_dict, prefix, *args):
    rename_legacy(state_dict, prefix, "proj.", "fc.")


class PreHookNet(nn.Module):
    """The same renaming through a load-state-dict pre-hook registered in ``__init__``."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self._register_load_state_dict_pre_hook(_legacy_pre_hook)

    def forward(self, x):
        return torch.tanh(self.fc(x)) * 2
'''

HUBCONF = """
dependencies = ["torch"]
import functools

import torch
from torch import nn

from models import (
    Block, Config, DataConfig, DataNet, FrozenConfig, FrozenNet, LegacyKeysNet, PreHookNet, Renamed, TupleNet,
    WNNet, WNRemovedNet, rename_legacy,
)


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


def frozen_cfg():
    return FrozenNet(FrozenConfig(width=4, widths=(6, 3)))


def wn_removed_in_init(pretrained=True):
    return WNRemovedNet("@WN_OLD_URL@" if pretrained else None)


def _legacy_weights():
    return torch.hub.load_state_dict_from_url("@LEGACY_URL@", progress=False)


def load_hook_renamed():
    model = LegacyKeysNet()
    model.load_state_dict(_legacy_weights())
    return model


def pre_hook_renamed():
    model = PreHookNet()
    model.load_state_dict(_legacy_weights())
    return model


def nn_wn_removed():
    model = nn.Sequential(nn.utils.weight_norm(nn.Linear(4, 6)), nn.Tanh(), nn.Linear(6, 2))
    model.load_state_dict(torch.hub.load_state_dict_from_url("@NN_WN_URL@", progress=False))
    nn.utils.remove_weight_norm(model[0])
    return model


def _legacy_to_sequential(state_dict, prefix, *args):
    rename_legacy(state_dict, prefix, "proj.", "0.")


def nn_pre_hook():
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
    model._register_load_state_dict_pre_hook(_legacy_to_sequential)
    model.load_state_dict(_legacy_weights())
    return model


def nn_cfg_attr():
    model = nn.Sequential(nn.Linear(4, 3), nn.Sigmoid())
    model.cfg = Config(width=4, depth=1)
    return model
"""

INNER_HUBCONF = """
dependencies = ["torch"]
from torch import nn


def lin():
    return nn.Linear(4, 4)
"""

#: every entrypoint of the generated repository, in the order of the module docstring -> whether its
#: model class is defined by the repository (the trusted strategy cannot rebuild those)
_REPO_CLASS: dict[str, bool] = {
    "appended": False,
    "partial_and_class_args": True,
    "attrs_after": False,
    "parametrized": False,
    "weight_norm_eval": True,
    "tied": False,
    "dyn_5": False,
    "nested": False,
    "namedtuple_cfg": True,
    "dataclass_cfg": True,
    "renamed_keys": True,
    "frozen_cfg": True,
    "wn_removed_in_init": True,
    "load_hook_renamed": True,
    "pre_hook_renamed": True,
    "nn_wn_removed": False,
    "nn_pre_hook": False,
    "nn_cfg_attr": False,
}
PATTERNS: tuple[str, ...] = tuple(_REPO_CLASS)
REPO_CLASS_PATTERNS = frozenset(name for name, repo_class in _REPO_CLASS.items() if repo_class)


def _random(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen)


def _weight_norm_net(gen: torch.Generator, g: str, v: str, lin: str = "lin", head: str = "head") -> dict[str, Any]:
    """A weight-normed Linear(4, 6) (magnitude ``g``, direction ``v``) and a Linear(6, 2) head."""
    return {
        f"{lin}.{g}": _random(gen, 6, 1).abs() + 0.5,
        f"{lin}.{v}": _random(gen, 6, 4),
        f"{lin}.bias": _random(gen, 6),
        f"{head}.weight": _random(gen, 2, 6),
        f"{head}.bias": _random(gen, 2),
    }


def weights() -> dict[str, dict[str, torch.Tensor]]:
    """The pretrained checkpoints the artifact server serves, by name (the ``@<NAME>_URL@`` placeholders)."""
    gen = torch.Generator().manual_seed(1234)
    wn = _weight_norm_net(gen, "parametrizations.weight.original0", "parametrizations.weight.original1")
    renamed = {
        "old_proj.weight": _random(gen, 4, 4),
        "old_proj.bias": _random(gen, 4),
        "ln.weight": _random(gen, 4).abs() + 0.5,
        "ln.bias": _random(gen, 4),
    }
    wn_old = _weight_norm_net(gen, "weight_g", "weight_v")  # hook-based nn.utils.weight_norm
    nn_wn = _weight_norm_net(gen, "weight_g", "weight_v", lin="0", head="2")
    legacy = {"proj.weight": _random(gen, 3, 4), "proj.bias": _random(gen, 3)}
    return {"wn": wn, "renamed": renamed, "wn_old": wn_old, "nn_wn": nn_wn, "legacy": legacy}


def checkpoint_bytes(name: str) -> bytes:
    """A checkpoint of :func:`weights` as safetensors bytes."""
    return save(weights()[name])


def outer_files(urls: Mapping[str, str], inner_spec: str) -> dict[str, str]:
    """The pattern repository's files; ``urls`` maps each :func:`weights` name to where it is served."""
    hubconf = HUBCONF.replace("@INNER_SPEC@", inner_spec)
    for name in weights():
        hubconf = hubconf.replace(f"@{name.upper()}_URL@", urls[name])
    assert "_URL@" not in hubconf, "a checkpoint placeholder has no URL"
    return {"hubconf.py": hubconf, "models.py": MODELS}


def inner_files() -> dict[str, str]:
    """The repository the ``nested`` pattern loads with ``torch.hub.load``."""
    return {"hubconf.py": INNER_HUBCONF}


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
        with preserved_rng(), imported_like_the_child(inner_files(), root) as inner:
            return _call_like_the_child(inner, model)  # a nested load runs in its own seeded child

    with preserved_rng(), _patched_hub(urls, nested):
        with imported_like_the_child(outer_files(urls, inner_spec), root) as module:
            return _call_like_the_child(module, entrypoint)
