"""CycloneDX 1.6 JSON BOM of what hub.lock pins (an ML-BOM), for Dependency-Track and friends.

Components, in a fixed order:

* one ``library`` component per pinned *code*: locked specs that pin the same
  remote at the same commit (``alice/model:v1`` and ``alice/model:v1.0`` on
  one commit) are one component, listing every spec, because they are the
  same bytes. Its ``purl`` is ``pkg:github/owner/repo@commit`` only when the
  remote is on ``github.com``; any other host gets
  ``pkg:generic/<name>@commit?vcs_url=git+<remote>@<commit>``, so the purl
  always says where the code came from. The purl is also the ``bom-ref``;
* one ``machine-learning-model`` component per locked entrypoint (SPEC
  section 10), name ``<repo key>#<entrypoint>``, version = commit, with its
  pinned outputs (hub.lock ``outputs[args_sha256]`` state/config/program
  digests) as ``securehub:output:*`` properties. It carries no ``hashes``: an
  entrypoint may fetch several weight files and may pin several argument
  sets, and CycloneDX allows one hash per algorithm per component;
* one ``file`` component per locked artifact (one per weight file): its
  single SHA-256, the URL as ``distribution`` reference and in a
  ``pkg:generic`` purl (``download_url`` and ``checksum`` qualifiers).

``dependencies`` link each model to its code and its weight files. Every
``bom-ref`` and every purl is unique within the document. The BOM carries no
timestamp and its ``serialNumber`` is a UUIDv5 of the lock's canonical bytes
and the policy digest, so the same lock and policy always give byte-identical
BOMs. Audit findings are not part of the BOM (use SARIF for those).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from securehub._util.version import __version__
from securehub.audit._formats.base import Formatter

if TYPE_CHECKING:
    from securehub.audit.model import ArtifactAudit, AuditReport, RepoAudit

__all__ = ["BOM_NAMESPACE", "CycloneDXFormatter", "pinned_outputs", "purl_for_remote", "serial_number"]

#: Namespace for the deterministic serial numbers (uuid5 of "securehub" in the URL namespace).
BOM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://securehub/cyclonedx-bom")

_HEX64 = re.compile(r"[0-9a-f]{64}")
_OUTPUT_FIELDS = ("state_sha256", "config_sha256", "program_sha256")

#: entrypoint -> args_sha256 -> {field: digest or None}
Outputs = Mapping[str, Mapping[str, Mapping[str, str | None]]]


def serial_number(lock_bytes: bytes, policy_sha256: str) -> str:
    """``urn:uuid:<uuid5>`` of the lock's canonical bytes and the policy digest."""
    name = hashlib.sha256(lock_bytes).hexdigest() + ":" + policy_sha256
    return uuid.uuid5(BOM_NAMESPACE, name).urn


# --------------------------------------------------------------------------- purls


def _pct(text: str) -> str:
    """Percent-encode a purl name segment or version, in the purl spec's canonical form (``:`` kept)."""
    return quote(text, safe=":")


def _qual(text: str) -> str:
    """Percent-encode a purl qualifier value, canonical form (``:`` and ``/`` kept)."""
    return quote(text, safe=":/")


def _repo_path(remote: str) -> tuple[str, str]:
    """(lower-cased host, path without slashes around it and without a ``.git`` suffix)."""
    parts = urlsplit(remote)
    path = parts.path.strip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return (parts.hostname or "").lower(), path


def purl_for_remote(remote: str, commit: str) -> str:
    """The purl of ``remote`` at ``commit``.

    ``pkg:github/owner/repo@commit`` only for an https remote on ``github.com``
    (where the type's identity holds); for any other remote
    ``pkg:generic/<last path segment>@commit?vcs_url=git+<remote>@<commit>``.
    """
    host, path = _repo_path(remote)
    segments = [s for s in path.split("/") if s]
    if urlsplit(remote).scheme == "https" and host == "github.com" and len(segments) == 2:
        owner, name = (s.lower() for s in segments)
        return f"pkg:github/{_pct(owner)}/{_pct(name)}@{_pct(commit)}"
    name = segments[-1] if segments else (host or "repository")
    return f"pkg:generic/{_pct(name)}@{_pct(commit)}?vcs_url={_qual(f'git+{remote}@{commit}')}"


