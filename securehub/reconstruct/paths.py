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

Speed without a weaker check: a rebuilt ResNet names hundreds of classes, and
each check used to re-resolve every ``sys.path`` entry and install root
(~24,000 ``realpath`` calls, ~1-2 s per warm load; issue 11 item 6). Decisions
are still taken afresh for every reference -- the allowlist, the ``sys.path``
scrub, the import, the attribute walk, the identity and provenance checks all
run every time on the current ``sys.path``, ``sys.modules``, cwd and tree. Only
two pure lookups are memoised: ``realpath`` of an existing absolute path, keyed
by the path *and* the identity of what it names now (device, inode, mtime,
ctime: :func:`_resolve`), and the raw ``sysconfig`` directories, keyed by the
``sys`` prefixes they are computed from (:func:`_sysconfig_dirs`). A replaced
file, a re-pointed symlink or a changed ``sys.path`` entry therefore names a
different key and is resolved again; see :func:`_resolve` for the one case a
memo cannot see (an attacker who can already rewrite the installed Python).
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import inspect
import keyword
import os
import re
import stat
import sys
import sysconfig
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from securehub.errors import ReconstructRefused
from securehub.reconstruct.allow import TRUSTED_CALLABLES, in_packages

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
    return in_packages(module, trusted_modules)


#: Memo bound: the working set is the files of the trusted packages plus a few dirs; a bound keeps a
#: long-lived process that walks many paths from growing without limit (cleared, never evicted partly).
_MEMO_MAX = 4096
_StatKey = tuple[int, int, int, int]
_RESOLVED: dict[tuple[str, _StatKey], Path] = {}
_SYSCONFIG_DIRS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _stat_key(path: str) -> _StatKey | None:
    """Identity of what ``path`` names right now (device, inode, mtime, ctime); None if nothing is there."""
    try:
        st = os.stat(path)  # noqa: PTH116 - hot path, called per checked file; no Path object needed
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _resolve(path: str) -> Path:
    """``Path(path).resolve()``, memoised by the absolute path and the identity of its target.

    Guarantee: the answer equals a fresh ``resolve()`` unless the *same* inode
    (same device, inode, mtime and ctime) is now reached through a different
    canonical path -- a directory moved elsewhere and a symlink left pointing
    at it, or a second hard link -- which needs write access to the directories
    on the way (the installed Python, the cache); whoever has that can already
    edit the trusted packages themselves. Everything a load can change without
    that -- a file replaced (``os.replace``: a new inode), a symlink re-pointed
    (a different target inode), a ``sys.path`` entry added or removed (a
    different string) -- misses the memo and is resolved again. A path that
    does not exist (``python311.zip``, an editable-install hook name on
    ``sys.path``) is no symlink, so it resolves to its resolved parent plus its
    name: the parent goes through this memo, keyed by the parent's identity.
    """
    absolute = path if path.startswith("/") else str(Path.cwd() / path)
    ident = _stat_key(absolute)
    if ident is None:
        parent, name = os.path.split(absolute)
        if name in ("", ".", "..") or parent == absolute or _is_symlink(absolute):
            return Path(absolute).resolve()
        return _resolve(parent) / name
    key = (absolute, ident)
    found = _RESOLVED.get(key)
    if found is None:
        found = Path(absolute).resolve()
        if len(_RESOLVED) >= _MEMO_MAX:
            _RESOLVED.clear()
        _RESOLVED[key] = found
    return found


