"""One handler per CLI verb, chosen through the :class:`Verb` enum (never by ``getattr`` on a name).

Each handler parses nothing itself and calls the Python API. This module
imports nothing from :mod:`securehub.cli.app` (the argparse layer imports
it, not the other way round). The API modules are imported inside the
handlers on purpose: they pull in torch, and ``securehub --version`` or
``securehub scan`` must not pay for that.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from securehub._util.atomic import is_special_file, replace_file
from securehub._util.hubdir import hub_dir
from securehub._util.text import clean, one_line
from securehub.config.lockfile import Lockfile
from securehub.errors import ReconstructRefused, UsageError
from securehub.verify.pickle.scan import scan_file

if TYPE_CHECKING:
    import torch

__all__ = ["EXIT_FINDING", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "Handler", "Verb", "handler_for", "parse_kv"]

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2
#: A bug in securehub (an exception that is not a SecureHubError): SPEC section 10 allows 0, 1, 2 only,
#: and a bug must fail closed (non-zero) without reading as a usage error.
EXIT_INTERNAL = 1

Handler = Callable[[argparse.Namespace], int]


class Verb(str, enum.Enum):
    """The CLI's subcommands (SPEC section 10); the value is the word typed on the command line."""

    LOCK = "lock"
    LOAD = "load"
    LIST = "list"
    HELP = "help"
    AUDIT = "audit"
    SCAN = "scan"
    KEYGEN = "keygen"
    SIGN = "sign"
    CACHE = "cache"


def parse_kv(items: Sequence[str] | None) -> dict[str, Any]:
    """``--arg K=V``: V is parsed as JSON when it is valid JSON, otherwise taken as a string."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--arg expects K=V with K a Python identifier, found {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _say(text: str) -> None:
    print(text)


def cmd_lock(args: argparse.Namespace) -> int:
    from securehub.pipeline.lock import check_lock, lock_repos  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    if args.check:
        if args.entrypoint or args.arg or args.upgrade or args.urls:
            print("error[usage]: --check cannot be combined with -e, --arg, --url or --upgrade", file=sys.stderr)
            return EXIT_USAGE
        drifts = check_lock(args.specs, policy=args.policy, lock=args.lock)
        for d in drifts:
            print(f"error[{d.code}]: {one_line(d.message)}", file=sys.stderr)
        if not drifts:
            _say("hub.lock is up to date: every ref still points at its pinned commit")
        return EXIT_FINDING if drifts else EXIT_OK
    outcome = lock_repos(
        args.specs,
        entrypoints=args.entrypoint,
        args=_entrypoint_args(args.arg),
        policy=args.policy,
        lock=args.lock,
        upgrade=args.upgrade,
        example_inputs=args.example_input,
        urls=_url_pins(args.urls),
    )
    for key, action in outcome.actions:
        entry = outcome.lock.repo(key)
        art = outcome.lock.artifact(key)
        detail = f" -> {entry.ref_type} {entry.ref} @ {entry.commit}" if entry else ""
        detail = f" -> sha256 {art.sha256}, {art.size} bytes" if art is not None and not detail else detail
        _say(f"{action}: {one_line(key)}{detail}")
    verb = "created" if outcome.created else "wrote" if outcome.changed else "unchanged"
    _say(f"{verb}: {outcome.path}")
    if outcome.signature_dropped:
        print(
            "warning: hub.lock changed, so its signature was removed; re-sign with `securehub sign --key KEY`",
            file=sys.stderr,
        )
    return EXIT_OK


#: ``securehub.load``'s own parameters (torch.hub's included): never entrypoint arguments (SPEC section 2).
_LOAD_PARAMETERS = frozenset(
    {"repo_or_dir", "model", "source", "policy", "lock", "force_reload", "verbose", "example_inputs",
     "trust_repo", "skip_validation"}
)  # fmt: skip


def _entrypoint_args(items: list[str]) -> dict[str, Any]:
    """``--arg K=V`` values for the entrypoint; a K that is one of load's own parameters is a usage error."""
    kwargs = parse_kv(items)
    clash = sorted(_LOAD_PARAMETERS & set(kwargs))
    if clash:
        raise UsageError(
            f"--arg {clash[0]}=...: {clash[0]!r} is a parameter of load itself, not of the entrypoint; "
            "use the matching option (e.g. --force-reload, --policy, --lock) instead"
        )
    return kwargs


