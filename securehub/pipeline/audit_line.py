"""One audit line per operation: what it decided, written whatever happens (SPEC section 11).

An operation fills an :class:`Audit` as it goes (tree, policy, broker,
isolation, strategy) and runs inside :func:`audited`, which appends exactly
one line when the operation ends: ``ok``, ``refused`` or ``error``, always with
a code on failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from securehub.audit.log import AuditRecord, Outcome, append, check_writable, outcome_for_code
from securehub.config.policy import Policy
from securehub.errors import SecureHubError
from securehub.pipeline.broker import ArtifactBroker, Fetched
from securehub.pipeline.context import policy_ref
from securehub.pipeline.tree import VerifiedTree
from securehub.sandbox.config import IsolationReport

__all__ = ["Audit", "audited", "torch_hub_overrides"]


@dataclass
class Audit:
    """Collects what one operation decided; written as one line when the operation ends."""

    action: str
    spec: str | None = None
    entrypoint: str | None = None
    args_digest: str | None = None
    tree: VerifiedTree | None = None
    policy: Policy | None = None
    broker: ArtifactBroker | None = None
    isolation: IsolationReport | None = None
    strategy: str | None = None
    #: On a result-cache hit no broker runs: the artifacts the cached result was built from.
    cached_artifacts: tuple[tuple[str, str], ...] = ()
    #: torch.hub parameters the caller passed that securehub decides differently (SPEC section 2).
    overrides: tuple[str, ...] = ()

    def record(self, code: str | None, *, outcome: Outcome | None = None) -> AuditRecord:
        """The line for this operation ending with ``code`` (``None``: it succeeded)."""
        fetched: list[Fetched] = self.broker.fetched if self.broker else []
        return AuditRecord(
            action=self.action,
            outcome=outcome or outcome_for_code(code),
            spec=self.spec,
            ref=self.tree.ref if self.tree else None,
            commit=self.tree.commit if self.tree else None,
            tree_sha256=self.tree.tree_sha256 if self.tree else None,
            entrypoint=self.entrypoint,
            args_sha256=self.args_digest,
            artifacts=[{"url": f.url, "sha256": f.sha256} for f in fetched]
            + [{"url": url, "sha256": digest} for url, digest in self.cached_artifacts],
            policy=self._policy_field(),
            isolation=self.isolation.to_dict() if self.isolation else None,
            strategy=self.strategy,
            code=code,
        )

    def _policy_field(self) -> dict[str, Any] | None:
        """``{name, sha256}``, plus ``overrides`` only when a torch.hub parameter was decided differently.

        SPEC section 11 fixes the line's keys, and the policy *is* the decision
        that replaced the caller's ``trust_repo``/``skip_validation``, so the note
        lives inside the ``policy`` field rather than in a new top-level key.
        """
        if self.policy is None:
            return {"overrides": list(self.overrides)} if self.overrides else None
        ref: dict[str, Any] = dict(policy_ref(self.policy))
        if self.overrides:
            ref["overrides"] = list(self.overrides)
        return ref


#: Audit codes for failures that are not a securehub decision (no SPEC section 9 code exists for them).
_INTERRUPTED = "interrupted"
_USAGE = "usage"
_INTERNAL = "internal-error"


def _code_for(exc: BaseException) -> str:
    """A non-null audit code for an exception that is not a ``SecureHubError``."""
    if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
        return _INTERRUPTED
    if isinstance(exc, TypeError | ValueError):
        return _USAGE  # programmer misuse (SPEC section 2), e.g. an argument that is not a JSON value
    return _INTERNAL


@contextmanager
def audited(audit: Audit) -> Iterator[Audit]:
    """Append one audit line whatever happens: ``ok``, ``refused`` or ``error``, always with a code on failure.

    The log must be writable before the action starts (:func:`check_writable`): a load whose line could not
    be appended would otherwise have run, cached and recorded its result unaudited."""
    check_writable()
    try:
        yield audit
    except SecureHubError as err:
        append(audit.record(err.code))
        raise
    except BaseException as exc:
        # Not a securehub decision (misuse, an interrupt, a bug): still one line, outcome error, and a
        # code saying which, so a regulated pipeline can tell a Ctrl-C from a refusal.
        append(audit.record(_code_for(exc), outcome="error"))
        raise
    append(audit.record(None))


def torch_hub_overrides(*, trust_repo: object = None, skip_validation: bool = False) -> tuple[str, ...]:
    """What the audit line says about torch.hub parameters securehub accepts but decides itself.

    ``trust_repo``: torch.hub asks the user (or a trusted-owner list); here the
    policy (repos.allow/deny, refs, lock) is the trust decision, whatever was
    passed. ``skip_validation``: torch.hub then skips its fork check; securehub
    always checks that the ref is the named repo's own branch or tag.
    """
    out: list[str] = []
    if trust_repo is not None:
        out.append(f"trust_repo={trust_repo!r} ignored: the policy is the trust decision")
    if skip_validation:
        out.append("skip_validation=True ignored: refs are always validated against the repo's own branches and tags")
    return tuple(out)