def _is_symlink(path: str) -> bool:
    """A dangling symlink also fails ``stat``; it must be resolved the slow way, never as parent + name."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _sysconfig_dirs() -> tuple[str, ...]:
    """The raw stdlib/site-packages directories ``sysconfig`` reports, memoised by the prefixes they derive from.

    ``sysconfig.get_paths()`` costs ~150 us per call and depends only on the
    interpreter's prefixes (and sysconfig's own process-wide config cache).
    """
    key = (sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, sys.platlibdir)
    found = _SYSCONFIG_DIRS.get(key)
    if found is None:
        paths = sysconfig.get_paths()
        found = tuple(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
        _SYSCONFIG_DIRS.clear()
        _SYSCONFIG_DIRS[key] = found
    return found


def installed_roots() -> tuple[Path, ...]:
    """The stdlib and site-packages directories of this interpreter (resolved now, see :func:`_resolve`)."""
    return tuple(sorted({_resolve(p) for p in _sysconfig_dirs()}))


def _under(path: Path, root: Path) -> bool:
    """``path`` is ``root`` or inside it; both are resolved absolute paths (string compare: pathlib's
    ``is_relative_to`` was a third of the rebuild time of a 450-module model)."""
    p, r = str(path), str(root)
    return p == r or p.startswith(r if r.endswith("/") else r + "/")


def check_installed_file(filename: str | None, *, tree: Path | None, what: str) -> None:
    """Refuse unless ``filename`` is under the stdlib/site-packages and not under the tree or cwd."""
    if filename is None:
        return  # built-in / C module: compiled into the interpreter, cannot come from a tree
    _check_installed(filename, _Scope.now(tree), what=what)


@dataclass(frozen=True)
class _Scope:
    """The dirs one resolution is checked against, computed once per :func:`resolve_installed` call.

    Taken afresh for every call (never memoised as a whole): the cwd, the tree
    and the install roots are each resolved now, through :func:`_resolve`.
    """

    roots: tuple[Path, ...]
    forbidden: tuple[Path, ...]

    @classmethod
    def now(cls, tree: Path | None) -> _Scope:
        return cls(installed_roots(), tuple(_forbidden_dirs(tree)))


def _check_installed(filename: str | None, scope: _Scope, *, what: str) -> None:
    """:func:`check_installed_file` against an already computed scope."""
    if filename is None:
        return  # built-in / C module: compiled into the interpreter, cannot come from a tree
    path = _resolve(filename)
    forbidden, roots = scope.forbidden, scope.roots
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
    forbidden = [_resolve(str(Path.cwd()))]
    if tree is not None:
        forbidden.append(_resolve(str(tree)))
    return forbidden


def _is_forbidden_entry(entry: str, forbidden: Sequence[Path], roots: Sequence[Path]) -> bool:
    if entry in ("", "."):
        return True
    try:
        text = os.fspath(entry)  # a Path someone put on sys.path; bytes or other junk: TypeError, dropped
        if not isinstance(text, str):
            return True
        p = _resolve(text)
    except (OSError, RuntimeError, TypeError):
        return True
    if any(_under(p, r) for r in roots):
        return False
    return any(_under(p, f) for f in forbidden)


@contextmanager
def _scrubbed_sys_path(scope: _Scope) -> Iterator[None]:
    """Remove ``''``, ``.``, the cwd and the tree (and anything inside them) from ``sys.path``.

    Every entry of the current ``sys.path`` is judged on every call (only its
    ``realpath`` is memoised), so an entry added since the last load is scrubbed.
    """
    forbidden, roots = scope.forbidden, scope.roots
    saved = list(sys.path)
    sys.path[:] = [e for e in saved if not _is_forbidden_entry(e, forbidden, roots)]
    try:
        yield
    finally:
        sys.path[:] = saved


def _import_installed(module: str, *, scope: _Scope, what: str, anchor: str | None = None) -> types.ModuleType:
    """Import ``module`` only if its top-level package comes from the installed Python.

    ``anchor`` (``module`` itself or a package containing it): import only that, and then take
    ``module`` from what importing it loaded, never importing a submodule a config names (red team 9:
    ``torch.nn.attention.bias:CausalBias`` made the parent import some 820 modules -- ``torch._dynamo``
    and its dependencies -- before the class was refused as not an ``nn.Module``).
    """
    top = module.split(".", maxsplit=1)[0]
    with _scrubbed_sys_path(scope):
        loaded = sys.modules.get(top)
        if loaded is not None:
            _check_installed(getattr(loaded, "__file__", None), scope, what=f"{what} (package {top!r})")
            for loc in list(getattr(loaded, "__path__", []) or []):
                _check_installed(str(Path(loc) / "__init__.py"), scope, what=f"{what} (package {top!r})")
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
                _check_installed(spec.origin, scope, what=f"{what} (package {top!r})")
            for loc in spec.submodule_search_locations or []:
                _check_installed(str(Path(loc) / "__init__.py"), scope, what=f"{what} (package {top!r})")
        try:
            mod = importlib.import_module(anchor or module)
        except ImportError as exc:
            raise ReconstructRefused(
                f"{what}: module {anchor or module!r} does not exist in the installed package ({exc}); the config "
                "names something the installed version does not provide"
            ) from None
        if anchor is not None and anchor != module:
            loaded_mod = sys.modules.get(module)
            if not isinstance(loaded_mod, types.ModuleType):
                if not _submodule_exists(module):
                    raise ReconstructRefused(
                        f"{what}: module {module!r} does not exist in the installed package; the config names "
                        "something the installed version does not provide"
                    )
                raise ReconstructRefused(
                    f"{what}: module {module!r} is not loaded by importing {anchor!r}; securehub imports the "
                    "allowlisted package itself and takes classes from what that loads, never a submodule a "
                    f"config names. List {module!r} in reconstruct.trusted_modules if a model needs its classes"
                )
            mod = loaded_mod
    # checked against the scope the import ran under (the cwd and tree the scrub removed)
    _check_installed(getattr(mod, "__file__", None), scope, what=f"{what} (module {module!r})")
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


def _submodule_exists(module: str) -> bool:
    """Whether the installed package holds ``module`` (its parent packages are loaded: nothing runs)."""
    parent, _, _ = module.rpartition(".")
    if parent and not isinstance(sys.modules.get(parent), types.ModuleType):
        return _submodule_exists(parent)  # an unloaded parent: judge it, never import it
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _anchor(module: str, kind: str, trusted_modules: Sequence[str]) -> str:
    """What resolving a path in ``module`` may import: the longest ``trusted_modules`` entry holding it
    (a class or enum), else its top-level package (a function of ``TRUSTED_CALLABLES``)."""
    if kind != "function":
        holders = [p for p in trusted_modules if module == p or module.startswith(p + ".")]
        if holders:
            return max(holders, key=len)
    return module.split(".", maxsplit=1)[0]


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
    :data:`~securehub.reconstruct.allow.TRUSTED_CALLABLES` (always, whatever
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
                "(activations such as torch.nn.functional:gelu; see securehub.reconstruct.allow); functions "
                "with global effects (hooks, set_*, manual_seed, I/O) are never called. Use the export "
                "strategy (pass example_inputs) for this model"
            )
    elif require_trusted and not is_trusted_module(path.module, trusted_modules):
        raise NotTrusted(f"{what}: class {path} is not in reconstruct.trusted_modules {list(trusted_modules)}")
    scope = _Scope.now(tree)  # once per reference: every decision below is taken against this scope
    mod = _import_installed(path.module, scope=scope, what=what, anchor=_anchor(path.module, kind, trusted_modules))
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
        _check_installed(filename, scope, what=f"{what} (class {path})")
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
        _check_installed(obj.__code__.co_filename, scope, what=f"{what} (function {path})")
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
