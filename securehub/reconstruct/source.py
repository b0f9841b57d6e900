"""The ``source`` strategy: run the entrypoint itself here, from the verified tree, and check it.

torch.hub loads whatever the entrypoint returns, including models that a
constructor replay cannot rebuild (namedtuple/dataclass configs, a model that
renames its keys or removes weight norm after construction, entrypoints made
with ``globals().update``). So ``source`` does what torch.hub does -- import
``hubconf.py`` and call the entrypoint with the same arguments -- but only
after the sandbox ran the same call, with every artifact answered from the
verified cache and the network refused (:mod:`securehub.reconstruct.source_guard`), and
it returns the model only if its state equals the sandbox's to the bit
(names, shapes, dtypes, values: ``reconstruct-mismatch`` otherwise). RNGs
are seeded as in the child (:mod:`securehub._util.determinism`) and restored after.

Runs repository code in the parent, so :func:`securehub.reconstruct.rebuild.reconstruct`
only tries it when the policy lists it. Import isolation (not a sandbox -- the
code runs with the parent's rights):

- the tree's modules are loaded under a private package
  ``_securehub_src_<12 hex>``: ``utils.py`` becomes
  ``_securehub_src_ab12cd34ef56.utils``, so two repositories' ``utils`` never
  collide with each other or with the user's own modules;
- the repo's absolute imports of its own top-level names (``import utils``,
  ``from models import Net``) are redirected into that package by a private
  ``__import__`` installed as the ``__builtins__`` of every module loaded from
  the tree; nothing is added to ``sys.modules`` under a plain name;
- a :class:`importlib.abc.MetaPathFinder` answers only for the private
  package and finds its modules only inside the tree (no ``sys.path``);
- modules are compiled from the ``.py`` source only: a ``__pycache__`` shipped
  in the repository is never used, and no bytecode is written into the tree;
- the finder and the private package's modules stay loaded after the build
  (lazy imports inside ``forward`` must keep resolving to the same tree);
  they are namespaced by the prefix and never answer for a plain name.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import secrets
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from securehub._util.determinism import fixed_threads, preserved_rng, seed_all
from securehub.errors import ReconstructMismatch, ReconstructRefused, SecureHubError
from securehub.reconstruct.build import NotApplicable
from securehub.reconstruct.source_guard import ArtifactSource, guarded_call
from securehub.sandbox.wire.messages import EXPORT_CONSTANT_PREFIX, EXPORT_STATE_PREFIX, NONPERSISTENT_PREFIX

__all__ = ["SourceCall", "compare_with_sandbox", "isolated_tree", "reconstruct_source", "tree_top_level_names"]

PREFIX_BASE = "_securehub_src_"


def tree_top_level_names(tree: Path) -> frozenset[str]:
    """Names a plain ``import X`` inside the repo resolves to the tree: ``X.py`` files and ``X/`` dirs."""
    names: set[str] = set()
    for entry in tree.iterdir():
        if entry.is_file() and entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier() and not entry.name.startswith("__"):
            names.add(entry.name)
    return frozenset(names)


class _TreeLoader(importlib.abc.Loader):
    """Compiles a tree file from source (never from a shipped .pyc) with the redirecting builtins."""

    def __init__(self, path: Path | None, builtins_dict: dict[str, Any]) -> None:
        self.path = path
        self.builtins_dict = builtins_dict

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__builtins__"] = self.builtins_dict
        if self.path is None:
            return  # a directory without __init__.py: an empty package
        source = self.path.read_bytes()
        code = compile(source, str(self.path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the source strategy runs verified repo code by design


class _TreeFinder(importlib.abc.MetaPathFinder):
    """Finds ``<prefix>`` and ``<prefix>.a.b`` inside the tree only."""

    def __init__(self, prefix: str, tree: Path, builtins_dict: dict[str, Any]) -> None:
        self.prefix = prefix
        self.tree = tree.resolve()
        self.builtins_dict = builtins_dict

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == self.prefix:
            spec = importlib.machinery.ModuleSpec(fullname, _TreeLoader(None, self.builtins_dict), is_package=True)
            spec.submodule_search_locations = [str(self.tree)]
            return spec
        if not fullname.startswith(self.prefix + "."):
            return None
        parts = fullname[len(self.prefix) + 1 :].split(".")
        if not all(p.isidentifier() for p in parts):
            return None
        base = self.tree.joinpath(*parts)
        candidates = [(base / "__init__.py", True), (base.with_name(base.name + ".py"), False)]
        for file, is_pkg in candidates:
            if file.is_file() and file.resolve().is_relative_to(self.tree):
                return self._spec(fullname, file, base if is_pkg else None)
        if base.is_dir() and base.resolve().is_relative_to(self.tree):
            return self._spec(fullname, None, base)  # namespace-like directory
        return None

    def _spec(self, fullname: str, file: Path | None, package_dir: Path | None) -> importlib.machinery.ModuleSpec:
        spec = importlib.machinery.ModuleSpec(
            fullname,
            _TreeLoader(file, self.builtins_dict),
            origin=str(file) if file is not None else None,
            is_package=package_dir is not None,
        )
        if package_dir is not None:
            spec.submodule_search_locations = [str(package_dir)]
        spec.has_location = file is not None
        return spec


def _redirecting_import(prefix: str, names: frozenset[str]) -> Callable[..., types.ModuleType]:
    real_import = builtins.__import__

    def __import__(  # noqa: N807 - it replaces the builtin of that name
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level == 0 and name.split(".", maxsplit=1)[0] in names:
            real_import(f"{prefix}.{name}", globals, locals, fromlist, 0)
            if fromlist:
                return sys.modules[f"{prefix}.{name}"]
            return sys.modules[f"{prefix}.{name.split('.', maxsplit=1)[0]}"]
        module: types.ModuleType = real_import(name, globals, locals, fromlist, level)
        return module

    return __import__


def isolated_tree(tree: Path) -> tuple[str, frozenset[str]]:
    """Install a finder for a fresh private prefix and return ``(prefix, top-level names)``.

    The finder and the prefix's modules stay for the life of the process: the
    built model's code may import lazily (``import utils`` inside ``forward``),
    and those imports must keep resolving to this tree. Both are namespaced by
    the prefix, so they never answer for another repository or a plain name.
    """
    prefix = PREFIX_BASE + secrets.token_hex(6)
    names = tree_top_level_names(tree)
    if (tree / "hubconf.py").is_file():
        names = names | {"hubconf"}
    builtins_dict = dict(vars(builtins))
    builtins_dict["__import__"] = _redirecting_import(prefix, names)
    sys.meta_path.insert(0, _TreeFinder(prefix, tree, builtins_dict))
    return prefix, names


@dataclass(frozen=True)
class SourceCall:
    """The call the sandbox ran, to run again here: entrypoint, arguments, and the artifacts it used."""

    entrypoint: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    artifacts: ArtifactSource


def _entrypoint(hubconf: types.ModuleType, name: str) -> Callable[..., Any]:
    func = getattr(hubconf, name, None)
    if func is None or not callable(func):
        raise ReconstructMismatch(
            f"hubconf.py defines no callable {name!r} in this process, though the sandboxed run found one; "
            "the repository behaves differently here than in the sandbox, so its model is not used"
        )
    return func  # type: ignore[no-any-return]


def _run_entrypoint(tree: Path, call: SourceCall) -> object:
    """Import hubconf.py under a fresh private prefix and call the entrypoint, seeded as in the child, guarded."""
    prefix, _ = isolated_tree(tree)

    def run() -> object:
        # Repos edit the import path for their own imports (NVIDIA's hubconf appends
        # ``os.path.join(sys.path[0], 'PyTorch/Detection/SSD')``). Here the repo's imports go through the
        # private prefix, never sys.path, and sys.path[0] is not the tree: the entry would name a directory
        # under *your* working directory, from which a later plain ``import`` in this process could load
        # code. The path is put back as it was (the same list object, same entries), whatever the call did.
        path_list, saved_path = sys.path, list(sys.path)
        try:
            seed_all()  # the child seeds right before importing hubconf.py ...
            hubconf = importlib.import_module(f"{prefix}.hubconf")
            func = _entrypoint(hubconf, call.entrypoint)
            seed_all()  # ... and again right before calling the entrypoint
            return func(*call.args, **dict(call.kwargs))
        finally:
            sys.path = path_list  # a repo may also rebind it
            path_list[:] = saved_path

    with preserved_rng(), fixed_threads():  # the child's thread count too: reductions' bits follow it
        try:
            return guarded_call(call.artifacts, run)
        except SecureHubError:
            raise
        except Exception as exc:
            raise ReconstructMismatch(
                f"the entrypoint {call.entrypoint!r} raised {type(exc).__name__}: {str(exc)[:300]} in this process, "
                "though it succeeded in the sandbox; the repository behaves differently here, so nothing is used"
            ) from None


def _as_module(result: object) -> nn.Module:
    if isinstance(result, nn.Module) and not isinstance(result, torch.jit.ScriptModule):
        return result
    kind = f"{type(result).__module__}.{type(result).__qualname__}"
    raise ReconstructRefused(
        f"the entrypoint returned a {kind} in this process, expected a torch.nn.Module (as in the sandbox); "
        "securehub only returns a single eager nn.Module"
    )


def _bytes(t: torch.Tensor) -> torch.Tensor:
    """The tensor's raw bytes (bitwise comparison: NaN equals the same NaN, -0.0 differs from 0.0)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8) if flat.numel() else flat.new_empty(0, dtype=torch.uint8)


