"""``securehub audit``: re-verify lock, policy and cache, and describe the result (SPEC section 10).

The audit is read-only with respect to trusted state: it never writes
``hub.lock`` and never repairs the cache (it only takes the cache's file locks
while re-hashing); without ``rerun`` it adds nothing to the cache. With
``rerun`` (and not offline) an uncached pinned tree or artifact is fetched and
verified against the lock exactly as a load would, and nothing else is added
(no result-cache entry). It appends exactly one audit-log record
(action ``"audit"``). Steps, each producing :class:`Finding` values rather
than stopping the audit:

1. the policy is loaded; a :class:`~securehub.errors.PolicyInvalid`
   propagates (configuration error, exit 2);
2. the lock is parsed and its signature checked against the policy's trusted
   keys: ``lock-invalid`` / ``signature-invalid`` findings (after a bad
   signature the lock is still parsed, unverified, so the rest is reported);
3. each locked repo is checked against the policy (``repo-not-allowed``,
   ``ref-not-allowed``, ``lock-drift`` for a remote that no longer matches its
   spec) and its cached tree re-hashed (``hash-mismatch``, critical);
4. each locked artifact is checked against the policy's hosts and the
   http-only-to-loopback rule (``artifact-not-allowed``), its locked sha256
   against the hash prefix its file name carries (``hash-mismatch``,
   critical: every load of it would be refused), and its cached blob
   re-hashed and sized (``hash-mismatch``, critical);
5. with ``rerun``, each locked entrypoint whose recorded argument set has a
   pinned output runs again in the sandbox (:mod:`securehub.audit.rerun`):
   ``output-mismatch`` (critical) when its output differs from the lock, the
   run's own code when it fails or cannot run (offline: ``offline``). Repos
   already failing the steps above, and every repo of a lock whose signature
   is invalid, are not re-run: their code is not run on the strength of a
   lock or tree that failed verification (the finding already fails the audit);
6. unless offline, every ref is re-resolved (``lock-drift``: critical for a
   re-pointed tag; ``network`` when the remote cannot be asked).

Every finding message is sanitised with :func:`securehub._util.text.one_line`;
other strings in the report (repo keys, refs, URLs) come from the lock and are
sanitised by the formatters that print them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from securehub._util.cli_args import arg_options
from securehub._util.digest import args_sha256
from securehub._util.hubdir import hub_dir
from securehub._util.regular import read_regular
from securehub._util.text import one_line
from securehub.audit._formats import formatter_for, write_atomic
from securehub.audit.log import AuditRecord, append, check_writable, outcome_for_code
from securehub.audit.model import (
    REPORT_SCHEMA,
    ArtifactAudit,
    AuditReport,
    Finding,
    RepoAudit,
    ReportFormat,
    Severity,
)
from securehub.config.lockfile import MAX_LOCK_BYTES, ArtifactEntry, Lockfile, RepoEntry
from securehub.config.policy import Policy, SignaturesPolicy
from securehub.errors import HashMismatch, LockInvalid, SecureHubError, SignatureInvalid
from securehub.pipeline.context import Context, LockArg, PolicyArg, load_context, lock_location, policy_ref
from securehub.pipeline.lock import check_lock
from securehub.resolve.git import is_offline
from securehub.resolve.spec import is_loopback_host, parse_spec
from securehub.store.cache import Cache
from securehub.trust.tree import check_remote_matches, check_repo_allowed
from securehub.verify.hashprefix import expected_prefix

__all__ = [
    "REPORT_SCHEMA",
    "ArtifactAudit",
    "AuditReport",
    "Finding",
    "ReportFormat",
    "RepoAudit",
    "Severity",
    "render_report",
    "run_audit",
    "write_report",
]

# --------------------------------------------------------------------------- finding lines in hub.lock


def _key_line(text: str, key: str, *, start: int = 0) -> int | None:
    """The 1-based line where ``key`` appears as a JSON object key in ``text`` (from ``start``)."""
    for form in dict.fromkeys((json.dumps(key, ensure_ascii=False), json.dumps(key))):
        # A key at the start of a line is unambiguous (a JSON string never holds a raw newline);
        # the second pattern covers a lock written on one line.
        for pattern in (rf"(?m)^[ \t]*{re.escape(form)}[ \t]*:", rf"{re.escape(form)}\s*:"):
            match = re.compile(pattern).search(text, start)
            if match:
                return text.count("\n", 0, match.start()) + 1
    return None


@dataclass(frozen=True)
class _LockText:
    """The lock's text, for locating keys. Empty when there is no file."""

    text: str

    def repo_line(self, key: str) -> int | None:
        return _key_line(self.text, key)

    def artifact_line(self, url: str) -> int | None:
        # URLs appear as keys only in the top-level "artifacts" map (entrypoints list them as values).
        top = re.search(r'(?m)^  "artifacts"[ \t]*:', self.text)
        return _key_line(self.text, url, start=top.start() if top else 0)

    def signature_line(self) -> int | None:
        return _key_line(self.text, "signature")


