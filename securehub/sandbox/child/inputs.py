"""``--example-input auto``: find example inputs the model accepts (runs in the sandbox child).

Search order (bounded; the first candidate that passes wins):

1. hints the model carries, on the root module and on its ``patch_embed``
   child: ``default_cfg``/``pretrained_cfg`` ``["input_size"]`` (C, H, W);
   ``input_size`` attributes (C, H, W) or (H, W); ``img_size``/``image_size``
   (an int or (H, W)). Images are ``float32`` (1, C, H, W), C from the first
   Conv2d (else 3);
2. the first two leaf layers of a known kind in registration order (a layer
   whose only child holds its parametrizations, e.g. weight norm, counts as a leaf):
   Conv1d/2d/3d ``in_channels`` C -> (1, C, L) / (1, C, H, W) /
   (1, C, T, H, W) at a short list of sizes (largest first; video clips
   8x224x224 first, the clip video hub models are built for); Linear
   ``in_features`` F -> (1, F) and (1, 16, F); Embedding ``num_embeddings``
   (at least 2) -> ``int64`` (1, 16) ids in range;
3. a short fixed list: image batches (1, 3, 224, 224), (1, 3, 64, 64),
   (1, 1, 28, 28) and token ids (1, 16).

At most :data:`MAX_CANDIDATES` candidates are tried, each within the size
bounds hub.lock imposes (checked on the shape before anything is allocated),
filled with the same deterministic values the parent uses
(:func:`securehub.sandbox.example_inputs.example_tensors`). A candidate passes when
a forward pass under ``torch.no_grad()`` in eval mode returns; when an export
is wanted it must also export (at most :data:`MAX_EXPORTS` attempts). The
search stops when its wall-clock budget is spent; a forward that never returns
is ended by the sandbox's own timeout (``sandbox-timeout``).

Runs next to untrusted code, like everything in the child: the parent treats
what this reports as hostile (``messages.parse_found_inputs``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize

from securehub.config.lockfile import InputSpec, example_inputs_total_problem
from securehub.sandbox.example_inputs import example_tensors

__all__ = ["MAX_CANDIDATES", "MAX_EXPORTS", "Found", "candidates", "has_repo_class", "search"]

MAX_CANDIDATES = 12
MAX_EXPORTS = 3
#: Wall-clock budget of one search: ``auto`` (the user asked) and ``hint`` (only to improve a refusal).
BUDGET_S: Mapping[str, float] = {"auto": 300.0, "hint": 30.0}
#: ``hint`` searches check fewer candidates: they only make a refusal more useful.
MAX_HINT_CANDIDATES = 6

_IMAGE_SIZES = (224, 64, 32)
_SEQ_LENGTHS = (128, 32)
#: (T, H, W) clips for a first Conv3d: the Kinetics clips video hub models are built for first, 8 frames
#: before 16 (pytorchvideo's slow_r50/c2d_r50/i3d_r50 pool their last stage with a (8, 7, 7) kernel,
#: x3d_m and r2plus1d_r50 take 16 frames: a smaller clip fails their forward), then C3D-style
#: 16x112x112 clips and a small one
_VOLUME_SIZES = ((8, 224, 224), (16, 224, 224), (16, 112, 112), (8, 32, 32))
_TOKENS = 16
_FIXED: tuple[tuple[InputSpec, ...], ...] = (
    (InputSpec((1, 3, 224, 224), "float32"),),
    (InputSpec((1, 3, 64, 64), "float32"),),
    (InputSpec((1, 1, 28, 28), "float32"),),
    (InputSpec((1, _TOKENS), "int64"),),
)

Candidate = tuple[InputSpec, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class Found(Generic[T]):
    """The winning candidate, its tensors and what the ``export`` callback made of them (if called)."""

    specs: Candidate
    tensors: tuple[torch.Tensor, ...]
    exported: T | None


def _spec(shape: tuple[int, ...], dtype: str = "float32") -> Candidate | None:
    """One candidate, or ``None`` when a dim is not a positive int or the lock's bounds refuse it."""
    if not all(type(d) is int and d > 0 for d in shape):
        return None
    try:
        spec = InputSpec(shape, dtype)
    except ValueError:
        return None
    return (spec,)


def _ints(value: Any) -> tuple[int, ...] | None:
    """``value`` as a tuple of positive ints (an int becomes a 1-tuple), else ``None``."""
    if type(value) is int:
        return (value,) if value > 0 else None
    if isinstance(value, (tuple, list)) and 0 < len(value) <= 3 and all(type(v) is int and v > 0 for v in value):
        return tuple(value)
    return None


def _attr(obj: object, name: str) -> Any:
    try:  # a property of repo code may raise anything; a hint that cannot be read is no hint
        return getattr(obj, name, None)
    except Exception:
        return None


def _first_conv_channels(module: nn.Module) -> int:
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d) and type(sub.in_channels) is int and sub.in_channels > 0:
            return sub.in_channels
    return 3


def _image(size: tuple[int, ...], channels: int) -> Candidate | None:
    if len(size) == 3:
        return _spec((1, *size))
    if len(size) == 2:
        return _spec((1, channels, *size))
    if len(size) == 1:
        return _spec((1, channels, size[0], size[0]))
    return None


