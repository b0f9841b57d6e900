"""The ``source`` strategy: import the model's classes from the verified tree, isolated.

Runs repository code in the parent, so :func:`securehub.reconstruct.reconstruct`
only tries it when the policy lists it. Isolation (not a sandbox -- the code
runs with the parent's rights):

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
import enum
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import re
import secrets
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from securehub._reconstruct_build import NotApplicable, build_and_load
from securehub._reconstruct_paths import ClassPath, parse_path, resolve_installed
from securehub.errors import ReconstructRefused

__all__ = ["SourceResolver", "reconstruct_source", "tree_top_level_names"]

PREFIX_BASE = "_securehub_src_"
#: the child imports hubconf.py under this name (securehub.sandbox._child_runtime)
_HUBCONF_NAME = re.compile(r"_securehub_hubconf_[0-9a-f]{32}\Z")


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


class SourceResolver:
    """Tree classes from the isolated package; everything else as in ``trusted``, from installed packages.

    Classes outside the tree may come from any installed package (the
    repository's own code, which this strategy trusts, could import them
    anyway) but must still be ``nn.Module`` subclasses; functions must be in
    the tree or in ``trusted_modules``.
    """

    def __init__(self, prefix: str, names: frozenset[str], trusted_modules: Sequence[str], tree: Path) -> None:
        self.prefix = prefix
        self.names = names
        self.trusted_modules = tuple(trusted_modules)
        self.tree = tree

    def _tree_module(self, path: ClassPath) -> str | None:
        if _HUBCONF_NAME.match(path.module):
            return f"{self.prefix}.hubconf"
        if path.module.split(".")[0] in self.names:
            return f"{self.prefix}.{path.module}"
        return None

    def _from_tree(self, path: ClassPath, private: str, where: str) -> Any:
        try:
            mod = importlib.import_module(private)
        except ImportError as exc:
            raise ReconstructRefused(f"{where}: importing {path.module!r} from the repository failed: {exc}") from None
        target: Any = mod
        for part in path.qualname.split("."):
            if not hasattr(target, part):
                raise ReconstructRefused(f"{where}: the repository defines no {path}")
            target = getattr(target, part)
        return target

    def module_class(self, path: object, where: str) -> type[nn.Module]:
        parsed = parse_path(path, what=where)
        private = self._tree_module(parsed)
        if private is None:
            cls: type[nn.Module] = resolve_installed(
                parsed.__str__(), kind="module", trusted_modules=self.trusted_modules, tree=self.tree,
                what=where, require_trusted=False,
            )  # fmt: skip
            return cls
        obj = self._from_tree(parsed, private, where)
        if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
            raise ReconstructRefused(
                f"{where}: {parsed} is a {type(obj).__name__}, not a torch.nn.Module subclass; only "
                "nn.Module subclasses are ever instantiated from a config"
            )
        if obj.__module__ != private or obj.__qualname__ != parsed.qualname:
            raise ReconstructRefused(
                f"{where}: {parsed} in the repository is really {obj.__module__}:{obj.__qualname__}; refusing"
            )
        return obj

    def function(self, path: object, where: str) -> Callable[..., Any]:
        parsed = parse_path(path, what=where)
        private = self._tree_module(parsed)
        if private is None:
            fn: Callable[..., Any] = resolve_installed(
                str(parsed), kind="function", trusted_modules=self.trusted_modules, tree=self.tree, what=where
            )
            return fn
        obj = self._from_tree(parsed, private, where)
        if not isinstance(obj, types.FunctionType):
            raise ReconstructRefused(f"{where}: {parsed} is a {type(obj).__name__}, not a function")
        return obj

    def enum_class(self, path: object, where: str) -> type[enum.Enum]:
        # enums only from installed, allowlisted packages (never the tree): they are data, not code
        cls: type[enum.Enum] = resolve_installed(
            path, kind="enum", trusted_modules=self.trusted_modules, tree=self.tree, what=where
        )
        return cls

    def recorded_name(self, cls: type) -> str:
        module = cls.__module__
        if module == f"{self.prefix}.hubconf":
            module = "hubconf"
        elif module.startswith(self.prefix + "."):
            module = module[len(self.prefix) + 1 :]
        return f"{module}:{cls.__qualname__}"


def _normalise_hubconf(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The child names hubconf classes ``_securehub_hubconf_<uuid>``; compare them as ``hubconf``."""
    text = repr(config)
    if "_securehub_hubconf_" not in text:
        return config

    def fix(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str) and ":" in value:
            mod, _, qual = value.partition(":")
            if _HUBCONF_NAME.match(mod):
                return f"hubconf:{qual}"
        return value

    fixed: Mapping[str, Any] = fix(dict(config))
    return fixed


def reconstruct_source(
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    trusted_modules: Sequence[str],
    tree: Path,
) -> nn.Module:
    """Rebuild using the repository's own classes, imported in isolation (see module docstring)."""
    if not tree.is_dir():
        raise NotApplicable(f"the repository tree {tree} is not a directory")
    config = _normalise_hubconf(config)
    prefix, names = isolated_tree(tree)
    return build_and_load(config, SourceResolver(prefix, names, trusted_modules, tree), state)