def _problem_line(message: str, lines: _LockText) -> int | None:
    """The line a lock parser message names (``... line N column M: ...``), if it lies within the lock text.

    Only a location hint for reports (a SARIF region): the parser decided validity already.
    """
    match = re.search(r" line (\d+) column \d+[:;]", message)
    if match is None or not lines.text:
        return None
    line = int(match.group(1))
    return line if 1 <= line <= lines.text.count("\n") + 1 else None


def _read_lock_text(path: Path | None) -> _LockText:
    if path is None:
        return _LockText("")
    try:
        # Bounded, regular files only: a hub.lock symlink to /dev/zero or a FIFO is Lockfile.load's to refuse.
        return _LockText(read_regular(path, MAX_LOCK_BYTES)[:MAX_LOCK_BYTES].decode("utf-8", "replace"))
    except OSError:
        return _LockText("")  # Lockfile.load reports the unreadable file as lock-invalid


# --------------------------------------------------------------------------- the audit


@dataclass
class _Collector:
    """Accumulates findings (mutable while the audit runs; frozen into the report)."""

    lines: _LockText
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        code: str,
        severity: Severity,
        message: str,
        *,
        repo_key: str | None = None,
        artifact_url: str | None = None,
        lock_line: int | None = None,
    ) -> None:
        if lock_line is None and repo_key is not None:
            lock_line = self.lines.repo_line(repo_key)
        if lock_line is None and artifact_url is not None:
            lock_line = self.lines.artifact_line(artifact_url)
        self.findings.append(Finding(code, severity, one_line(message), repo_key, artifact_url, lock_line))

    def has(self, code: str, repo_key: str) -> bool:
        return any(f.code == code and f.repo_key == repo_key for f in self.findings)


def run_audit(
    *, policy: PolicyArg = None, lock: LockArg = None, offline: bool = False, rerun: bool = False
) -> AuditReport:
    """Audit ``lock`` against ``policy`` and the cache; see the module docstring for the steps.

    Guarantees: never writes the lock or cache contents; every problem found
    is a :class:`Finding` (the report is complete even when the lock is
    unsigned, badly signed, or unparseable); ``offline`` (or env
    ``SECUREHUB_OFFLINE=1``) means no network access at all; ``rerun``
    re-runs pinned entrypoints in the sandbox (step 5). Raises
    :class:`~securehub.errors.PolicyInvalid` for a bad policy and
    :class:`~securehub.audit.log.AuditLogError` (before anything else) when the audit log cannot be written.
    """
    pol = Policy.load(policy)
    check_writable()
    offline = offline or is_offline()
    path = None if isinstance(lock, Lockfile) else lock_location(lock, for_writing=False)
    collector = _Collector(_read_lock_text(path))
    ctx = _load(pol, lock, path, collector)
    if ctx is None:
        report = AuditReport(
            lock_path=str(path) if path is not None else None,
            policy_name=pol.name,
            policy_sha256=pol.sha256,
            signed_by=None,
            repos=(),
            artifacts=(),
            findings=tuple(collector.findings),
            offline=offline,
        )
    else:
        repos = tuple(_audit_repo(ctx, key, entry, collector) for key, entry in sorted(ctx.lock.repos.items()))
        artifacts = tuple(
            _audit_artifact(ctx, url, entry, collector) for url, entry in sorted(ctx.lock.artifacts.items())
        )
        if rerun:
            _rerun(ctx, repos, collector, offline=offline)
        if not offline:
            for key in sorted(ctx.lock.repos):
                _check_drift(ctx, key, collector)
        report = AuditReport(
            lock_path=str(ctx.lock_path) if ctx.lock_path is not None else None,
            policy_name=pol.name,
            policy_sha256=pol.sha256,
            signed_by=ctx.signed_by,
            repos=repos,
            artifacts=artifacts,
            findings=tuple(collector.findings),
            offline=offline,
            lock_bytes=ctx.lock.to_bytes(),
            rerun=rerun,
        )
    _log(report, pol)
    return report


