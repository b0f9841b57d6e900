"""Resolving a :class:`RepoSpec`'s ref to a commit (SPEC section 3).

The steps, each with its own error:

1. Syntax (:func:`check_ref_syntax`) and what the policy can decide from the name alone
   (missing ref under ``tags``, a ``heads/`` or ``tags/`` prefix the policy forbids) -
   before any network access.
2. ``ls-remote``: only the remote's own ``refs/heads/*`` and ``refs/tags/*`` are ever
   considered, so fork commits (``refs/pull/*``) and raw SHAs can never be reached by name.
3. Exact match: ``refs/heads/<ref>`` or ``refs/tags/<ref>``; both -> ``ref-ambiguous`` unless
   prefixed; neither -> ``ref-not-allowed`` for a commit-id-looking name, else ``ref-not-found``.
4. Policy on the outcome: ``tags`` refuses branches, ``branches`` refuses tags, tags must match
   ``tag_pattern``.

The result names a commit the remote advertised *now*; comparing it with hub.lock (drift) is
the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from securehub.errors import RefAmbiguous, RefNotAllowed, RefNotFound
from securehub.resolve.git import RemoteRefs, ls_remote
from securehub.resolve.refs import check_ref_syntax, looks_like_commit_id
from securehub.resolve.spec import RepoSpec
from securehub.trust.tree import check_resolved_ref_allowed

__all__ = ["RefType", "RefsAllow", "ResolvedRef", "resolve"]

RefType = Literal["branch", "tag"]
RefsAllow = Literal["tags", "branches", "any"]
_ALLOWS = ("tags", "branches", "any")


@dataclass(frozen=True)
class ResolvedRef:
    """A ref the remote advertises, resolved to a commit (annotated tags peeled).

    ``ref`` is the bare branch or tag name (no ``heads/``/``tags/`` prefix; the default
    branch's name when the spec had no ref).
    """

    spec: RepoSpec
    ref: str
    ref_type: RefType
    commit: str
    #: A ``heads/``/``tags/``-prefixed spec resolved, and the remote also advertises the *other* kind with
    #: this name (a branch named like a locked tag): the bare name would now be ``ref-ambiguous``.
    shadowed_by: RefType | None = None


def resolve(
    spec: RepoSpec,
    *,
    refs_policy_allow: str = "any",
    tag_pattern: str = "*",
    ls_remote: Callable[[str], RemoteRefs] = ls_remote,
) -> ResolvedRef:
    """Resolve ``spec.ref`` on ``spec.remote`` under the ref policy (``refs.allow``, ``refs.tag_pattern``).

    Raises ``RefNotAllowed``, ``RefAmbiguous``, ``RefNotFound``, or the transport errors of
    ``ls_remote`` (``NetworkError``, ``OfflineError``). ``ValueError`` for a local spec or an
    unknown ``refs_policy_allow``.
    """
    if spec.kind == "local":
        raise ValueError("local specs have no refs to resolve; hash the directory instead")
    if refs_policy_allow not in _ALLOWS:
        raise ValueError(f"refs_policy_allow must be one of {_ALLOWS}, not {refs_policy_allow!r}")

    # Step 1: everything decidable without the network.
    namespace = None
    name: str | None = None
    if spec.ref is None:
        if refs_policy_allow == "tags":
            raise RefNotAllowed(
                f"{spec.key!r} has no ref: the policy allows tags only and refuses a missing ref "
                f"(which would follow the default branch). Write '{spec.key}:<tag>'"
                f"{'' if spec.kind == 'github' else ' (or @<tag> for git+ URLs)'}."
            )
    else:
        name, namespace = check_ref_syntax(spec.ref)
        if namespace == "heads":
            check_resolved_ref_allowed(spec.key, name, "branch", refs_policy_allow, tag_pattern)

    # Step 2: what the remote advertises (heads and tags only).
    refs = ls_remote(spec.remote)

    # Step 3: exact match.
    if name is None:
        ref_type: RefType = "branch"
        if refs.head_symref is None or refs.head_symref not in refs.heads:
            raise RefNotFound(
                f"{spec.key!r} has no ref and the remote {spec.remote!r} does not advertise a default "
                "branch (HEAD): expected HEAD -> refs/heads/<name>. Write the branch or tag explicitly."
            )
        name, commit = refs.head_symref, refs.heads[refs.head_symref]
    else:
        ref_type, commit = _match(spec, name, namespace, refs)

    # Step 4: policy on the outcome.
    check_resolved_ref_allowed(spec.key, name, ref_type, refs_policy_allow, tag_pattern)
    other = refs.tags if ref_type == "branch" else refs.heads
    shadowed_by: RefType | None = None
    if namespace is not None and name in other:
        shadowed_by = "tag" if ref_type == "branch" else "branch"
    return ResolvedRef(spec=spec, ref=name, ref_type=ref_type, commit=commit, shadowed_by=shadowed_by)


def _match(spec: RepoSpec, name: str, namespace: str | None, refs: RemoteRefs) -> tuple[RefType, str]:
    in_heads = name in refs.heads
    in_tags = name in refs.tags
    if namespace == "heads" and in_heads:
        return "branch", refs.heads[name]
    if namespace == "tags" and in_tags:
        return "tag", refs.tags[name]
    if namespace is None:
        if in_heads and in_tags:
            raise RefAmbiguous(
                f"ref {name!r} of {spec.key!r} is both a branch and a tag: expected exactly one. "
                f"Write 'heads/{name}' or 'tags/{name}' to choose.",
                expected="exactly one of a branch or a tag with that name",
                found=f"both refs/heads/{name} and refs/tags/{name}",
                remedy=f"write 'heads/{name}' or 'tags/{name}'",
            )
        if in_heads:
            return "branch", refs.heads[name]
        if in_tags:
            return "tag", refs.tags[name]
    if looks_like_commit_id(name):
        raise RefNotAllowed(
            f"ref {name!r} of {spec.key!r} looks like a commit id and is no branch or tag of the remote: "
            "expected a branch or tag name; commit ids are refused (a fork's commit can be served "
            "through the parent's URL). Use a tag and let hub.lock pin the commit.",
            expected="a branch or tag name",
            found=f"{name!r}, which looks like a commit id",
            remedy="use a tag and let hub.lock pin the commit",
        )
    where = {"heads": "branch", "tags": "tag"}.get(namespace or "", "branch or tag")
    raise RefNotFound(
        f"{where} {name!r} not found on {spec.remote!r}: expected refs/heads/{name} or refs/tags/{name} "
        "to be advertised. Check the spelling, or that it was pushed.",
        expected=f"refs/heads/{name} or refs/tags/{name} advertised by {spec.remote}",
        found="neither",
        remedy="check the spelling, or that it was pushed",
    )