def _url_pins(pairs: list[list[str | None]]) -> dict[str, str | None]:
    """``--url U [--sha256 H]`` pairs as ``{url: expected sha256 or None}``; a URL given twice must agree."""
    out: dict[str, str | None] = {}
    for url, digest in pairs:
        assert url is not None  # noqa: S101 - _UrlAction always sets it
        if url in out and out[url] != digest:
            raise UsageError(f"--url {url} is given twice with different --sha256 values")
        out[url] = digest
    return out


def cmd_load(args: argparse.Namespace) -> int:
    from securehub import api  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)
    from securehub.pipeline.lock_entrypoints import parse_example_input  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    kwargs = _entrypoint_args(args.arg)
    inputs: tuple[torch.Tensor, ...] | Literal["auto"] | None = None
    if "auto" in args.example_input:
        if len(args.example_input) != 1:
            raise UsageError("--example-input auto finds every input itself: give it alone, not with explicit shapes")
        inputs = "auto"
    elif args.example_input:
        inputs = api.example_tensors(tuple(parse_example_input(t) for t in args.example_input))
    model = api.load(
        args.spec,
        args.entrypoint,
        source=args.source,
        policy=args.policy,
        lock=args.lock,
        force_reload=args.force_reload,
        example_inputs=inputs,
        **kwargs,
    )
    source = getattr(model, "securehub_source_class", None)
    exported = f", exported from {source}" if isinstance(source, str) else ""
    _say(
        f"loaded {type(model).__module__}.{type(model).__qualname__} "
        f"({sum(p.numel() for p in model.parameters())} parameters{exported})"
    )
    if args.save:
        _save_state(model, Path(args.save))
        _say(f"saved state dict: {args.save}")
    return EXIT_OK


