"""Class paths from an untrusted config, and importing them only from the installed Python.

A config names classes and functions as ``"package.module:Qual.name"``. This
module parses such paths strictly, checks them against
``reconstruct.trusted_modules`` and imports them the safe way:

- only from the interpreter's stdlib and site-packages (``sysconfig`` paths),
  never from the repository tree or the current directory -- a repo that ships
  its own ``torch/`` folder and is also the cwd must not shadow the real one;
- ``''``, the cwd and the tree are removed from ``sys.path`` for the duration
  of the import, and the top-level package's spec (or already-imported module)
  is checked to live under those roots *before* anything is executed;
- the attribute walk never goes through ``<locals>`` and the object found must
  carry exactly the recorded ``__module__``/``__qualname__`` and live in a file
  under those roots (a repo class that claims ``__module__ = "torch.nn"`` is a
  spoof and is refused). One exception: a built-in (C) function exposed under
  its own name by the recorded module (``torch.nn.functional:gelu``, whose
  ``__module__`` is ``torch._C._nn``) is accepted when its own module is in the
  same top-level package; see :func:`_is_public_builtin`.

Everything that is refused raises :class:`~securehub.errors.ReconstructRefused`
with what was expected, what was found and what to do.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import keyword
import re
import sys
import sysconfig
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from securehub._reconstruct_allow import TRUSTED_CALLABLES
from securehub.errors import ReconstructRefused

__all__ = [
    "ClassPath",
    "NotTrusted",
    "check_installed_file",
    "installed_roots",
    "is_trusted_module",
    "parse_path",
    "resolve_installed",
]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MAX_PATH_CHARS = 512


class NotTrusted(ReconstructRefused):
    """The path is outside ``trusted_modules``: the strategy does not apply (not an attack by itself)."""


@dataclass(frozen=True)
class ClassPath:
    """A parsed ``module:qualname`` path; both parts are dotted Python identifiers."""

    module: str
    qualname: str

    def __str__(self) -> str:
        return f"{self.module}:{self.qualname}"


def _is_dotted_identifier(text: str) -> bool:
    parts = text.split(".")
    return all(_IDENT.match(p) is not None and not keyword.iskeyword(p) for p in parts)


def parse_path(text: object, *, what: str) -> ClassPath:
    """Parse ``module:qualname``; refuses ``<locals>``, empty parts and anything not an identifier."""
    if not isinstance(text, str) or len(text) > _MAX_PATH_CHARS or text.count(":") != 1:
        raise ReconstructRefused(
            f"{what}: expected a path 'package.module:QualName', found {str(text)[:120]!r}; "
            "the sandbox child's config is malformed or hostile"
        )
    module, qualname = text.split(":")
    if "<locals>" in qualname or "<" in text:
        raise ReconstructRefused(
            f"{what}: {text!r} names an object defined inside a function (<locals>), which cannot be "
            "imported by name; define the class at module level or use the export strategy"
        )
    if not _is_dotted_identifier(module) or not _is_dotted_identifier(qualname) or "__" in qualname:
        raise ReconstructRefused(
            f"{what}: {text!r} is not a dotted Python identifier path; the config is malformed or hostile"
        )
    return ClassPath(module, qualname)


def is_trusted_module(module: str, trusted_modules: Sequence[str]) -> bool:
    """``module`` equals an allowlisted name or is a submodule of one (``torch.nn.modules`` under ``torch.nn``)."""
    return any(module == t or module.startswith(t + ".") for t in trusted_modules)


def installed_roots() -> tuple[Path, ...]:
    """The stdlib and site-packages directories of this interpreter (resolved)."""
    paths = sysconfig.get_paths()
    roots = {Path(paths[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    return tuple(sorted(roots))


def _under(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def check_installed_file(filename: str | None, *, tree: Path | None, what: str) -> None:
    """Refuse unless ``filename`` is under the stdlib/site-packages and not under the tree or cwd."""
    if filename is None:
        return  # built-in / C module: compiled into the interpreter, cannot come from a tree
    path = Path(filename).resolve()
    forbidden = _forbidden_dirs(tree)
    roots = installed_roots()
    # allowed: under an installed root R, and every forbidden dir F containing the file also
    # contains R (a venv inside the cwd is fine; a tree or cwd inside site-packages is not)
    ok = any(_under(path, r) and all(_under(r, f) for f in forbidden if _under(path, f)) for r in roots)
    if not ok:
        raise ReconstructRefused(
            f"{what} would be loaded from {path}, which is not inside the installed Python "
            f"(stdlib/site-packages: {[str(r) for r in roots]}) or lies in the repository tree or the "
            "current directory; securehub imports trusted classes only from installed packages. "
            "Install the package properly, or run from a directory that does not shadow it"
        )


def _forbidden_dirs(tree: Path | None) -> list[Path]:
    forbidden = [Path.cwd().resolve()]
    if tree is not None:
        forbidden.append(tree.resolve())
    return forbidden


def _is_forbidden_entry(entry: str, forbidden: Sequence[Path], roots: Sequence[Path]) -> bool:
    if entry in ("", "."):
        return True
    try:
        p = Path(entry).resolve()
    except (OSError, RuntimeError):
        return True
    if any(_under(p, r) for r in roots):
        return False
    return any(_under(p, f) for f in forbidden)


@contextmanager
def _scrubbed_sys_path(tree: Path | None) -> Iterator[None]:
    """Remove ``''``, ``.``, the cwd and the tree (and anything inside them) from ``sys.path``."""
    forbidden = _forbidden_dirs(tree)
    roots = installed_roots()
    saved = list(sys.path)
    sys.path[:] = [e for e in saved if not _is_forbidden_entry(e, forbidden, roots)]
    try:
        yield
    finally:
        sys.path[:] = saved


def _import_installed(module: str, *, tree: Path | None, what: str) -> types.ModuleType:
    """Import ``module`` only if its top-level package comes from the installed Python."""
    top = module.split(".", maxsplit=1)[0]
    with _scrubbed_sys_path(tree):
        loaded = sys.modules.get(top)
        if loaded is not None:
            check_installed_file(getattr(loaded, "__file__", None), tree=tree, what=f"{what} (package {top!r})")
            for loc in list(getattr(loaded, "__path__", []) or []):
                check_installed_file(str(Path(loc) / "__init__.py"), tree=tree, what=f"{what} (package {top!r})")
        else:
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError) as exc:
                raise ReconstructRefused(
                    f"{what}: package {top!r} cannot be located ({exc}); install it in this environment"
                ) from None
            if spec is None:
                raise ReconstructRefused(
                    f"{what}: package {top!r} is not installed in this Python (searched site-packages and "
                    "the stdlib only, never the repository or the current directory); install it, or choose "
                    "a strategy that does not need it"
                )
            if spec.origin not in (None, "built-in", "frozen"):
                check_installed_file(spec.origin, tree=tree, what=f"{what} (package {top!r})")
            for loc in spec.submodule_search_locations or []:
                check_installed_file(str(Path(loc) / "__init__.py"), tree=tree, what=f"{what} (package {top!r})")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise ReconstructRefused(
                f"{what}: module {module!r} does not exist in the installed package ({exc}); the config "
                "names something the installed version does not provide"
            ) from None
    check_installed_file(getattr(mod, "__file__", None), tree=tree, what=f"{what} (module {module!r})")
    return mod


def _walk(mod: types.ModuleType, path: ClassPath, what: str) -> Any:
    target: Any = mod
    for part in path.qualname.split("."):
        # getattr_static first: a class attribute that is a descriptor must not run code to be found
        try:
            inspect.getattr_static(target, part)
        except AttributeError:
            raise ReconstructRefused(
                f"{what}: {path} does not exist in the installed module {path.module!r}; the config names "
                "something the installed version does not provide"
            ) from None
        target = getattr(target, part)
    return target


def _check_identity(obj: Any, path: ClassPath, what: str) -> None:
    found_mod = getattr(obj, "__module__", None)
    found_qual = getattr(obj, "__qualname__", None)
    if found_mod != path.module or found_qual != path.qualname:
        raise ReconstructRefused(
            f"{what}: {path} resolves to an object whose own name is {found_mod}:{found_qual}; the "
            "recorded path does not name that object (a class that spoofs __module__/__qualname__, or "
            "a re-export); refusing"
        )


def resolve_installed(
    text: object,
    *,
    kind: str,
    trusted_modules: Sequence[str],
    tree: Path | None,
    what: str,
    require_trusted: bool = True,
) -> Any:
    """Resolve a recorded class or function path from the installed Python.

    ``kind`` is ``"module"`` (an ``nn.Module`` subclass that may be instantiated),
    ``"enum"`` (an ``enum.Enum`` subclass, under an allowlisted module) or
    ``"function"`` (a plain or built-in function). Guarantees the result is
    of that kind; a class lives under an allowlisted module (unless
    ``require_trusted=False``), a function is named in
    :data:`~securehub._reconstruct_allow.TRUSTED_CALLABLES` (always, whatever
    ``trusted_modules`` says); it was imported from stdlib/site-packages only,
    and carries exactly the recorded ``__module__``/``__qualname__`` (built-in
    functions: or is exposed under its own name by the recorded module, see
    :func:`_is_public_builtin`).
    """
    path = parse_path(text, what=what)
    if kind == "function":
        # Functions are admitted by exact name, never by module: a trusted module also holds
        # functions with global effects (register_module_forward_hook; issue 8 finding 3).
        if str(path) not in TRUSTED_CALLABLES:
            raise ReconstructRefused(
                f"{what}: function {path} is not one of the pure functions a config may pass as an argument "
                "(activations such as torch.nn.functional:gelu; see securehub._reconstruct_allow); functions "
                "with global effects (hooks, set_*, manual_seed, I/O) are never called. Use the export "
                "strategy (pass example_inputs) for this model"
            )
    elif require_trusted and not is_trusted_module(path.module, trusted_modules):
        raise NotTrusted(f"{what}: class {path} is not in reconstruct.trusted_modules {list(trusted_modules)}")
    mod = _import_installed(path.module, tree=tree, what=what)
    obj = _walk(mod, path, what)
    if kind == "module":
        if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
            raise ReconstructRefused(
                f"{what}: {path} is a {type(obj).__name__}"
                f"{'' if not isinstance(obj, type) else ' (a class that is not a torch.nn.Module subclass)'}; "
                "only torch.nn.Module subclasses are ever instantiated from a config"
            )
        _check_identity(obj, path, what)
        try:
            filename = inspect.getfile(obj)
        except TypeError:
            filename = None
        check_installed_file(filename, tree=tree, what=f"{what} (class {path})")
        return obj
    if kind == "enum":
        if not (isinstance(obj, type) and issubclass(obj, enum.Enum)):
            raise ReconstructRefused(f"{what}: {path} is a {type(obj).__name__}, not an enum.Enum subclass")
        _check_identity(obj, path, what)
        return obj
    if not isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        raise ReconstructRefused(
            f"{what}: {path} is a {type(obj).__name__}, not a function; only plain functions may be "
            "passed as constructor arguments"
        )
    if not (isinstance(obj, types.BuiltinFunctionType) and _is_public_builtin(obj, path)):
        _check_identity(obj, path, what)  # a public builtin (torch.nn.functional:gelu) is exempt, see below
    if isinstance(obj, types.FunctionType):
        check_installed_file(obj.__code__.co_filename, tree=tree, what=f"{what} (function {path})")
    return obj


def _is_public_builtin(obj: types.BuiltinFunctionType, path: ClassPath) -> bool:
    """A C function exposed directly by the (allowlisted, installed) module the path names.

    Accepted instead of the exact ``__module__`` match: the path is one
    attribute of that module, equal to the function's own ``__name__``; the
    function is not a bound method of some object (its ``__self__`` is None or
    a module); and its own ``__module__`` belongs to the same top-level package
    (``torch._C._nn`` for ``torch.nn.functional``), so a trusted module that
    happens to re-export ``builtins.eval`` does not make ``eval`` callable.
    """
    own_module = getattr(obj, "__module__", None)
    owner = getattr(obj, "__self__", None)
    return (
        "." not in path.qualname
        and getattr(obj, "__name__", None) == path.qualname
        and (owner is None or isinstance(owner, types.ModuleType))
        and isinstance(own_module, str)
        and own_module.split(".", maxsplit=1)[0] == path.module.split(".", maxsplit=1)[0]
    )