def _load(pol: Policy, lock: LockArg, path: Path | None, out: _Collector) -> Context | None:
    """The context to audit, or ``None`` when there is no lock to look at (a finding says why)."""
    try:
        ctx = load_context(pol, lock)
    except LockInvalid as err:
        out.add(err.code, "error", err.message, lock_line=_problem_line(err.message, out.lines))
        return None
    except SignatureInvalid as err:
        out.add(err.code, "critical", err.message, lock_line=out.lines.signature_line())
        # Keep auditing the unverified content so the report shows everything else that is wrong;
        # the signature-invalid finding already fails the audit.
        if isinstance(lock, Lockfile):
            unverified = lock
        elif path is None or not path.exists():
            return None
        else:
            try:
                unverified = Lockfile.load(path)
            except LockInvalid as lock_err:  # replaced between the two reads
                out.add(lock_err.code, "error", lock_err.message)
                return None
        return Context(
            policy=pol,
            lock=unverified,
            lock_path=path,
            lock_exists=True,
            signed_by=None,
            cache=Cache(hub_dir()),
        )
    if not ctx.lock_exists:
        out.add(
            "lock-invalid",
            "error",
            "expected a hub.lock to audit, found none (looked at --lock, SECUREHUB_LOCK and ./hub.lock); "
            "create one with `securehub lock SPEC`",
        )
        return None
    return ctx


def _audit_repo(ctx: Context, key: str, entry: RepoEntry, out: _Collector) -> RepoAudit:
    policy = ctx.policy
    try:
        spec = parse_spec(key)
    except SecureHubError as err:
        out.add(err.code, "error", f"{key}: {err.message}", repo_key=key)
    else:
        try:
            check_repo_allowed(spec, policy)
        except SecureHubError as err:
            out.add(err.code, "error", f"{key}: {err.message}", repo_key=key)
        try:
            check_remote_matches(spec, entry)
        except SecureHubError as err:
            out.add(err.code, "error", err.message, repo_key=key)
    if not policy.ref_allowed(entry.ref, entry.ref_type):
        out.add(
            "ref-not-allowed",
            "error",
            f"{key}: hub.lock pins the {entry.ref_type} {entry.ref!r}, which the policy {policy.name!r} does not "
            f"allow (refs.allow: {policy.refs.allow}, tag_pattern: {policy.refs.tag_pattern!r}); "
            "lock a tag that matches the policy",
            repo_key=key,
        )
    _check_outputs_pinned(policy, key, entry, out)
    cached = False
    try:
        cached = ctx.cache.verify_cached_tree(entry.remote, entry.commit, entry.tree_sha256)
    except HashMismatch as err:
        out.add(err.code, "critical", f"{key}: {err.message}", repo_key=key)
    return RepoAudit(
        key=key,
        remote=entry.remote,
        ref=entry.ref,
        ref_type=entry.ref_type,
        commit=entry.commit,
        tree_sha256=entry.tree_sha256,
        cached=cached,
        entrypoints={name: ep.artifacts for name, ep in entry.entrypoints.items()},
    )


def _check_outputs_pinned(policy: Policy, key: str, entry: RepoEntry, out: _Collector) -> None:
    """One ``not-locked`` finding per locked entrypoint whose recorded argument set has no pinned output.

    Output pinning (SPEC section 4): under ``lock.outputs: required`` such a load would be refused,
    so the lock does not satisfy the policy (an error finding). Under ``verify``/``off`` the policy
    allows it (locks written before output pinning stay valid): nothing is reported.
    """
    mode = policy.lock.outputs
    if mode != "required":
        return
    for name, ep in sorted(entry.entrypoints.items()):
        digest = args_sha256((), dict(ep.args or {}))
        if ep.output(digest) is not None:
            continue
        args = " ".join(arg_options(ep.args or {}))
        out.add(
            "not-locked",
            "error",
            f"{key}: entrypoint {name!r} (args_sha256 {digest}) has no pinned output, so a load cannot tell "
            f"whether the pinned code still returns the same weights (lock.outputs: {mode}); pin it with "
            f"`securehub lock {key} -e {name}{' ' + args if args else ''} --upgrade`",
            repo_key=key,
        )