def _save_state(model: torch.nn.Module, target: Path) -> None:
    """``safetensors.torch.save_model`` into a temp file beside ``target``, then one rename.

    Guarantees: ``target`` is either the complete file or untouched (no
    partial file is left, whatever fails). An unwritable destination is a
    usage error (``ValueError``: exit 2); a model whose state safetensors
    cannot represent is ``reconstruct-refused``. Never a traceback (issue 10:
    a shared-storage state crashed here uncaught).
    """
    from safetensors import SafetensorError  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)
    from safetensors.torch import save_model  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    special = is_special_file(target)  # --save /dev/null, /dev/stdout: written into, never replaced
    try:
        where = None if special else target.parent
        fd, tmp_name = tempfile.mkstemp(dir=where, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(
            f"--save {target}: expected a writable directory, found {exc.strerror or exc}; choose another path"
        ) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_model(model, tmp_name, metadata={"format": "pt"})
        if special:
            with tmp.open("rb") as saved:
                replace_file(target, lambda out: shutil.copyfileobj(saved, out, 1 << 20))
        else:
            tmp.chmod(0o644)
            tmp.replace(target)
    except OSError as exc:
        raise UsageError(
            f"--save {target}: could not write the file ({exc.strerror or exc}); choose another path"
        ) from None
    except (SafetensorError, ValueError, RuntimeError, TypeError) as exc:
        raise ReconstructRefused(
            f"--save {target}: expected a state dict safetensors can store, but saving failed: "
            f"{one_line(str(exc))[:300]}. The model itself loaded; save its state_dict() with torch.save instead"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def cmd_list(args: argparse.Namespace) -> int:
    from securehub import api  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    for name in api.list(args.spec, source=args.source, policy=args.policy, lock=args.lock, verbose=False):
        _say(one_line(name))
    return EXIT_OK


def cmd_help(args: argparse.Namespace) -> int:
    from securehub import api  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    _say(clean(api.help(args.spec, args.entrypoint, source=args.source, policy=args.policy, lock=args.lock)))
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from securehub.audit.report import run_audit, write_report  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    report = run_audit(policy=args.policy, lock=args.lock, offline=args.offline, rerun=args.rerun)
    try:
        write_report(report, args.format, Path(args.output) if args.output else None)
    except OSError as err:
        print(f"error[usage]: cannot write the report to {one_line(str(args.output))}: {err.strerror}", file=sys.stderr)
        return EXIT_USAGE
    if args.exit_zero:
        return EXIT_OK  # the report is written; the findings are in it, not in the exit code
    return EXIT_FINDING if report.findings else EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    worst = EXIT_OK
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            print(f"error[usage]: {one_line(name)}: not a file", file=sys.stderr)
            return EXIT_USAGE
        result = scan_file(path)
        full = str(path.absolute())  # the full path: findings are archived by CI, away from the cwd
        if result.clean:
            print(one_line(f"{full}: {result.lines()[0].partition(': ')[2]}"))
            continue
        for finding in result.findings:
            # The same error[<code>] form as every other refusal (check() raises UnsafePickle for these).
            print(f"error[unsafe-pickle]: {one_line(f'{full}: {finding} [{result.format}]')}", file=sys.stderr)
        worst = EXIT_FINDING
    return worst


def cmd_keygen(args: argparse.Namespace) -> int:
    from securehub.verify.signature import generate_keypair  # noqa: PLC0415 - lazy: cryptography, only keygen/sign

    try:
        private, public = generate_keypair(args.prefix)
    except FileExistsError as err:
        print(f"error[usage]: {err}; choose another prefix or remove the old files", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a missing directory, no permission, a read-only file system: the prefix is wrong
        where = one_line(str(err.filename or args.prefix))
        print(
            f"error[usage]: cannot create the key file {where}: expected a writable directory, found "
            f"{one_line(err.strerror or str(err))}; choose a prefix in an existing, writable directory",
            file=sys.stderr,
        )
        return EXIT_USAGE
    _say(f"private key: {private} (mode 0600; keep it secret)")
    _say(f"public key:  {public} (add its content to signatures.trusted_keys)")
    return EXIT_OK


def cmd_sign(args: argparse.Namespace) -> int:
    from securehub.pipeline.context import lock_location  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)
    from securehub.verify.signature import sign_lock  # noqa: PLC0415 - lazy: cryptography, only keygen/sign

    path = lock_location(args.lock, for_writing=True)
    assert path is not None  # noqa: S101 - for_writing always yields a path
    signed = sign_lock(Lockfile.load(path), args.key)
    signed.save(path)
    assert signed.signature is not None  # noqa: S101
    _say(f"signed {path} with key {signed.signature.keyid}")
    return EXIT_OK


def cmd_cache(args: argparse.Namespace) -> int:
    from securehub.store.cache import Cache  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    bundled = args.action in ("export", "import")
    if bundled != (args.bundle is not None):
        raise UsageError(
            f"cache {args.action}: "
            + ("expected a BUNDLE file argument" if bundled else f"takes no argument, found {args.bundle!r}")
        )
    if bundled:
        return _cache_bundle(args)
    if args.action == "dir":
        _say(str(hub_dir()))
        return EXIT_OK
    cache = Cache(hub_dir())
    if args.action == "verify":
        problems = cache.verify()
        for p in problems:
            print(f"error[hash-mismatch]: {one_line(str(p))}", file=sys.stderr)
        if not problems:
            _say(f"cache verified: {cache.dir}")
        return EXIT_FINDING if problems else EXIT_OK
    report = cache.prune()
    _say(f"pruned {len(report.removed)} entries and {len(report.removed_locks)} unused lock files from {cache.dir}")
    return EXIT_OK


def _cache_bundle(args: argparse.Namespace) -> int:
    from securehub.pipeline.bundle import export_bundle, import_bundle  # noqa: PLC0415 - lazy: torch, kept out of CLI start-up (--version, scan)

    if args.action == "export":
        try:
            report = export_bundle(args.bundle, lock=args.lock, policy=args.policy)
        except OSError as err:  # a full disk or device, a missing directory: nothing was written
            raise UsageError(
                f"cannot write the bundle to {one_line(str(args.bundle))}: {err.strerror or err}; choose another path"
            ) from None
        _say(f"exported {len(report.trees)} trees, {len(report.artifacts)} artifacts and {len(report.results)} pinned "
             f"results to {report.path}")  # fmt: skip
    else:
        report = import_bundle(args.bundle, lock=args.lock, policy=args.policy)
        _say(f"imported {len(report.trees)} trees, {len(report.artifacts)} artifacts and {len(report.results)} pinned "
             f"results from {report.path}")  # fmt: skip
    return EXIT_OK


#: Every verb's handler. A verb without one fails the import-time check below, not a user's command.
_HANDLERS: dict[Verb, Handler] = {
    Verb.LOCK: cmd_lock,
    Verb.LOAD: cmd_load,
    Verb.LIST: cmd_list,
    Verb.HELP: cmd_help,
    Verb.AUDIT: cmd_audit,
    Verb.SCAN: cmd_scan,
    Verb.KEYGEN: cmd_keygen,
    Verb.SIGN: cmd_sign,
    Verb.CACHE: cmd_cache,
}
if set(_HANDLERS) != set(Verb):  # pragma: no cover - a programming error, caught by any CLI test
    raise RuntimeError(f"CLI verbs without a handler: {sorted(set(Verb) - set(_HANDLERS))}")


def handler_for(verb: Verb) -> Handler:
    """The one handler of ``verb``."""
    return _HANDLERS[verb]
