"""One SARIF rule per SPEC section 9 error code: what it means, how to fix it, how bad it is.

The table is the single source of what a code-scanning dashboard shows for a
finding: ``shortDescription``/``fullDescription``, ``help`` (text and
markdown: meaning, then what to do), ``helpUri`` (the code's section of
docs/errors.md: under the declared ``Documentation`` URL, else in the source
checkout, else the copy every install ships; see :func:`_docs_errors_uri`)
and ``properties`` (``tags`` containing ``security``, and a numeric
``security-severity``). GitHub files a result as a security alert,
with a severity, only when its rule carries both properties.

Scores follow GitHub's bands (>= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium,
below 4.0 low). Rules are per code, so a code that can be critical (a
re-pointed tag is ``lock-drift``; tampering is ``hash-mismatch``) is scored
critical: SPEC section 10 requires critical drift and tampering >= 9.0.

Unit tests keep the table in step with :data:`securehub.errors.ALL_CODES` and
SPEC section 9, and check that every ``helpUri`` anchor is a heading of
docs/errors.md.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

__all__ = ["DOCS_ERRORS_URI", "INFORMATION_URI", "RULES", "Rule", "anchor", "rule_for"]

_HOMEPAGE_LABELS = frozenset({"homepage", "home", "source", "repository"})
_DOCUMENTATION_LABELS = frozenset({"documentation", "docs"})
#: docs/errors.md of a source checkout (the editable install): ``<repo>/securehub/audit/_formats/_rules.py``.
_CHECKOUT_ERRORS_MD = Path(__file__).resolve().parents[3] / "docs" / "errors.md"
#: The source checkout's README (the editable install).
_CHECKOUT_README = Path(__file__).resolve().parents[3] / "README.md"
#: Where every install puts its copies of docs/errors.md and README.md (pyproject
#: ``[tool.setuptools.data-files]``), relative to the installation's data directory (venv or prefix).
_INSTALLED_DOCS = "share/doc/securehub/"


def _declared_url(labels: frozenset[str]) -> str | None:
    """The first https URL the installed distribution declares under one of ``labels``, or None.

    Read from the package metadata (pyproject ``[project.urls]``), never made up: an invented URL
    would send a code-scanning user to a page nobody controls (issue 12).
    """
    try:
        meta = importlib.metadata.metadata("securehub")
    except importlib.metadata.PackageNotFoundError:
        return None
    entries: list[str] = meta.get_all("Project-URL") or []
    for entry in entries:
        label, _, url = str(entry).partition(",")
        url = url.strip()
        if label.strip().lower() in labels and url.startswith("https://") and url.isprintable() and " " not in url:
            return url
    return None


def _declared_homepage() -> str | None:
    """The declared https homepage, or None."""
    return _declared_url(_HOMEPAGE_LABELS)


def _installed_doc(name: str) -> Path | None:
    """The copy of ``name`` (``errors.md``, ``README.md``) the installed distribution recorded, or None."""
    try:
        files = importlib.metadata.distribution("securehub").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.as_posix().endswith(_INSTALLED_DOCS + name):
            path = Path(str(entry.locate())).resolve()
            return path if path.is_file() else None
    return None


def _information_uri(checkout_readme: Path = _CHECKOUT_README) -> str | None:
    """``toolComponent.informationUri``: the declared homepage, else this installation's own README.

    The README of a source checkout, else the copy a wheel installs beside errors.md, as a
    ``file://`` URI (a page that exists, never a made-up address); None only when neither exists
    (SARIF makes the property optional, so the log then omits it).
    """
    declared = _declared_homepage()
    if declared is not None:
        return declared
    if checkout_readme.is_file():
        return checkout_readme.as_uri()
    installed = _installed_doc("README.md")
    return installed.as_uri() if installed is not None else None


def _docs_errors_uri(checkout_errors_md: Path = _CHECKOUT_ERRORS_MD) -> str | None:
    """Where docs/errors.md is, as an absolute URI (SPEC section 10: every rule has a ``helpUri``).

    1. ``Documentation`` (or ``Docs``) declared by the installed distribution: ``<that URL>/errors.md``
       (the URL is the base of the docs/ directory as published);
    2. otherwise, in a source checkout (the editable install), the ``file://`` URI of its
       docs/errors.md, which exists and is the page the rules' anchors are tested against;
    3. otherwise the ``file://`` URI of the copy the wheel installs under the data directory
       (``share/doc/securehub/errors.md``), the same page;
    4. otherwise (that copy was deleted) None: the rules carry no ``helpUri`` rather than a made-up one.
    """
    declared = _declared_url(_DOCUMENTATION_LABELS)
    if declared is not None:
        return f"{declared.rstrip('/')}/errors.md"
    if checkout_errors_md.is_file():
        return checkout_errors_md.as_uri()
    installed = _installed_doc("errors.md")
    return installed.as_uri() if installed is not None else None


#: The project's declared homepage, else its README (see :func:`_information_uri`).
INFORMATION_URI: str | None = _information_uri()
#: docs/errors.md, where each code is a ``#### `code` `` heading (see :func:`_docs_errors_uri`).
DOCS_ERRORS_URI: str | None = _docs_errors_uri()


@dataclass(frozen=True)
class Rule:
    """What a dashboard shows for one error code."""

    code: str
    title: str
    meaning: str
    fix: str
    security_severity: float

    def to_sarif(self) -> dict[str, Any]:
        """The SARIF ``reportingDescriptor`` (``id`` = the code, stable across releases)."""
        uri = self.help_uri
        where = f"`{self.code}` in docs/errors.md"
        return {
            "id": self.code,
            "name": "".join(part.capitalize() for part in self.code.split("-")),
            "shortDescription": {"text": self.title},
            "fullDescription": {"text": self.meaning},
            "help": {
                "text": f"{self.meaning}\n\nWhat to do: {self.fix}\n\nReference: {uri or where}",
                "markdown": (
                    f"**`{self.code}`**: {self.meaning}\n\n**What to do:** {self.fix}\n\n"
                    + (f"See [{where}]({uri})." if uri else f"See {where}.")
                ),
            },
            **({"helpUri": uri} if uri else {}),
            "defaultConfiguration": {"level": "error"},
            "properties": {
                "tags": ["security", "supply-chain", "securehub"],
                "precision": "very-high",
                # A JSON number, as SPEC section 10 literally requires (numeric properties["security-severity"]).
                # GitHub's code-scanning docs write the value as a string holding the score ("9.5") and map
                # scores to bands (>= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, < 4.0 low). The SPEC form is
                # kept deliberately; tests pin it, so switching to a string is one visible change if needed.
                "security-severity": self.security_severity,
            },
        }

    @property
    def help_uri(self) -> str | None:
        """This code's section of docs/errors.md, or None when no docs location is known."""
        return f"{DOCS_ERRORS_URI}#{anchor(self.code)}" if DOCS_ERRORS_URI else None