def _artifact_transport_problem(url: str, policy: Policy) -> str | None:
    """Why the policy or the transport rule refuses ``url``, or ``None``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return f"expected an https:// URL with a valid host, found {url!r}"
    if not host:
        return f"expected an https:// URL with a host, found {url!r}"
    scheme = parts.scheme.lower()
    if scheme == "http" and not is_loopback_host(host):
        return (
            f"expected https:// (plain http:// is allowed only for loopback hosts), found {url!r}; "
            "re-lock the artifact from an https URL"
        )
    if scheme not in ("http", "https"):
        return f"expected an https:// URL, found the scheme {scheme!r} in {url!r}"
    if not policy.host_allowed(host):
        return (
            f"the host {host!r} of {url!r} is not in the policy {policy.name!r}'s artifacts.hosts "
            f"{list(policy.artifacts.hosts)}; ask for the host to be added, or use an allowed mirror"
        )
    return None


def _name_prefix_problem(url: str, sha256: str) -> str | None:
    """Why the torch.hub hash prefix in ``url``'s file name contradicts the locked ``sha256``, or ``None``.

    A load of that URL is refused (``hash-mismatch``, before any download: the broker checks the
    name's prefix against the lock), so the lock can never be used as written; the audit says so.
    """
    prefix = expected_prefix(urlsplit(url).path)
    if not prefix or sha256.lower().startswith(prefix):
        return None
    return (
        f"{url}: expected the sha256 hub.lock pins to start with the hash prefix {prefix!r} its file name "
        f"carries (torch.hub's check_hash rule), found {sha256}; every load that fetches it is refused "
        "(hash-mismatch). The lock or the content behind the URL is wrong: check the URL, then re-pin it "
        f"with `securehub lock --url {url} --upgrade`"
    )


def _audit_artifact(ctx: Context, url: str, entry: ArtifactEntry, out: _Collector) -> ArtifactAudit:
    problem = _artifact_transport_problem(url, ctx.policy)
    if problem is not None:
        out.add("artifact-not-allowed", "error", problem, artifact_url=url)
    contradiction = _name_prefix_problem(url, entry.sha256)
    if contradiction is not None:
        out.add("hash-mismatch", "critical", contradiction, artifact_url=url)
    cached = False
    try:
        blob = ctx.cache.verified_artifact(entry.sha256)
    except HashMismatch as err:
        out.add(err.code, "critical", f"{url}: {err.message}", artifact_url=url)
    else:
        if blob is not None:
            size = blob.stat().st_size
            if size != entry.size:
                out.add(
                    "hash-mismatch",
                    "critical",
                    f"{url}: cached artifact {blob}: expected size {entry.size} bytes (from hub.lock), found "
                    f"{size}; the lock's size and digest disagree: check hub.lock and re-lock the artifact",
                    artifact_url=url,
                )
            else:
                cached = True
    return ArtifactAudit(url=url, sha256=entry.sha256, size=entry.size, cached=cached)


def _rerun(ctx: Context, repos: tuple[RepoAudit, ...], out: _Collector, *, offline: bool) -> None:
    """Step 5: re-run pinned entrypoints of the repos that passed every check so far."""
    from securehub.audit.rerun import rerun_repo  # noqa: PLC0415 - lazy: torch and the sandbox, only for --rerun

    if any(f.code == "signature-invalid" for f in out.findings):
        return  # the lock is unverified: its pins must not decide what code runs (finding already made)
    for repo in repos:
        if any(f.repo_key == repo.key and f.code != "not-locked" for f in out.findings):
            # A tree, policy or remote problem already fails the audit; don't run code it refused.
            # (not-locked only says some other entrypoint has no pin: the pinned ones still run.)
            continue
        entry = ctx.lock.repos[repo.key]
        for problem in rerun_repo(ctx, repo.key, entry, offline=offline, tree_cached=repo.cached):
            out.add(problem.code, problem.severity, problem.message, repo_key=repo.key)


def _check_drift(ctx: Context, key: str, out: _Collector) -> None:
    """Re-resolve ``key``'s ref via :func:`securehub.pipeline.lock.check_lock` and record drift."""
    # The signature was already judged (a finding when bad); drift is checked on the content
    # either way, so take the trusted keys out of the policy handed to check_lock.
    policy = dataclasses.replace(ctx.policy, signatures=SignaturesPolicy())
    try:
        drifts = check_lock([key], policy=policy, lock=ctx.lock)
    except SecureHubError as err:
        if not out.has(err.code, key):
            out.add(err.code, "error", f"{key}: {err.message}", repo_key=key)
        return
    for drift in drifts:
        # Cached trees were re-verified above (offline too) and policy refusals are already findings;
        # what remains is new, e.g. a forged tree digest caught by fetching an uncached tree.
        if out.has(drift.code, key):
            continue
        out.add(drift.code, "critical" if drift.critical else "error", drift.message, repo_key=key)


def _log(report: AuditReport, policy: Policy) -> None:
    worst = _worst(report.findings)
    append(
        AuditRecord(
            action="audit",
            outcome=outcome_for_code(worst.code if worst else None),
            policy=policy_ref(policy),
            code=worst.code if worst else None,
        )
    )


_RANK: Mapping[str, int] = {"critical": 0, "error": 1, "warning": 2}


def _worst(findings: tuple[Finding, ...]) -> Finding | None:
    return min(findings, key=lambda f: _RANK[f.severity], default=None)


# --------------------------------------------------------------------------- output


def render_report(report: AuditReport, fmt: ReportFormat | str) -> str:
    """``report`` in format ``fmt`` (a :class:`ReportFormat` or its value); ends with a newline."""
    return formatter_for(ReportFormat(fmt)).render(report)


def write_report(report: AuditReport, fmt: ReportFormat | str, output: Path | None) -> None:
    """Print the rendered report to stdout, or write it atomically to ``output`` (stdout untouched)."""
    text = render_report(report, fmt)
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        write_atomic(output, text.encode("utf-8"))
