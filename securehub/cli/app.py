"""The ``securehub`` command line: a thin argparse layer over the Python API.

Exit codes (SPEC section 10): 0 success / no findings; 1 a verification
failure, policy violation or audit finding; 2 usage or configuration error.
Every refused or failed action prints ``error[<code>]: <message>`` on stderr.
An exception that is neither a ``SecureHubError`` nor a ``UsageError`` is a
bug: one ``internal error (a bug in securehub): ...`` line, exit 1.

This module is the argparse layer only; each verb's handler lives in
:mod:`securehub.cli.commands`, looked up through its ``Verb`` enum.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from securehub._util.text import one_line
from securehub._util.version import __version__
from securehub.cli.commands import EXIT_FINDING, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Verb, handler_for, parse_kv
from securehub.errors import SecureHubError, UsageError

__all__ = ["EXIT_FINDING", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "main", "parse_kv"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error[usage]: {message}\n")


class _UrlAction(argparse.Action):
    """``--url URL``: appends ``[URL, None]``; a following ``--sha256`` fills in the digest."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        pairs = list(getattr(ns, self.dest) or [])
        pairs.append([str(values), None])
        setattr(ns, self.dest, pairs)


class _Sha256Action(argparse.Action):
    """``--sha256 HEX``: the expected digest of the ``--url`` right before it."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        pairs = list(getattr(ns, self.dest) or [])
        if not pairs or pairs[-1][1] is not None:
            parser.error("--sha256 must follow the --url it belongs to (one --sha256 per --url)")
        pairs[-1] = [pairs[-1][0], str(values).lower()]
        setattr(ns, self.dest, pairs)


def _print_error(err: SecureHubError) -> None:
    print(f"error[{err.code}]: {one_line(str(err))}", file=sys.stderr)


_SPEC_FORMS = """\
SPEC forms (the repository; hub.lock keys are the SPEC exactly as written):
  owner/repo:TAG                GitHub (or $SECUREHUB_GITHUB_URL), e.g. pytorch/vision:v0.20.0
  git+https://host/path@TAG     any git remote (also git+ssh://, git+file:///abs/path;
                                git+http:// only for loopback hosts)
  DIR with --source local       a directory holding hubconf.py (refused by the strict policy)
  A ref must be a branch or tag of that repository; commit SHAs are refused (hub.lock pins them).
  Without a ref the default branch is used (refused by the strict policy).
ENTRYPOINT is a function defined in the repository's hubconf.py (see `securehub list SPEC`).
--arg K=V passes keyword argument K to the entrypoint; V is JSON when it parses as JSON
  (true, 8, 0.5, "x", [1,2]), otherwise a string: --arg weights=DEFAULT --arg num_classes=10
"""

_LOCK_EXAMPLES = """\
examples:
  securehub lock pytorch/vision:v0.20.0                          pin the tag's commit and tree digest
  securehub lock pytorch/vision:v0.20.0 -e resnet18 --arg weights=DEFAULT
                                  also run resnet18 in the sandbox and pin every artifact it fetches
  securehub lock --url https://example.com/w.safetensors --sha256 HEX   pin a bare artifact
  securehub lock --check                                         exit 1 if anything drifted
"""

_LOAD_EXAMPLES = """\
examples:
  securehub load pytorch/vision:v0.20.0 resnet18 --arg weights=DEFAULT --save resnet18.safetensors
  securehub load ./myrepo mlp --source local --policy default --arg hidden=8
"""


_AUDIT_EXAMPLES = """\
examples:
  securehub audit                                  lock, policy, signature, cache and ref drift
  securehub audit --rerun --format sarif --output audit.sarif
                                  also re-run pinned entrypoints and compare their outputs with hub.lock
  securehub audit --offline --rerun                air-gapped: verified cache only, no network