def _hint_candidates(module: nn.Module) -> Iterator[Candidate | None]:
    channels = _first_conv_channels(module)
    holders = [module]
    patch = _attr(module, "patch_embed")
    if isinstance(patch, nn.Module):
        holders.append(patch)
    for obj in holders:
        for cfg_name in ("default_cfg", "pretrained_cfg"):
            cfg = _attr(obj, cfg_name)
            if isinstance(cfg, Mapping):
                size = _ints(cfg.get("input_size"))
                if size is not None and len(size) >= 2:
                    yield _image(size, channels)
        size = _ints(_attr(obj, "input_size"))
        if size is not None and len(size) >= 2:
            yield _image(size, channels)
        for name in ("img_size", "image_size"):
            size = _ints(_attr(obj, name))
            if size is not None and len(size) <= 2:
                yield _image(size, channels)


def _layer_candidates(layer: nn.Module) -> Iterator[Candidate | None]:
    if isinstance(layer, nn.Conv1d):
        for length in _SEQ_LENGTHS:
            yield _spec((1, layer.in_channels, length))
    elif isinstance(layer, nn.Conv2d):
        for size in _IMAGE_SIZES:
            yield _spec((1, layer.in_channels, size, size))
    elif isinstance(layer, nn.Conv3d):
        for volume in _VOLUME_SIZES:
            yield _spec((1, layer.in_channels, *volume))
    elif isinstance(layer, nn.Linear):
        yield _spec((1, layer.in_features))
        yield _spec((1, _TOKENS, layer.in_features))
    elif isinstance(layer, nn.Embedding) and type(layer.num_embeddings) is int and layer.num_embeddings >= 2:
        yield _spec((1, _TOKENS), "int64")  # example_tensors fills ints with 0/1: in range


_LAYER_KINDS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding)


def _is_leaf_layer(sub: nn.Module) -> bool:
    """A layer of a known kind with no children -- or whose only child holds its parametrizations
    (``weight_norm``/``spectral_norm`` via ``nn.utils.parametrizations``: still one layer), or whose children
    are stateless leaves (lukemelas/EfficientNet-PyTorch's ``Conv2dStaticSamePadding`` holds its
    ``nn.ZeroPad2d``/``nn.Identity`` as ``static_padding``: still the conv; a child with parameters, buffers
    or children of its own is a layer of its own, found on its own)."""
    if not isinstance(sub, _LAYER_KINDS):
        return False
    children = list(sub.named_children())
    if not children:
        return True
    if [name for name, _ in children] == ["parametrizations"] and parametrize.is_parametrized(sub):
        return True
    return all(_is_stateless_leaf(child) for _, child in children)


def _is_stateless_leaf(module: nn.Module) -> bool:
    """No children, parameters or buffers (padding, ``Identity``, an activation)."""
    return (
        next(module.children(), None) is None
        and next(module.parameters(recurse=False), None) is None
        and next(module.buffers(recurse=False), None) is None
    )


def _first_layers(module: nn.Module, count: int = 2) -> list[nn.Module]:
    out: list[nn.Module] = []
    for sub in module.modules():
        if _is_leaf_layer(sub):
            out.append(sub)
            if len(out) == count:
                break
    return out


def candidates(module: nn.Module, limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """The candidates in search order (module docstring), without repeats, at most ``limit``."""
    ordered: list[Candidate | None] = list(_hint_candidates(module))
    for layer in _first_layers(module):
        ordered.extend(_layer_candidates(layer))
    ordered.extend(_FIXED)
    out: list[Candidate] = []
    for cand in ordered:
        if cand is None or cand in out:
            continue
        if example_inputs_total_problem([s.nbytes for s in cand]) is None:
            out.append(cand)
        if len(out) == limit:
            break
    return out


def has_repo_class(module: nn.Module, tree: Path) -> bool:
    """Whether any module in the tree has a class the repository defines (hubconf or a file in ``tree``).

    Only such a model is refused under ``[trusted, export]`` without example
    inputs, so only then is a ``hint`` search worth its forward passes.
    """
    root = str(tree.resolve())
    for sub in module.modules():
        name = type(sub).__module__
        if name.startswith("_securehub_hubconf_"):
            return True
        file = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(file, str) and (file == root or file.startswith(root + "/")):
            return True
    return False


def _forward_ok(module: nn.Module, tensors: tuple[torch.Tensor, ...]) -> bool:
    try:
        with torch.no_grad():
            module(*tensors)
    except Exception:  # any failure (shape mismatch, MemoryError) rejects the candidate
        return False
    return True


def search(
    module: nn.Module,
    cands: list[Candidate],
    *,
    budget_s: float,
    export: Callable[[tuple[torch.Tensor, ...]], T | None] | None = None,
) -> Found[T] | None:
    """The first of ``cands`` that the module accepts (and, with ``export``, that exports), or ``None``.

    The module is put in eval mode. ``export`` returns ``None`` when the
    inputs do not export; it is called at most :data:`MAX_EXPORTS` times.
    Stops once ``budget_s`` seconds of wall clock are spent.
    """
    module.eval()
    deadline = time.monotonic() + budget_s
    exports = 0
    for cand in cands:
        if time.monotonic() > deadline:
            return None
        tensors = example_tensors(cand)
        if not _forward_ok(module, tensors):
            continue
        if export is None:
            return Found(cand, tensors, None)
        if exports == MAX_EXPORTS:
            return None
        exports += 1
        exported = export(tensors)
        if exported is not None:
            return Found(cand, tensors, exported)
    return None