def _expected_state(config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The sandbox's state dict as ``model.state_dict()`` names it: plain tensors plus tied aliases."""
    skip = (NONPERSISTENT_PREFIX, EXPORT_STATE_PREFIX, EXPORT_CONSTANT_PREFIX)
    full = {k: v for k, v in state.items() if not k.startswith(skip)}
    aliases = config.get("aliases", {})
    if not isinstance(aliases, Mapping):
        raise ReconstructMismatch("the sandbox's config aliases is not an object; the result is malformed")
    for alias, kept in aliases.items():
        if not isinstance(kept, str) or kept not in full or alias in full:
            raise ReconstructMismatch(f"the sandbox's alias {alias!r} -> {kept!r} names no tensor of its state")
        full[alias] = full[kept]
    return full


def _nonpersistent(model: nn.Module) -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for prefix, sub in model.named_modules(remove_duplicate=False):
        for name in sub._non_persistent_buffers_set:
            value = sub._buffers.get(name)
            if value is not None:
                found[f"{NONPERSISTENT_PREFIX}{prefix}.{name}" if prefix else f"{NONPERSISTENT_PREFIX}{name}"] = value
    return found


def _differences(have: Mapping[str, torch.Tensor], want: Mapping[str, torch.Tensor]) -> list[str]:
    problems = [f"{k} missing here" for k in sorted(set(want) - set(have))]
    problems += [f"{k} not in the sandbox's state" for k in sorted(set(have) - set(want))]
    for key in sorted(set(have) & set(want)):
        a, b = have[key], want[key]
        if tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
            problems.append(f"{key} (here {tuple(a.shape)} {a.dtype}, sandbox {tuple(b.shape)} {b.dtype})")
        elif not torch.equal(_bytes(a), _bytes(b)):
            problems.append(f"{key} (values differ)")
    return problems


def compare_with_sandbox(model: nn.Module, config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ReconstructMismatch`` unless ``model`` holds exactly the sandbox's state.

    Compared: every ``state_dict()`` name (tied aliases included), shape,
    dtype and raw bytes; every non-persistent buffer; which parameters are
    frozen (``requires_grad=False``).
    """
    have = dict(model.state_dict(keep_vars=True)) | _nonpersistent(model)
    want = _expected_state(config, state) | {k: v for k, v in state.items() if k.startswith(NONPERSISTENT_PREFIX)}
    problems = _differences(have, want)
    frozen = config.get("frozen", [])
    if isinstance(frozen, list):
        here = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
        if here != set(frozen):
            problems.append(f"frozen parameters differ (here {_few(sorted(here))}, sandbox {_few(sorted(frozen))})")
    if problems:
        raise ReconstructMismatch(
            "the model the entrypoint built in this process differs from the sandbox's: "
            f"{_few(problems)}; the repository behaves differently here than in the sandbox (or the cache "
            "changed), so it is not used. Use the trusted/export strategy for this repository"
        )


def _few(items: Sequence[object], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}]"


def reconstruct_source(
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    tree: Path,
    call: SourceCall | None,
) -> nn.Module:
    """Run the entrypoint here from the verified tree and return its model if it equals the sandbox's.

    Order (safest first): the sandbox has already run the entrypoint and its
    output was validated (and checked against the pinned output digests);
    the tree is the digest-verified one; only then is the repository's code
    imported here, with every artifact answered from the verified cache and
    the network refused (:mod:`securehub.reconstruct.source_guard`); the result is then
    compared with the sandbox's state to the bit, and returned only if equal.
    The caller caches or locks nothing before this returns. The code runs
    with this process's rights: the policy's choice of ``source`` says the
    repository is trusted that far.
    """
    if call is None:
        raise NotApplicable("no entrypoint call to re-run (the source strategy runs the entrypoint itself)")
    if not tree.is_dir():
        raise NotApplicable(f"the repository tree {tree} is not a directory")
    model = _as_module(_run_entrypoint(tree, call))
    compare_with_sandbox(model, config, state)
    return model