def anchor(code: str) -> str:
    """The GitHub heading anchor of ``#### `code` `` (lower case; backticks dropped; codes are ``[a-z-]``)."""
    return code.lower()


def _rule(code: str, title: str, meaning: str, fix: str, score: float) -> tuple[str, Rule]:
    return code, Rule(code, title, meaning, fix, score)


#: Every SPEC section 9 code, including codes raised only outside ``audit``: a
#: dashboard may receive any of them (the rule array is the same in every report).
RULES: MappingProxyType[str, Rule] = MappingProxyType(
    dict(
        sorted(
            [
                _rule(
                    "ref-not-allowed",
                    "A ref is not a branch or tag name the policy allows.",
                    "The ref is a commit id, a pull/merge-request ref or a malformed name, or the policy refuses "
                    "it (a branch under refs.allow: tags, a tag outside refs.tag_pattern).",
                    "Name a tag the policy accepts (`owner/repo:v1.2`) and let hub.lock pin its commit.",
                    7.0,
                ),
                _rule(
                    "ref-ambiguous",
                    "A ref names both a branch and a tag.",
                    "The remote has a branch and a tag with this name, so it is unclear which one is meant.",
                    "Write `heads/<name>` or `tags/<name>` in the spec (`owner/repo:tags/v1.0`).",
                    6.0,
                ),
                _rule(
                    "ref-not-found",
                    "A ref does not exist on the remote.",
                    "The remote advertises neither a branch nor a tag with this name, or no default branch.",
                    "Check the spelling and that the tag was pushed; write the ref explicitly.",
                    4.0,
                ),
                _rule(
                    "repo-not-allowed",
                    "A repository is not allowed by the policy.",
                    "The repo spec is malformed or uses a refused transport, or the policy's repos.allow / "
                    "repos.deny rules refuse it.",
                    "Fix the spec, or ask for the repository to be added to repos.allow in the policy.",
                    7.5,
                ),
                _rule(
                    "not-locked",
                    "A repository or artifact is missing from hub.lock.",
                    "Under lock.mode: required a repo or artifact is not pinned in hub.lock, or an entrypoint "
                    "fetched a URL that is not in its locked artifact list.",
                    "Run `securehub lock SPEC -e ENTRYPOINT`, review the diff and commit hub.lock.",
                    7.0,
                ),
                _rule(
                    "lock-invalid",
                    "hub.lock is missing or malformed.",
                    "hub.lock cannot be trusted as a document (invalid JSON, wrong types, unknown fields), or "
                    "there is no hub.lock where one is needed.",
                    "Create it with `securehub lock SPEC`, or regenerate the broken entry with "
                    "`securehub lock --upgrade SPEC` and review the diff.",
                    6.5,
                ),
                _rule(
                    "lock-drift",
                    "A locked ref or remote no longer matches hub.lock.",
                    "A branch moved, a tag was re-pointed or deleted (critical: a supply-chain red flag), a spec "
                    "is missing from the lock, or the spec now resolves to another remote than the one pinned.",
                    "For a moved branch, `securehub lock --upgrade SPEC` if the new commit is wanted. For a "
                    "re-pointed tag, find out who moved it before upgrading; loads keep using the pinned commit.",
                    9.1,
                ),
                _rule(
                    "hash-mismatch",
                    "Content differs from the digest pinned in hub.lock.",
                    "A repository tree, artifact or cached result does not have the digest or size hub.lock "
                    "pins: the upstream content changed or the cache was tampered with. Nothing of it was used.",
                    "If the upstream change is legitimate, re-lock with `securehub lock --upgrade` and review the "
                    "diff; otherwise find out how the cache was modified (`securehub cache verify`).",
                    9.5,
                ),
                _rule(
                    "output-mismatch",
                    "A pinned entrypoint's output differs from hub.lock.",
                    "The state, config or program digest of a pinned entrypoint's output differs from the one "
                    "hub.lock records for that argument set; nothing of it was cached or rebuilt.",
                    "If the change is intended, re-pin with `securehub lock SPEC -e EP --upgrade` and review "
                    "the diff; otherwise treat the repository or its artifacts as tampered with.",
                    9.3,
                ),
                _rule(
                    "artifact-not-allowed",
                    "An artifact URL or host is not allowed.",
                    "The artifact URL is not https:// (plain http:// only for loopback hosts), carries "
                    "credentials, or its host is not in the policy's artifacts.hosts.",
                    "Use an https URL on an allowed host or mirror, or ask for the host to be added to "
                    "artifacts.hosts.",
                    8.0,
                ),
                _rule(
                    "unsafe-pickle",
                    "A pickle checkpoint failed the static scan.",
                    "The checkpoint references globals or uses opcodes that could run code when unpickled.",
                    "Do not load the file; ask the publisher for a safetensors version (`securehub scan FILE` "
                    "lists every finding).",
                    9.0,
                ),
                _rule(
                    "format-not-allowed",
                    "An artifact format is not allowed by the policy.",
                    "The checkpoint's format, detected from its content, is not in artifacts.formats, or it is "
                    "not a well-formed checkpoint.",
                    "Check the URL points at the checkpoint; use a format the policy allows.",
                    7.0,
                ),
                _rule(
                    "archive-unsafe",
                    "A repository tree is unsafe to extract.",
                    "The tree holds absolute or `..` paths, .git-like names, escaping symlinks, special files, "
                    "name collisions, or exceeds the policy's size limits.",
                    "Do not use the repository unless it is yours and you fix the tree.",
                    8.5,
                ),
                _rule(
                    "signature-invalid",
                    "hub.lock is unsigned or not signed by a trusted key.",
                    "The policy lists signatures.trusted_keys and hub.lock is unsigned, signed by another key, or "
                    "its content changed after signing.",
                    "Review the lock, then `securehub sign --key PRIVATE.key` with a trusted key.",
                    9.1,
                ),
                _rule(
                    "policy-invalid",
                    "The policy file is invalid.",
                    "The policy has YAML errors, unknown keys, wrong types or out-of-range values (exit code 2).",
                    "Fix the key the message names; see docs/policy.md.",
                    5.0,
                ),
                _rule(
                    "sandbox-violation",
                    "Code in the sandbox attempted a forbidden action.",
                    "The repository's code tried something the sandbox forbids (network, reading secrets, "
                    "unsafe torch.load, fork, ...).",
                    "Treat the repository as hostile; do not relax the policy without reading its code.",
                    9.0,
                ),
                _rule(
                    "sandbox-timeout",
                    "The sandbox exceeded its time limit.",
                    "The sandboxed child ran past sandbox.timeout_s and was killed.",
                    "Raise sandbox.timeout_s if the entrypoint legitimately needs longer.",
                    5.0,
                ),
                _rule(
                    "sandbox-resource",
                    "The sandbox exceeded a resource limit.",
                    "The child hit a CPU, memory or output limit, or was killed from outside.",
                    "Raise the limit in the policy if the model legitimately needs it.",
                    5.0,
                ),
                _rule(
                    "sandbox-unavailable",
                    "A required isolation mechanism is unavailable.",
                    "Under sandbox.isolation: require, a mechanism the configuration needs (netns, landlock, "
                    "seccomp, ...) is not available.",
                    "Run on a kernel with user namespaces, Landlock and seccomp, or knowingly use a best-effort "
                    "policy.",
                    6.0,
                ),
                _rule(
                    "sandbox-protocol",
                    "The sandbox child broke the channel protocol.",
                    "The child's answer was malformed or claimed something a child may not report.",
                    "Treat the repository as broken or hostile.",
                    8.0,
                ),
                _rule(
                    "reconstruct-refused",
                    "A model could not be reconstructed safely.",
                    "The model could not be rebuilt under the policy's strategies (untrusted class, no example "
                    "inputs for export, not a single nn.Module).",
                    "Pass example inputs or record them with "
                    "`securehub lock SPEC -e ENTRYPOINT --example-input auto`; allow the source strategy only for "
                    "code you trust.",
                    7.0,
                ),
                _rule(
                    "reconstruct-mismatch",
                    "A state dict does not match the reconstructed model.",
                    "The state returned by the child does not fit the module its config describes.",
                    "Treat the repository as broken or hostile.",
                    7.0,
                ),
                _rule(
                    "network",
                    "A remote could not be reached.",
                    "A git or HTTP request failed (unreachable host, error status, timeout).",
                    "Check the URL, your access rights and the network, then run the audit again.",
                    3.0,
                ),
                _rule(
                    "offline",
                    "Network access was needed in offline mode.",
                    "SECUREHUB_OFFLINE is set and something is not in the cache.",
                    "Populate the cache while online, or import a bundle with `securehub cache import`.",
                    2.0,
                ),
                _rule(
                    "dependency-missing",
                    "An entrypoint dependency is missing.",
                    "hubconf.py's dependencies or imports name a package that is not installed.",
                    "Install the package yourself after deciding you trust it; securehub never installs anything.",
                    3.0,
                ),
                _rule(
                    "entrypoint-not-found",
                    "The repository does not define the entrypoint.",
                    "The repository has no hubconf.py, or it defines no callable with that name.",
                    "Use one of the entrypoints the message lists (`securehub list SPEC`).",
                    3.0,
                ),
                _rule(
                    "entrypoint-error",
                    "The entrypoint raised an error.",
                    "Importing hubconf.py or calling the entrypoint raised an exception.",
                    "Check the entrypoint's arguments; `securehub help SPEC ENTRYPOINT` shows its docstring.",
                    4.0,
                ),
            ]
        )
    )
)


def rule_for(code: str) -> Rule:
    """The rule for ``code``; a code outside the table (never expected) gets a generic, still-valid rule."""
    known = RULES.get(code)
    if known is not None:
        return known
    return Rule(code, f"securehub finding {code}.", f"securehub reported {code}.", "See docs/errors.md.", 5.0)