def _artifact_purl(art: ArtifactAudit) -> str:
    return (
        f"pkg:generic/{_pct(_file_name(art.url))}"
        f"?checksum={_qual('sha256:' + art.sha256)}&download_url={_qual(art.url)}"
    )


def _iri(url: str) -> str:
    """``url`` as a valid ``iri-reference`` (CycloneDX ``externalReferences[].url``).

    Characters a URI may not hold raw (controls, spaces, non-ASCII: a hostile
    lock can carry them) are percent-encoded; everything else is kept, so a
    well-formed URL is unchanged and the schema never rejects the BOM.
    """
    sub = "!$&'()*+,;="
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: encode all but the scheme separator
        return quote(url, safe=":/%")
    netloc = quote(parts.netloc, safe=sub + ":@[]%")  # brackets belong to an IPv6 host only
    path = quote(parts.path, safe=sub + ":@/%")
    query = quote(parts.query, safe=sub + ":@/?%")
    fragment = quote(parts.fragment, safe=sub + ":@/?%")
    out = f"{parts.scheme}://{netloc}{path}" if parts.scheme else f"{netloc}{path}"
    return out + (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")


def _file_name(url: str) -> str:
    path = urlsplit(url).path
    return path.rsplit("/", 1)[-1] or url


# --------------------------------------------------------------------------- pinned outputs


def pinned_outputs(lock_bytes: bytes) -> dict[str, Outputs]:
    """repo key -> the entrypoints' pinned outputs, read from the lock's canonical JSON.

    Read from the JSON rather than from lock objects so the BOM reports what
    the lock says whatever version of the lock model parsed it. Defensive: an
    entry whose args key is not 64 hex digits, or whose digests are neither
    64 hex digits nor ``null``, is left out (the lock parser refuses such a
    lock before an audit gets here).
    """
    try:
        doc = json.loads(lock_bytes) if lock_bytes else {}
    except ValueError:
        return {}
    repos = doc.get("repos") if isinstance(doc, dict) else None
    out: dict[str, Outputs] = {}
    for key, repo in (repos or {}).items() if isinstance(repos, dict) else ():
        eps = repo.get("entrypoints") if isinstance(repo, dict) else None
        per_ep: dict[str, Mapping[str, Mapping[str, str | None]]] = {}
        for ep_name, ep in eps.items() if isinstance(eps, dict) else ():
            outputs = ep.get("outputs") if isinstance(ep, dict) else None
            if isinstance(outputs, dict):
                per_ep[ep_name] = _valid_outputs(outputs)
        out[key] = per_ep
    return out


def _valid_outputs(outputs: Mapping[str, Any]) -> dict[str, dict[str, str | None]]:
    valid: dict[str, dict[str, str | None]] = {}
    for args_sha, digests in sorted(outputs.items()):
        if not (isinstance(args_sha, str) and _HEX64.fullmatch(args_sha) and isinstance(digests, dict)):
            continue
        fields = {name: digests.get(name) for name in _OUTPUT_FIELDS}
        if all(v is None or (isinstance(v, str) and _HEX64.fullmatch(v)) for v in fields.values()):
            valid[args_sha] = fields
    return valid


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class _Code:
    """The locked specs whose remote and commit give one purl (the same code)."""

    purl: str
    commit: str
    repos: tuple[RepoAudit, ...]


def _group_code(repos: Iterable[RepoAudit]) -> list[_Code]:
    # Grouped by purl, not by remote string: github.com/Alice/Model and github.com/alice/model are
    # one purl, and two components must not share one (Dependency-Track keys components on it).
    groups: dict[str, list[RepoAudit]] = {}
    for repo in repos:
        groups.setdefault(purl_for_remote(repo.remote, repo.commit), []).append(repo)
    return [_Code(purl, members[0].commit, tuple(members)) for purl, members in sorted(groups.items())]


def _prop(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}


def _library(code: _Code) -> dict[str, Any]:
    remotes = sorted({r.remote for r in code.repos})
    host, path = _repo_path(remotes[0])
    props = []
    for repo in code.repos:
        props.append(_prop("securehub:spec", repo.key))
        props.append(_prop(f"securehub:ref:{repo.key}", f"{repo.ref_type} {repo.ref}"))
    # Specs on one commit should agree on the tree digest; if the lock says otherwise, show every value.
    props.extend(_prop("securehub:tree_sha256", t) for t in sorted({r.tree_sha256 for r in code.repos}))
    return {
        "type": "library",
        "bom-ref": code.purl,
        "name": path or host or remotes[0],
        "version": code.commit,
        "purl": code.purl,
        "externalReferences": [{"type": "vcs", "url": _iri(remote)} for remote in remotes],
        "properties": props,
    }


def _model_ref(key: str, entrypoint: str) -> str:
    return f"model:{key}#{entrypoint}"


def _artifact_ref(url: str) -> str:
    return f"artifact:{url}"


def _model(repo: RepoAudit, name: str, urls: tuple[str, ...], outputs: Outputs) -> dict[str, Any]:
    props = [_prop("securehub:entrypoint", name), _prop("securehub:spec", repo.key)]
    for url in urls:
        props.append(_prop("securehub:artifact", url))
    for args_sha, digests in outputs.get(name, {}).items():
        for field_name in _OUTPUT_FIELDS:
            value = digests.get(field_name)
            props.append(_prop(f"securehub:output:{args_sha}:{field_name}", value if value is not None else "none"))
    return {
        "type": "machine-learning-model",
        "bom-ref": _model_ref(repo.key, name),
        "name": f"{repo.key}#{name}",
        "version": repo.commit,
        "externalReferences": [{"type": "vcs", "url": _iri(repo.remote)}],
        "properties": props,
    }


def _file(art: ArtifactAudit) -> dict[str, Any]:
    return {
        "type": "file",
        "bom-ref": _artifact_ref(art.url),
        "name": _file_name(art.url),
        "purl": _artifact_purl(art),
        "hashes": [{"alg": "SHA-256", "content": art.sha256}],
        "externalReferences": [{"type": "distribution", "url": _iri(art.url)}],
        "properties": [_prop("securehub:size", str(art.size))],
    }


class CycloneDXFormatter(Formatter):
    """CycloneDX 1.6 JSON."""

    def render(self, report: AuditReport) -> str:
        codes = _group_code(report.repos)
        code_ref = {repo.key: code.purl for code in codes for repo in code.repos}
        artifact_refs = {a.url for a in report.artifacts}
        outputs = pinned_outputs(report.lock_bytes)
        components: list[dict[str, Any]] = [_library(code) for code in codes]
        dependencies: list[dict[str, Any]] = [{"ref": code.purl, "dependsOn": []} for code in codes]
        for repo in report.repos:
            for name, urls in repo.entrypoints.items():
                components.append(_model(repo, name, urls, outputs.get(repo.key, {})))
                depends = [code_ref[repo.key], *(_artifact_ref(u) for u in urls if u in artifact_refs)]
                dependencies.append({"ref": _model_ref(repo.key, name), "dependsOn": depends})
        for art in report.artifacts:
            components.append(_file(art))
            dependencies.append({"ref": _artifact_ref(art.url), "dependsOn": []})
        bom = {
            "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": serial_number(report.lock_bytes, report.policy_sha256),
            "version": 1,
            "metadata": {
                "tools": {"components": [{"type": "application", "name": "securehub", "version": __version__}]},
                "properties": [
                    _prop("securehub:policy", report.policy_name),
                    _prop("securehub:policy_sha256", report.policy_sha256),
                    *([_prop("securehub:signed_by", report.signed_by)] if report.signed_by else []),
                ],
            },
            "components": components,
            "dependencies": dependencies,
        }
        return json.dumps(bom, indent=2, ensure_ascii=True) + "\n"
