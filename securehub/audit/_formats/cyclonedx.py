"""CycloneDX 1.6 JSON BOM of what hub.lock pins (an ML-BOM).

Components, in a fixed order:

* one ``library`` component per locked repo (name = repo key, version =
  commit, ``vcs`` reference = remote, ``purl`` ``pkg:github/owner/repo@commit``
  for GitHub specs, tree digest as a property) -- so repos without
  entrypoints still appear;
* one ``machine-learning-model`` component per locked entrypoint (name
  ``<repo key>#<entrypoint>``, version = commit, ``hashes`` = the SHA-256 of
  every artifact it fetches);
* one ``file`` component per locked artifact (name = the URL's file name,
  ``distribution`` reference = URL, SHA-256 hash, size property).

``dependencies`` link each model to its repo and artifacts. The BOM carries no
timestamp and its ``serialNumber`` is a UUIDv5 of the lock's canonical bytes
and the policy digest, so the same lock and policy always give byte-identical
BOMs. Audit findings are not part of the BOM (use SARIF for those).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import securehub
from securehub.audit._formats import Formatter
from securehub.resolve.spec import parse_spec

if TYPE_CHECKING:
    from securehub.audit.report import AuditReport, RepoAudit

__all__ = ["BOM_NAMESPACE", "CycloneDXFormatter", "serial_number"]

#: Namespace for the deterministic serial numbers (uuid5 of "securehub" in the URL namespace).
BOM_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://securehub/cyclonedx-bom")


def serial_number(lock_bytes: bytes, policy_sha256: str) -> str:
    """``urn:uuid:<uuid5>`` of the lock's canonical bytes and the policy digest."""
    name = hashlib.sha256(lock_bytes).hexdigest() + ":" + policy_sha256
    return uuid.uuid5(BOM_NAMESPACE, name).urn


def _repo_ref(key: str) -> str:
    return f"repo:{key}"


def _model_ref(key: str, entrypoint: str) -> str:
    return f"model:{key}#{entrypoint}"


def _artifact_ref(url: str) -> str:
    return f"artifact:{url}"


def _purl(repo: RepoAudit) -> str | None:
    """``pkg:github/owner/repo@commit`` for a GitHub spec, else ``None``."""
    try:
        spec = parse_spec(repo.key)
    except securehub.SecureHubError:
        return None
    if spec.kind != "github":
        return None
    owner, _, name = spec.name.partition("/")
    return f"pkg:github/{quote(owner.lower(), safe='')}/{quote(name.lower(), safe='')}@{repo.commit}"


def _file_name(url: str) -> str:
    path = urlsplit(url).path
    return path.rsplit("/", 1)[-1] or url


class CycloneDXFormatter(Formatter):
    """CycloneDX 1.6 JSON."""

    def render(self, report: AuditReport) -> str:
        hashes = {a.url: a.sha256 for a in report.artifacts}
        components: list[dict[str, Any]] = []
        dependencies: list[dict[str, Any]] = []
        for repo in report.repos:
            lib: dict[str, Any] = {
                "type": "library",
                "bom-ref": _repo_ref(repo.key),
                "name": repo.key,
                "version": repo.commit,
                "externalReferences": [{"type": "vcs", "url": repo.remote}],
                "properties": [
                    {"name": "securehub:ref", "value": repo.ref},
                    {"name": "securehub:ref_type", "value": repo.ref_type},
                    {"name": "securehub:tree_sha256", "value": repo.tree_sha256},
                ],
            }
            purl = _purl(repo)
            if purl is not None:
                lib["purl"] = purl
            components.append(lib)
            dependencies.append({"ref": _repo_ref(repo.key), "dependsOn": []})
        for repo in report.repos:
            for name, urls in repo.entrypoints.items():
                model: dict[str, Any] = {
                    "type": "machine-learning-model",
                    "bom-ref": _model_ref(repo.key, name),
                    "name": f"{repo.key}#{name}",
                    "version": repo.commit,
                    "externalReferences": [{"type": "vcs", "url": repo.remote}],
                    "properties": [{"name": "securehub:entrypoint", "value": name}],
                }
                digests = sorted({hashes[u] for u in urls if u in hashes})
                if digests:
                    model["hashes"] = [{"alg": "SHA-256", "content": d} for d in digests]
                components.append(model)
                depends = [_repo_ref(repo.key), *(_artifact_ref(u) for u in urls)]
                dependencies.append({"ref": _model_ref(repo.key, name), "dependsOn": depends})
        for art in report.artifacts:
            components.append(
                {
                    "type": "file",
                    "bom-ref": _artifact_ref(art.url),
                    "name": _file_name(art.url),
                    "hashes": [{"alg": "SHA-256", "content": art.sha256}],
                    "externalReferences": [{"type": "distribution", "url": art.url}],
                    "properties": [{"name": "securehub:size", "value": str(art.size)}],
                }
            )
            dependencies.append({"ref": _artifact_ref(art.url), "dependsOn": []})
        bom = {
            "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": serial_number(report.lock_bytes, report.policy_sha256),
            "version": 1,
            "metadata": {
                "tools": {
                    "components": [{"type": "application", "name": "securehub", "version": securehub.__version__}]
                },
                "properties": [
                    {"name": "securehub:policy", "value": report.policy_name},
                    {"name": "securehub:policy_sha256", "value": report.policy_sha256},
                    *([{"name": "securehub:signed_by", "value": report.signed_by}] if report.signed_by else []),
                ],
            },
            "components": components,
            "dependencies": dependencies,
        }
        return json.dumps(bom, indent=2, ensure_ascii=True) + "\n"