"""


def _verb(
    sub: Any, name: str, summary: str, *, epilog: str | None = None, forms: bool = False
) -> argparse.ArgumentParser:
    """One subcommand whose --help explains the SPEC forms and shows examples where they help."""
    text = _SPEC_FORMS + ("\n" + epilog if epilog else "") if forms else epilog
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=summary, epilog=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="securehub", description="Security-first, sandboxed torch.hub.")
    p.add_argument("--version", action="version", version=f"securehub {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp: argparse.ArgumentParser, *, lock: bool = True) -> None:
        sp.add_argument("--policy", help="built-in name (strict|default|permissive) or a YAML path")
        if lock:
            sp.add_argument("--lock", help="hub.lock path (default: $SECUREHUB_LOCK or ./hub.lock)")

    sp = _verb(
        sub, Verb.LOCK.value, "pin repos (and entrypoint artifacts) in hub.lock", epilog=_LOCK_EXAMPLES, forms=True
    )
    sp.add_argument("specs", nargs="*", metavar="SPEC", help="repos to pin (default: every repo already in hub.lock)")
    sp.add_argument(
        "-e", "--entrypoint", action="append", default=[], metavar="ENTRYPOINT",
        help="also run ENTRYPOINT in the sandbox and pin the artifacts it fetches (repeatable)",
    )  # fmt: skip
    sp.add_argument("--arg", action="append", default=[], metavar="K=V", help="entrypoint keyword argument")
    sp.add_argument(
        "--upgrade", action="store_true",
        help="re-resolve entries already in the lock (and re-download --url artifacts it already pins)",
    )  # fmt: skip
    sp.add_argument("--check", action="store_true", help="verify the lock; write nothing; exit 1 on drift")
    sp.add_argument(
        "--example-input", action="append", default=[], metavar="1x3x224x224:float32|auto",
        help="record example input shapes for -e ENTRYPOINT (export strategy; repeat for several inputs); "
        "'auto': the sandbox finds inputs the model accepts (its hints, its first layer, a short candidate "
        "list), checks them with a forward pass and export, and records them",
    )  # fmt: skip
    sp.add_argument(
        "--url", action=_UrlAction, dest="urls", default=[], metavar="URL",
        help="pin a bare artifact URL in hub.lock's artifacts (downloaded, checked and digested)",
    )  # fmt: skip
    sp.add_argument(
        "--sha256", action=_Sha256Action, dest="urls", metavar="HEX",
        help="expected sha256 of the preceding --url; the download must match it",
    )  # fmt: skip
    common(sp)

    sp = _verb(
        sub, Verb.LOAD.value, "load an entrypoint (sandboxed) and optionally save its state dict",
        epilog=_LOAD_EXAMPLES, forms=True,
    )  # fmt: skip
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("entrypoint", metavar="ENTRYPOINT")
    sp.add_argument("--arg", action="append", default=[], metavar="K=V", help="entrypoint keyword argument")
    sp.add_argument("--save", metavar="FILE.safetensors", help="write the loaded model's state dict")
    sp.add_argument(
        "--example-input",
        action="append",
        default=[],
        metavar="1x3x224x224:float32|auto",
        help="input shapes for the export strategy (deterministic values; repeat for several inputs); "
        "'auto': the sandbox finds inputs the model accepts and exports with them",
    )
    sp.add_argument("--source", default="github", choices=["github", "local"])
    sp.add_argument("--force-reload", action="store_true", help="re-fetch the tree and re-run the sandbox")
    common(sp)

    sp = _verb(sub, Verb.LIST.value, "list a repo's entrypoints (computed in the sandbox)", forms=True)
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("--source", default="github", choices=["github", "local"])
    common(sp)

    sp = _verb(sub, Verb.HELP.value, "show an entrypoint's docstring (computed in the sandbox)", forms=True)
    sp.add_argument("spec", metavar="SPEC")
    sp.add_argument("entrypoint", metavar="ENTRYPOINT")
    sp.add_argument("--source", default="github", choices=["github", "local"])
    common(sp)

    sp = _verb(
        sub, Verb.AUDIT.value, "re-verify lock, policy and cache; reports for CI (exit 1 on any finding)",
        epilog=_AUDIT_EXAMPLES,
    )  # fmt: skip
    sp.add_argument("--offline", action="store_true", help="do not re-resolve refs over the network")
    sp.add_argument(
        "--rerun", action="store_true",
        help="also re-run every entrypoint whose output hub.lock pins in the sandbox, with its recorded "
        "arguments and example inputs, and report output-mismatch when it now returns something else "
        "(drift of behaviour, e.g. a time-bomb hubconf); uses only the artifacts the lock pins for it "
        "(with --offline: only verified cached ones)",
    )  # fmt: skip
    sp.add_argument("--format", default="text", choices=["text", "json", "sarif", "cyclonedx"])
    sp.add_argument("--output", metavar="FILE")
    sp.add_argument("--exit-zero", action="store_true", help="write the report and exit 0 whatever it found")
    common(sp)

    sp = sub.add_parser(Verb.SCAN.value, help="static scan of checkpoint files (pickle, zip, safetensors)")
    sp.add_argument("files", nargs="+", metavar="FILE")

    sp = sub.add_parser(Verb.KEYGEN.value, help="write an Ed25519 key pair: PREFIX.key (0600) and PREFIX.pub")
    sp.add_argument("prefix", metavar="OUT_PREFIX")

    sp = sub.add_parser(Verb.SIGN.value, help="sign hub.lock in place")
    sp.add_argument("--lock", help="hub.lock path")
    sp.add_argument("--key", required=True, metavar="PRIVATE_KEY")

    sp = sub.add_parser(
        Verb.CACHE.value,
        help="inspect the cache; export/import air-gapped bundles",
        description="dir: print the cache directory. verify: re-hash every entry. prune: remove stale work "
        "and every entry that fails verification. export BUNDLE: write what hub.lock pins into one file. "
        "import BUNDLE: verify a bundle against hub.lock, then admit it (offline loads then work).",
    )
    sp.add_argument("action", choices=["dir", "verify", "prune", "export", "import"])
    sp.add_argument("bundle", nargs="?", metavar="BUNDLE", help="the bundle file (export and import only)")
    common(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code.

    Guarantees: a ``SecureHubError`` prints ``error[<code>]: <message>`` and
    returns its ``exit_code``; a :class:`UsageError` (misuse detected on
    purpose) prints ``error[usage]`` and returns 2. Anything else is a bug in
    securehub, never the user's mistake: it prints ``internal error (a bug in
    securehub): <type>: <message>; please report`` and returns 1, so it can
    neither read as a usage error nor as a SPEC section 9 code (issue 9: any
    ``ValueError`` used to become ``error[usage]``).
    """
    args = _build_parser().parse_args(argv)
    try:
        return handler_for(Verb(args.command))(args)
    except SecureHubError as err:
        _print_error(err)
        return err.exit_code
    except UsageError as err:  # only misuse the CLI or API detected on purpose, never any ValueError
        print(f"error[usage]: {one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error[interrupted]: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: a bug, reported as one (see the docstring)
        print(
            f"internal error (a bug in securehub): {type(exc).__name__}: {one_line(str(exc))}; please report",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
