"""The human-readable audit report: a summary, then one ``error[<code>]: ...`` line per finding.

Every string that came from the lock, a remote or the cache passes through
:func:`securehub._util.text.one_line`, so escape sequences in a repo key, ref or
URL never reach the terminal (threats.md: terminal escape injection).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING

from securehub._util.text import one_line
from securehub.audit._formats.base import Formatter

if TYPE_CHECKING:
    from securehub.audit.model import AuditReport, Finding

__all__ = ["TextFormatter", "finding_line"]


def _s(text: str | None) -> str:
    return one_line(text, limit=500) if text is not None else "-"


def finding_line(finding: Finding, lock_name: str = "hub.lock") -> str:
    """``error[<code>]: <message>`` (``warning[...]`` for warnings); critical messages start with ``critical:``.

    ``lock_name``: how the location suffix names the lock file (``--lock bad.lock`` is not ``hub.lock``)."""
    label = "warning" if finding.severity == "warning" else "error"
    message = one_line(finding.message)
    if finding.severity == "critical" and not message.startswith("critical:"):
        message = f"critical: {message}"
    where = f" ({one_line(lock_name)} line {finding.lock_line})" if finding.lock_line is not None else ""
    return f"{label}[{one_line(finding.code)}]: {message}{where}"


class TextFormatter(Formatter):
    """Plain text for terminals and CI logs."""

    def render(self, report: AuditReport) -> str:
        lines: list[str] = []
        signed = f"signed by {_s(report.signed_by)}" if report.signed_by else "signature not verified"
        lines.append(f"lock:      {_s(report.lock_path) if report.lock_path else '(none)'} ({signed})")
        lines.append(f"policy:    {_s(report.policy_name)} (sha256 {report.policy_sha256})")
        lines.append(
            "refs:      not re-resolved (offline)" if report.offline else "refs:      re-resolved on their remotes"
        )
        lines.append(
            "outputs:   pinned entrypoints re-run in the sandbox and compared with hub.lock"
            if report.rerun
            else "outputs:   not re-run (use --rerun to check pinned outputs)"
        )
        lines.append(f"repos:     {len(report.repos)}")
        for repo in report.repos:
            state = "cached, verified" if repo.cached else "not cached"
            lines.append(
                f"  {_s(repo.key)}: {_s(repo.ref_type)} {_s(repo.ref)} @ {_s(repo.commit)}, "
                f"tree {_s(repo.tree_sha256)} ({state})"
            )
            for name, urls in repo.entrypoints.items():
                lines.append(f"    entrypoint {_s(name)}: {len(urls)} artifact(s)")
        lines.append(f"artifacts: {len(report.artifacts)}")
        for art in report.artifacts:
            state = "cached, verified" if art.cached else "not cached"
            lines.append(f"  {_s(art.url)}: sha256 {_s(art.sha256)}, {art.size} bytes ({state})")
        name = PurePath(report.lock_path).name if report.lock_path else "hub.lock"
        lines.extend(finding_line(f, name) for f in report.findings)
        if report.findings:
            critical = sum(1 for f in report.findings if f.severity == "critical")
            lines.append(f"audit failed: {len(report.findings)} finding(s), {critical} critical")
        else:
            lines.append("audit passed: no findings")
        return "\n".join(lines) + "\n"
