"""The torch.hub runtime inside the confined child (SPEC sections 6 and 7).

Entry point :func:`main` is called by :mod:`securehub.sandbox.child.bootstrap`
after confinement, with the channel socket. It reads one ``call`` frame and
answers with exactly one final frame (``names``, ``doc``, ``result``,
``converted`` or ``error``; see :mod:`securehub.sandbox.wire.messages`), possibly
after ``fetch`` round-trips and an ``export`` frame. Op ``convert`` imports no
hubconf: it unpickles the handed checkpoint with ``weights_only=True``
(:mod:`securehub.sandbox.child.convert`).

hubconf semantics follow ``torch.hub``: the tree is put at ``sys.path[0]``,
``hubconf.py`` is imported (here under a unique module name), its
``dependencies`` are checked with ``importlib.util.find_spec`` (nothing is
ever installed), ``list`` returns the public callables, ``help`` the
entrypoint's ``__doc__``.

Everything in this module runs next to untrusted code: it is a convenience
and a source of clear messages, not a boundary. The boundary is the OS
confinement and the parent's validation of what comes back.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors_bytes
from torch import nn

from securehub._util.determinism import fix_threads, seed_all
from securehub.sandbox.child import inputs as ci
from securehub.sandbox.child.arg_paths import LOCAL_FILE_HINT, named_by_argument, path_arguments
from securehub.sandbox.child.audit import Watch, default_read_roots, install
from securehub.sandbox.child.bootstrap import _is_memory_error
from securehub.sandbox.child.errors import ArtifactRefused, NestedRebuildRefused, WeightsOnlyRefused
from securehub.sandbox.child.fetch import install as install_fetch
from securehub.sandbox.child.inputs import Found
from securehub.sandbox.child.record import describe, recording
from securehub.sandbox.child.result import (
    ExportPackage,
    ResultRefused,
    collect_tensors,
    export_program,
    state_parts,
)
from securehub.sandbox.config import EXIT_MEMORY
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import recv_frame, send_frame, send_frame_file, send_frame_parts

__all__ = ["main"]

_MAX_CALL_BODY = 4 << 30
_MAX_CALL_HEADER = 64 << 20
#: hubconf's module name in the child. Fixed rather than random: it appears in the recorded config
#: (class paths) and the exported program, whose digests hub.lock pins, so two runs of the same
#: code must name it alike. One child imports one hubconf, so it cannot clash; repo code can read
#: its own ``__name__`` anyway, so nothing relied on it being unpredictable.
_HUBCONF_MODULE = "_securehub_hubconf_" + "0" * 32


class _Failure(Exception):  # noqa: N818
    """A final error frame to send: ``code``, ``message`` and maybe the refused fetch's index."""

    def __init__(self, code: str, message: str, fetch_error: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fetch_error = fetch_error


def _describe_exc(exc: BaseException) -> str:
    return m.sanitize_text(f"{type(exc).__qualname__}: {exc}")


def _failure_from(
    exc: BaseException, watch: Watch, what: str, tree: Path, arguments: Sequence[tuple[str, str]] = ()
) -> _Failure:
    """Classify an exception raised by repo code (see SPEC section 6).

    Running out of the address-space limit is a resource breach, not the
    entrypoint's failure: the child exits with ``EXIT_MEMORY`` so the parent
    reports ``sandbox-resource`` (a child may not send that code itself).
    A recorded violation outranks everything else: repo code that attempted a
    forbidden action and then raised ``ModuleNotFoundError`` is still a
    ``sandbox-violation``, never a benign-looking ``dependency-missing``.
    """
    if _is_memory_error(exc):
        os._exit(EXIT_MEMORY)
    for link in _chain(exc):
        if isinstance(link, ArtifactRefused):
            return _Failure(link.code, m.sanitize_text(str(link)), link.index)
        if isinstance(link, NestedRebuildRefused):
            return _Failure(link.code, m.sanitize_text(str(link)))
    if watch.violations:
        return _violation(watch, f"; {what} then failed with {_describe_exc(exc)}", arguments, tree)
    if watch.attempts and _permission_denied(exc):
        # The OS refused something the audit hook saw: name it (SPEC section 6).
        watch.violations.extend(watch.attempts)
        return _violation(watch, f"; {what} then failed with {_describe_exc(exc)}", arguments, tree)
    missing = _missing_dependency(exc, tree)
    if missing is not None:
        return missing
    return _Failure("entrypoint-error", f"{what} raised {_describe_exc(exc)}{_missing_file_hint(exc, arguments)}")


def _missing_file_hint(exc: BaseException, arguments: Sequence[tuple[str, str]]) -> str:
    """When a relative path an argument gave was not found: where the sandbox looked, and what to do."""
    for link in _chain(exc):
        if isinstance(link, FileNotFoundError) and isinstance(link.filename, str):
            named = named_by_argument(link.filename, arguments)
            if named is not None:
                return m.sanitize_text(
                    f". The entrypoint's {named[0]} names {named[1]!r}, a file of this machine: a relative path "
                    f"is looked up in the sandbox's own empty working directory, not yours{LOCAL_FILE_HINT}"
                )
    return ""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then each exception it was raised from or during (``__cause__``, else ``__context__``),
    once each: repo code can build a cycle."""
    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _missing_dependency(exc: BaseException, tree: Path) -> _Failure | None:
    """``dependency-missing`` when ``exc`` is an import of a package that is not installed.

    SPEC section 9: hubconf's ``dependencies`` *or imports* name an absent
    package. torch.hub surfaces both a module-level import and the lazy
    ``import`` inside an entrypoint (the common ``def model(): import timm``)
    as ``ModuleNotFoundError``; both are classified here, so the code does not
    depend on where the repo put its import. Not a missing dependency: a name
    that is not a module path, a package the tree itself holds (a broken
    repo), or one that is installed (a missing submodule: a version problem,
    reported as the entrypoint's error with the original message).
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    if not all(part.isidentifier() for part in exc.name.split(".")):
        return None
    if (tree / top).exists() or (tree / f"{top}.py").exists():
        return None
    try:
        installed = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        installed = False
    if installed:
        return None
    return _Failure(
        "dependency-missing",
        m.sanitize_text(
            f"{_importer(exc, tree)} imports {exc.name!r}, which is not installed; install it in this "
            "environment yourself (securehub never installs packages)"
        ),
    )


def _importer(exc: BaseException, tree: Path) -> str:
    """The repository file whose import failed (the innermost traceback frame in ``tree``), e.g.
    ``torchvggish/vggish_input.py`` imported by hubconf.py; ``hubconf.py`` when it imported the package itself."""
    root = os.path.realpath(tree)
    found = "the repository's code"
    tb = exc.__traceback__
    while tb is not None:
        path = os.path.realpath(tb.tb_frame.f_code.co_filename)
        if path.startswith(root + os.sep):
            found = os.path.relpath(path, root)
        tb = tb.tb_next
    return found


def _permission_denied(exc: BaseException) -> bool:
    """Whether a PermissionError (EACCES/EPERM: Landlock, seccomp) is anywhere in the chain."""
    return any(isinstance(link, PermissionError) for link in _chain(exc))


#: Said after a refused connection: the one way a hubconf's downloads reach the network.
_DOWNLOADS_HINT = (
    ". The sandbox has no network: downloads must use torch.hub.load_state_dict_from_url, "
    "torch.hub.download_url_to_file or torch.utils.model_zoo.load_url, which securehub answers "
    "(verified against hub.lock and the policy); a repository that downloads any other way "
    "(urllib, requests) cannot be loaded"
)


#: Said after a change to the repository's own files was refused (silero-models' ``init_jit_model``
#: makes ``<repo>/src/silero/model`` to download into): what torch.hub allows there and securehub does not.
_TREE_HINT = (
    ". The repository's own files are read-only in the sandbox: they are the pinned tree securehub "
    "verified, which repo code may not change (torch.hub lets hubconf write into its checkout), so an "
    "entrypoint that saves downloads or caches inside its repository cannot be loaded as it is; a fork "
    "that writes under torch.hub.get_dir() or a temporary directory instead (both writable in the "
    "sandbox) and downloads with torch.hub.download_url_to_file can be loaded"
)

#: The verbs the audit hook names for a change to the file system (``Watch._on_change``).
_CHANGE_VERBS = ("mkdir ", "rmdir ", "remove ", "rename ", "symlink ", "link ", "truncate ", "chmod ", "utime ")


def _changes_tree(violation: str, tree: Path | None) -> bool:
    """Whether ``violation`` names a write to, or a change of, a file in the repository's tree."""
    if tree is None:
        return False
    if violation.startswith("open ") and violation.endswith(" for writing"):
        path = violation.removeprefix("open ").removesuffix(" for writing")
    elif violation.startswith(_CHANGE_VERBS):
        path = violation.split(" ", 1)[1]
    else:
        return False
    root = os.path.realpath(tree)
    return path == root or path.startswith(root + os.sep)


def _violation(
    watch: Watch, tail: str = "", arguments: Sequence[tuple[str, str]] = (), tree: Path | None = None
) -> _Failure:
    named = ", ".join(watch.violations[:8])
    # A download with urllib/requests by host name stops at the DNS lookup (NVIDIA's ``_download_checkpoint``:
    # ``resolve api.ngc.nvidia.com``), before any connect: both get the hint.
    hint = _DOWNLOADS_HINT if any(v.startswith(("connect ", "resolve ")) for v in watch.violations) else ""
    if any(_changes_tree(v, tree) for v in watch.violations):
        hint += _TREE_HINT
    for violation in watch.violations:
        opened = violation.removeprefix("open ")
        by = named_by_argument(opened, arguments) if opened != violation else None
        if by is not None:
            hint += f". The entrypoint's {by[0]} names {by[1]!r}{LOCAL_FILE_HINT}"
            break
    return _Failure(
        "sandbox-violation",
        m.sanitize_text(f"the repository's code attempted a forbidden action: {named}{tail}{hint}"),
    )


def _deterministic() -> None:
    """Seed every RNG repo code can reach and turn on torch's deterministic algorithms.

    Output pinning (SPEC section 4) needs the same pinned code to give the same
    weights on every run, including a ``pretrained=False`` random init: torch,
    Python's ``random`` and numpy (when installed) start from :data:`securehub._util.determinism.SEED`,
    before hubconf is imported and again before the entrypoint is called (the
    ``source`` strategy's parent-side re-run seeds at the same two points).
    ``warn_only``: an op with no deterministic kernel warns instead of failing
    the load; if its output then differs, two ``lock`` runs disagree and the
    entrypoint is not pinned. This is a convenience, not a boundary: the
    parent compares digests, whatever the child did.

    torch's thread count is fixed too (:func:`securehub._util.determinism.fix_threads`):
    reductions and LAPACK give other bits with another count, and the count
    would otherwise follow the machine's cores and the parent's ``OMP_NUM_THREADS``
    (or, in a fork, the fork server's), so a pin made on a CI runner failed on a laptop.
    """
    seed_all()
    fix_threads()
    _deterministic_algorithms()


def _deterministic_algorithms() -> None:
    """torch's deterministic algorithms on (``warn_only``), without importing ``torch._inductor``.

    ``torch.use_deterministic_algorithms`` also sets
    ``torch._inductor.config.deterministic``, and importing that config pulls
    in ``torch._dynamo`` and inductor: ~800 modules, the largest avoidable
    cost of a sandbox start (issue 11 item 6, profiled), for a compiler most
    entrypoints never use. Eager kernels obey torch's own flag, set here
    directly; when inductor is already imported (a hubconf that uses
    ``torch.compile``, at the second call before the entrypoint) the public
    function sets both. Importing inductor consumes no RNG draw, so the seeded
    state, and hence every pinned output, is the same either way. If the
    private setter is missing or does not take, the public function is used.
    """
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is not None and "torch._inductor.config" not in sys.modules:
        setter(True, warn_only=True)
        if torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled():
            return
    torch.use_deterministic_algorithms(True, warn_only=True)


def _import_hubconf(tree: Path, watch: Watch) -> types.ModuleType:
    hubconf = tree / "hubconf.py"
    if not hubconf.is_file():
        raise _Failure("entrypoint-not-found", f"the repository tree has no hubconf.py at {hubconf}")
    name = _HUBCONF_MODULE
    spec = importlib.util.spec_from_file_location(name, hubconf)
    if spec is None or spec.loader is None:
        raise _Failure("entrypoint-error", f"hubconf.py at {hubconf} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(tree))
    # Seeded once, by the caller's ``_deterministic()`` right before this import (the source
    # strategy's parent-side re-run seeds at the same point, see securehub._util.determinism).
    watch.active = True
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        failure = _failure_from(exc, watch, "importing hubconf.py", tree)
        if failure.code == "entrypoint-error":
            failure = _declared_missing_failure(module, exc, failure, watch)
        raise failure from None
    finally:
        watch.active = False
    return module


def _declared_missing_failure(
    module: types.ModuleType, exc: BaseException, original: _Failure, watch: Watch
) -> _Failure:
    """hubconf.py raised while importing, after assigning ``dependencies``, some of them absent: that is
    ``dependency-missing`` naming them (fairseq's hubconf imports each one itself and raises
    ``RuntimeError("Missing dependencies: ...")`` before torch.hub could check the list), with the error
    it raised; otherwise ``original`` (the import's ``entrypoint-error``). Looking a dotted name up imports
    its parent package: a violation that causes is still reported as one."""
    try:
        missing = _missing_declared(module)
    except _Failure:
        return original  # a malformed list: the import's own error says more
    if watch.violations:
        return _violation(watch, f"; importing hubconf.py then failed with {_describe_exc(exc)}")
    if not missing:
        return original
    return _declared_missing(missing, f"; importing it raised {_describe_exc(exc)}")


def _check_dependencies(module: types.ModuleType) -> None:
    missing = _missing_declared(module)
    if missing:
        raise _declared_missing(missing)


def _declared_missing(missing: Sequence[str], raised: str = "") -> _Failure:
    return _Failure(
        "dependency-missing",
        m.sanitize_text(
            f"hubconf.py declares dependencies that are not installed: {', '.join(missing)}{raised}; "
            "install them in this environment yourself (securehub never installs packages)"
        ),
    )


def _missing_declared(module: types.ModuleType) -> list[str]:
    """The names in hubconf's ``dependencies`` that are not installed (``entrypoint-error`` if malformed)."""
    deps = module.__dict__.get("dependencies")
    if deps is None:
        return []
    if not isinstance(deps, (list, tuple)) or not all(isinstance(d, str) for d in deps):
        raise _Failure("entrypoint-error", "hubconf.py 'dependencies' must be a list of module names")
    missing: list[str] = []
    for dep in deps:
        try:
            found = importlib.util.find_spec(dep) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dep)
    return missing


def _entry(module: types.ModuleType, name: str | None) -> Callable[..., Any]:
    func = getattr(module, name, None) if name else None
    if func is None or not callable(func):
        public = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise _Failure(
            "entrypoint-not-found",
            m.sanitize_text(
                f"hubconf.py defines no callable {name!r}; available entrypoints: {', '.join(public) or 'none'}"
            ),
        )
    return func  # type: ignore[no-any-return]


def _doc(func: Callable[..., Any]) -> str | None:
    doc = func.func.__doc__ if isinstance(func, functools.partial) else func.__doc__
    return doc if isinstance(doc, str) else None


def _refuse_result(result: Any) -> _Failure:
    if isinstance(result, torch.jit.ScriptModule):
        what = "a TorchScript module (torch.jit.ScriptModule)"
        todo = "TorchScript carries its own code; return the eager nn.Module instead"
    else:
        what = f"a {type(result).__module__}.{type(result).__qualname__}"
        todo = (
            "securehub can only rebuild a single torch.nn.Module; return the model alone "
            "(use another entrypoint for anything else)"
        )
    return _Failure("reconstruct-refused", m.sanitize_text(f"the entrypoint returned {what}; {todo}"))


def _compiled(result: nn.Module) -> str | None:
    """Why a ``torch.compile``'d model (an ``OptimizedModule``) is not run nor exported here; None for others.

    ``torch._dynamo`` is looked up in ``sys.modules`` only: a hubconf that never compiled did not import it.
    """
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    optimized = getattr(eval_frame, "OptimizedModule", None)
    if not isinstance(optimized, type) or not isinstance(result, optimized):
        return None
    inner = getattr(result, "_orig_mod", None)
    wrapped = f" wrapping {type(inner).__module__}:{type(inner).__qualname__}" if isinstance(inner, nn.Module) else ""
    return m.sanitize_text(
        f"{m.COMPILED_EXPORT_ERROR} (OptimizedModule{wrapped}); its first call runs a C++ compiler, which "
        "the sandbox forbids, and torch.export takes eager models only, so nothing was run or exported. Use "
        "an entrypoint returning the model uncompiled (compile it after loading), or a policy allowing the "
        "source strategy if you trust the repository's code"
    )


def _export_error(result: nn.Module, exc: BaseException) -> str:
    """Why torch.export failed: its exception, and when the model holds a TorchScript submodule (HiFi-GAN's
    ``jitable``: ``model.conv_post = torch.jit.script(model.conv_post)``), that this is the likely cause
    (torch.export traces eager modules; it fails inside the scripted one with an unrelated-looking
    ``TypeError``) and what to do."""
    said = _describe_exc(exc)
    scripted = [name for name, sub in result.named_modules() if name and isinstance(sub, torch.jit.ScriptModule)]
    if not scripted:
        return said
    return m.sanitize_text(
        f"{said}; the model holds TorchScript submodules ({', '.join(scripted[:4])}), which torch.export "
        "does not trace: use an entrypoint argument that leaves them unscripted (such as jitable=False), or "
        "a policy allowing the source strategy if you trust the repository's code"
    )


def _example_inputs(call: m.CallRequest, body: bytes) -> tuple[torch.Tensor, ...] | None:
    if not call.has_example_inputs:
        return None

    loaded = load_safetensors_bytes(body)
    return tuple(loaded[str(i)] for i in range(len(loaded)))


def _load(channel: socket.socket, call: m.CallRequest, module: types.ModuleType, watch: Watch, body: bytes) -> None:
    func = _entry(module, call.entrypoint)
    _deterministic()
    watch.active = True
    try:
        with recording():
            result = func(*call.args, **dict(call.kwargs))
    except BaseException as exc:
        raise _failure_from(exc, watch, f"entrypoint {call.entrypoint!r}", Path(call.tree),
                            path_arguments(call.args, call.kwargs)) from None  # fmt: skip
    finally:
        watch.active = False
    if watch.violations:
        # Fail closed: an entrypoint that swallowed a refused action still attempted it.
        raise _violation(watch, arguments=path_arguments(call.args, call.kwargs))
    if not isinstance(result, nn.Module) or isinstance(result, torch.jit.ScriptModule):
        raise _refuse_result(result)
    try:
        config = describe(result, tree=Path(call.tree))
        tensors, aliases = collect_tensors(result)
    except (ValueError, ResultRefused) as exc:
        raise _Failure("reconstruct-refused", m.sanitize_text(str(exc))) from None
    config["aliases"] = aliases
    export = None
    meta: dict[str, Any] = {"config": config}
    inputs = _example_inputs(call, body)
    compiled = _compiled(result)
    if compiled is not None:
        # no forward pass: it would compile (inductor starts g++, a forbidden exec), and torch.export
        # takes the eager model only; the source strategy re-runs the entrypoint where it is allowed
        config["export_error"] = compiled
    elif call.want_export and inputs is not None:
        try:
            # On a copy: a failed export must not leave its tensors in the state (the parent refuses
            # tensors under the export prefixes that no program maps).
            staged = dict(tensors)
            export = export_program(result, inputs, staged, aliases, sizes=call.export_sizes)
            tensors = staged
        except Exception as exc:
            config["export_error"] = _export_error(result, exc)
    elif call.find_inputs != "off":
        found = _find_inputs(call, result, watch, tensors, aliases, config)
        if found is not None:
            meta[m.FOUND_INPUTS] = [s.to_json() for s in found.specs]
            if found.exported is not None:
                export, tensors = found.exported
    try:
        parts, keep = state_parts(tensors)
    except ResultRefused as exc:
        raise _Failure("reconstruct-refused", m.sanitize_text(str(exc))) from None
    if export is not None:
        send_frame(channel, m.EXPORT, export.meta(), export.program_json)
    send_frame_parts(channel, m.RESULT, meta, parts)  # straight from the tensors' memory
    del parts, keep


_Exported = tuple[ExportPackage, dict[str, torch.Tensor]]


def _find_inputs(
    call: m.CallRequest,
    result: nn.Module,
    watch: Watch,
    tensors: dict[str, torch.Tensor],
    aliases: dict[str, str],
    config: dict[str, Any],
) -> Found[_Exported] | None:
    """Search example inputs (``call.find_inputs``; see :mod:`.inputs`), exporting with them for ``auto``.

    ``hint`` searches only when the model has a repository-defined class (the
    only case the parent would refuse for missing inputs) and never exports.
    The forward passes run repository code, so the audit hook watches them
    like the entrypoint itself (fail closed on a forbidden action).
    """
    hint = call.find_inputs == "hint"
    if hint and not ci.has_repo_class(result, Path(call.tree)):
        return None
    export = None
    if call.want_export and not hint:

        def export(inputs: tuple[torch.Tensor, ...]) -> _Exported | None:
            mine = dict(tensors)  # export_program adds its tensors; keep them only if it succeeds
            try:
                return export_program(result, inputs, mine, aliases, sizes=call.export_sizes), mine
            except Exception as exc:  # the next candidate may export
                config["export_error"] = _export_error(result, exc)
                return None

    cands = ci.candidates(result, ci.MAX_HINT_CANDIDATES if hint else ci.MAX_CANDIDATES)
    watch.active = True
    try:
        found = ci.search(result, cands, budget_s=ci.BUDGET_S[call.find_inputs], export=export)
    finally:
        watch.active = False
    if watch.violations:
        raise _violation(watch)
    if found is not None and found.exported is not None:
        config.pop("export_error", None)
    return found


def _convert(channel: socket.socket, call: m.CallRequest, watch: Watch) -> None:
    from securehub.sandbox.child.convert import ConvertRefused, convert  # noqa: PLC0415 - lazy: convert mode only

    assert call.file is not None  # noqa: S101 - CallRequest.from_meta guarantees it for op convert
    try:
        meta, out = convert(Path(call.file), watch)
    except ConvertRefused as exc:
        raise _Failure(exc.code, exc.message) from None
    except BaseException as exc:
        if _is_memory_error(exc):
            os._exit(EXIT_MEMORY)
        raise
    send_frame_file(channel, m.CONVERTED, meta, out)
    out.unlink()


def _serve(channel: socket.socket, watch: Watch) -> None:
    frame = recv_frame(channel, max_body_bytes=_MAX_CALL_BODY, max_header_bytes=_MAX_CALL_HEADER)
    if frame.type != m.CALL:
        raise _Failure("entrypoint-error", f"securehub child expected a call frame, got {frame.type!r}")
    call = m.CallRequest.from_meta(frame.meta)
    watch.network_allowed = call.network_allowed
    watch.filesystem_open = call.filesystem_open
    if call.op == "convert":
        _convert(channel, call, watch)
        return
    tree = Path(call.tree)
    watch.read_roots = (*watch.read_roots, os.path.realpath(tree))
    _deterministic()
    module = _import_hubconf(tree, watch)
    if watch.violations:
        raise _violation(watch)
    if call.op == "list":
        names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        send_frame(channel, m.NAMES, {"names": [n for n in names if n.isidentifier()]})
        return
    _check_dependencies(module)
    if call.op == "help":
        send_frame(channel, m.DOC, {"doc": _doc(_entry(module, call.entrypoint))})
        return
    _load(channel, call, module, watch, frame.body)


def _write_roots() -> tuple[str, ...]:
    """Where the audit hook lets repo code write: the child's own directory, the one Landlock grants.

    The bootstrap changed into it (``plan["tmpdir"]``, holding ``home/`` and ``tmp/``) before any repo
    code ran, so ``HOME`` (``~/.torch``, ``TORCH_HOME``) is writable as docs/sandbox.md says, not only
    ``TMPDIR``; a write anywhere else is still named as a violation (and refused by the OS).
    """
    tmp = os.environ.get("TMPDIR") or str(Path.cwd())
    return tuple(dict.fromkeys(os.path.realpath(p) for p in (Path.cwd(), tmp, tempfile.gettempdir())))


def main(channel: socket.socket) -> None:
    """Serve one call on ``channel`` (see module docstring); always ends with a final frame."""
    watch = Watch(write_roots=_write_roots(), read_roots=default_read_roots())
    install(watch)
    install_fetch(channel, watch)
    try:
        _serve(channel, watch)
    except _Failure as failure:
        meta: dict[str, Any] = {"code": failure.code, "message": failure.message}
        if failure.fetch_error is not None:
            meta["fetch_error"] = failure.fetch_error
        send_frame(channel, m.ERROR, meta)
    except WeightsOnlyRefused as exc:  # raised outside repo code paths, e.g. during export
        send_frame(channel, m.ERROR, {"code": "sandbox-violation", "message": m.sanitize_text(str(exc))})
