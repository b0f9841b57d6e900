"""Air-gapped bundles (SPEC section 10): export on one hub dir, import into a fresh one, load offline;
tampered bundles are refused (``hash-mismatch``) and leave the importing cache unchanged.

The export side runs against the real loopback git and artifact servers (``securehub lock -e`` pins a
repo and the weights its entrypoint fetches). The import side is a fresh ``SECUREHUB_DIR`` with
``SECUREHUB_OFFLINE=1``: every byte must come from the bundle and be checked against hub.lock.
Tampering is done on the tar itself, the way an attacker with access to the transfer medium would.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from safetensors.torch import save
from torch import nn

from securehub.config.lockfile import Lockfile
from securehub.errors import SecureHubError
from securehub.pipeline.bundle import export_bundle, import_bundle
from tests._hub_helpers import NEEDS_FULL_SANDBOX, write_policy
from tests._lock_helpers import keypair
from tests._servers import ArtifactServer, GitServer, RepoFactory, Symlink

pytestmark = NEEDS_FULL_SANDBOX

REPO = "acme/bundled"
HUBCONF = textwrap.dedent(
    '''
    import torch
    from torch import nn

    dependencies = ["torch"]

    W_URL = "@W_URL@"


    def weighted():
        """Linear(4, 2) with published weights."""
        model = nn.Linear(4, 2)
        model.load_state_dict(torch.hub.load_state_dict_from_url(W_URL, progress=False))
        return model
    '''
)


@dataclass
class Exported:
    lock: Path
    bundle: Path
    fresh: Path  # the SECUREHUB_DIR of the machine running the commands (machine B: does not exist yet)
    env: dict[str, str]
    blob: bytes
    url: str
    git: GitServer
    artifacts: ArtifactServer

    def cli(self, *args: str, hub: Path | None = None, offline: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**self.env, "SECUREHUB_DIR": str(hub or self.fresh)}
        if offline:
            env["SECUREHUB_OFFLINE"] = "1"
        return subprocess.run(
            [sys.executable, "-m", "securehub", *args], cwd=self.lock.parent, env=env, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip


@pytest.fixture(scope="module")
def _origin(tmp_path_factory: pytest.TempPathFactory, git_server: GitServer) -> Iterator[Exported]:
    """Machine A, once per module: lock -e (real servers), then cache export. Tests get copies."""
    root = tmp_path_factory.mktemp("bundle-origin")
    artifact_server = ArtifactServer()
    artifact_server.start()
    factory = RepoFactory(git_server)
    try:
        blob = save(nn.Linear(4, 2).state_dict())
        url = artifact_server.put("/b/weights.safetensors", blob)
        repo = factory.make_repo(
            REPO,
            {"hubconf.py": HUBCONF.replace("@W_URL@", url), "pkg/data.txt": "data\n", "pkg/link": Symlink("data.txt")},
        )
        repo.tag("v1", annotated=True)
        work = root / "work"
        work.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SECUREHUB_") and k != "GITHUB_TOKEN"}
        env.update(SECUREHUB_GITHUB_URL=git_server.base_url, SECUREHUB_AUDIT_LOG=str(root / "audit.jsonl"))
        origin = Exported(work / "hub.lock", root / "models.bundle", root / "hub-a", env, blob, url, git_server,
                          artifact_server)  # fmt: skip
        # The hubconf's weights URL is on the loopback artifact server: locking it needs a policy that
        # names the host literally (repository-chosen URLs reach only public addresses otherwise).
        naming = write_policy(root / "loopback.yaml", "strict", artifacts={"hosts": ["*", "127.0.0.1"]})
        locked = origin.cli("lock", f"{REPO}:v1", "-e", "weighted", "--policy", str(naming), offline=False)
        assert locked.returncode == 0, locked.stderr
        exp = origin.cli("cache", "export", str(origin.bundle), "--lock", str(origin.lock), offline=False)
        assert exp.returncode == 0, exp.stderr
        assert "exported 1 trees, 1 artifacts and 0 pinned results" in exp.stdout
        yield origin
    finally:
        factory.cleanup()
        artifact_server.stop()


@pytest.fixture
def ex(_origin: Exported, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Exported:
    """Machine B: a copy of the lock and bundle, and a fresh SECUREHUB_DIR that does not exist yet."""
    work = tmp_path / "work"
    work.mkdir()
    lock = work / "hub.lock"
    lock.write_bytes(_origin.lock.read_bytes())
    bundle = tmp_path / "models.bundle"
    bundle.write_bytes(_origin.bundle.read_bytes())
    fresh = tmp_path / "hub-b"
    for name in ("SECUREHUB_DIR", "SECUREHUB_OFFLINE", "SECUREHUB_LOCK", "SECUREHUB_POLICY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECUREHUB_DIR", str(fresh))
    monkeypatch.setenv("SECUREHUB_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    monkeypatch.setenv("SECUREHUB_GITHUB_URL", _origin.env["SECUREHUB_GITHUB_URL"])  # specs resolve as on A
    _origin.git.clear_log()
    _origin.artifacts.clear_log()
    return Exported(lock, bundle, fresh, _origin.env, _origin.blob, _origin.url, _origin.git, _origin.artifacts)


def _listing(hub: Path) -> list[str] | None:
    """Every entry under the hub dir (``None`` when it does not exist)."""
    return sorted(str(p.relative_to(hub)) for p in hub.rglob("*")) if hub.exists() else None


def _members(bundle: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(bundle) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else b"") for m in tar]  # type: ignore[union-attr]


def _rewrite(bundle: Path, change: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]) -> None:
    members = _members(bundle)
    change(members)
    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.isfile():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _manifest(members: list[tuple[tarfile.TarInfo, bytes]]) -> tuple[int, dict]:  # type: ignore[type-arg]
    index = next(i for i, (m, _) in enumerate(members) if m.name == "manifest.json")
    return index, json.loads(members[index][1])


def _refused(ex: Exported, code: str = "hash-mismatch") -> str:
    before = _listing(ex.fresh)
    with pytest.raises(SecureHubError) as info:
        import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert info.value.code == code, str(info.value)
    assert _listing(ex.fresh) == before, "a refused import changed the cache"
    assert not ex.git.requests and not ex.artifacts.requests
    last = json.loads(Path(os.environ["SECUREHUB_AUDIT_LOG"]).read_text().splitlines()[-1])
    assert (last["action"], last["outcome"], last["code"]) == ("cache import", "refused", code)
    return str(info.value)


# --------------------------------------------------------------------------- the happy path


def test_bundle_export_import_then_offline_load(ex: Exported) -> None:
    before_lock = ex.lock.read_bytes()
    imp = ex.cli("cache", "import", str(ex.bundle), "--lock", str(ex.lock), "--policy", "strict")
    assert imp.returncode == 0, imp.stderr
    assert "imported 1 trees, 1 artifacts and 0 pinned results" in imp.stdout
    digest = hashlib.sha256(ex.blob).hexdigest()
    assert (ex.fresh / "artifacts" / "sha256" / digest).read_bytes() == ex.blob

    loaded = ex.cli("load", f"{REPO}:v1", "weighted", "--policy", "strict", "--lock", str(ex.lock))
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded torch.nn.modules.linear.Linear" in loaded.stdout
    assert not ex.git.requests and not ex.artifacts.requests  # everything came from the bundle
    assert ex.lock.read_bytes() == before_lock
    verify = ex.cli("cache", "verify")
    assert verify.returncode == 0, verify.stderr


def test_bundle_export_is_deterministic(ex: Exported, tmp_path: Path) -> None:
    again = tmp_path / "again.bundle"
    export_bundle(again, lock=ex.lock, policy="strict")  # from another hub dir: fetched again, same bytes
    assert again.read_bytes() == ex.bundle.read_bytes()


def test_bundle_import_twice_is_idempotent(ex: Exported) -> None:
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    first = _listing(ex.fresh)
    import_bundle(ex.bundle, lock=ex.lock, policy="strict")
    assert _listing(ex.fresh) == first


# --------------------------------------------------------------------------- tampering


def test_bundle_tampering_artifact_byte_changed(ex: Exported) -> None:
    digest = hashlib.sha256(ex.blob).hexdigest()

    def flip(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        i = next(i for i, (m, _) in enumerate(members) if m.name == f"blobs/{digest}")
        data = members[i][1]
        members[i] = (members[i][0], data[:-1] + bytes([data[-1] ^ 1]))

    _rewrite(ex.bundle, flip)
    assert digest in _refused(ex)


def test_bundle_tampering_manifest_digest_rewritten_consistently(ex: Exported) -> None:
    """The attacker swaps the weights, renames the blob and rewrites the manifest to match: the lock decides."""
    digest = hashlib.sha256(ex.blob).hexdigest()
    evil = save({k: v * 0 + 6.66 for k, v in nn.Linear(4, 2).state_dict().items()})
    evil_digest = hashlib.sha256(evil).hexdigest()

    def swap(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        i = next(i for i, (m, _) in enumerate(members) if m.name == f"blobs/{digest}")
        members[i] = _file(f"blobs/{evil_digest}", evil)
        index, doc = _manifest(members)
        doc["artifacts"][ex.url] = {"sha256": evil_digest, "size": len(evil)}
        members[index] = _file("manifest.json", json.dumps(doc).encode())

    _rewrite(ex.bundle, swap)
    message = _refused(ex)
    assert digest in message and ex.url in message
    assert not (ex.fresh / "artifacts" / "sha256" / evil_digest).exists()


def test_bundle_tampering_tree_file_rewritten_consistently(ex: Exported) -> None:
    """hubconf.py replaced and the tree's manifest entries updated: the tree digest no longer matches the lock."""
    evil = b"import os\nos.system('touch /tmp/pwned')\n"
    evil_digest = hashlib.sha256(evil).hexdigest()

    def swap(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        index, doc = _manifest(members)
        (tree,) = doc["trees"].values()
        for entry in tree["entries"]:
            if entry[0] == "hubconf.py":
                members[:] = [(m, d) for m, d in members if m.name != f"blobs/{entry[3]}"]
                entry[2], entry[3] = len(evil), evil_digest
        members.append(_file(f"blobs/{evil_digest}", evil))
        index, _ = _manifest(members)
        members[index] = _file("manifest.json", json.dumps(doc).encode())

    _rewrite(ex.bundle, swap)
    assert "expected" in _refused(ex)


def _replace_manifest(data: bytes) -> Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        index, _ = _manifest(members)
        members[index] = _file("manifest.json", data)

    return change


def test_bundle_tampering_manifest_nested_100000_levels_deep(ex: Exported) -> None:
    """json.loads recursed on it: a RecursionError escaped the import (an internal error, no audit line)."""
    _rewrite(ex.bundle, _replace_manifest(b'{"trees": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    assert "nesting deeper" in _refused(ex)


def test_bundle_tampering_manifest_value_flood(ex: Exported) -> None:
    """A few MB of tiny values, each a Python object once parsed: refused by a scan of the raw bytes."""
    index_doc = _manifest(_members(ex.bundle))[1]
    flood = json.dumps(index_doc).encode()[:-1] + b', "pad": [' + b"0," * 1_000_000 + b"0]}"
    _rewrite(ex.bundle, _replace_manifest(flood))
    assert "values" in _refused(ex)


def test_bundle_tampering_manifest_duplicate_key(ex: Exported) -> None:
    """Two "artifacts" members: one parser could check one, another admit the other. Refused."""
    doc = _manifest(_members(ex.bundle))[1]
    text = json.dumps(doc)
    _rewrite(ex.bundle, _replace_manifest((text[:-1] + ', "artifacts": {}}').encode()))
    assert "repeats the key" in _refused(ex)


def test_bundle_tampering_tree_entry_size_understated(ex: Exported) -> None:
    """Sizes are not part of tree_sha256: a manifest listing every file as 0 bytes passed the lock checks
    and the tree size limit (which added up the listed sizes), so a tree of any real size was written."""

    def shrink(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        index, doc = _manifest(members)
        (tree,) = doc["trees"].values()
        for entry in tree["entries"]:
            entry[2] = 0
        members[index] = _file("manifest.json", json.dumps(doc).encode())

    _rewrite(ex.bundle, shrink)
    assert "is listed with 0 bytes, but its content has" in _refused(ex)


def test_bundle_tampering_extra_blob_member(ex: Exported) -> None:
    extra = b"not pinned by anything"
    _rewrite(ex.bundle, lambda ms: ms.append(_file(f"blobs/{hashlib.sha256(extra).hexdigest()}", extra)))
    assert "not referenced" in _refused(ex)


def test_bundle_tampering_extra_unexpected_member(ex: Exported) -> None:
    _rewrite(ex.bundle, lambda ms: ms.append(_file("README.txt", b"hello")))
    assert "README.txt" in _refused(ex)


def test_bundle_tampering_dotdot_member(ex: Exported, tmp_path: Path) -> None:
    _rewrite(ex.bundle, lambda ms: ms.insert(1, _file("../../escaped.txt", b"escaped")))
    assert "../../escaped.txt" in _refused(ex)
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("escaped.txt"))


def test_bundle_tampering_absolute_member(ex: Exported) -> None:
    target = ex.fresh.parent / "absolute.txt"
    _rewrite(ex.bundle, lambda ms: ms.insert(1, _file(str(target), b"x")))
    _refused(ex)
    assert not target.exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.DIRTYPE])
def test_bundle_tampering_link_device_or_directory_member(ex: Exported, kind: bytes) -> None:
    def add(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        info = tarfile.TarInfo("blobs/" + "a" * 64)
        info.type = kind
        info.linkname = "/etc/passwd"
        members.insert(1, (info, b""))

    _rewrite(ex.bundle, add)
    assert "not a regular file" in _refused(ex)


def test_bundle_tampering_missing_artifact(ex: Exported) -> None:
    digest = hashlib.sha256(ex.blob).hexdigest()

    def drop(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        members[:] = [(m, d) for m, d in members if m.name != f"blobs/{digest}"]

    _rewrite(ex.bundle, drop)
    assert "missing" in _refused(ex)


def test_bundle_not_a_tar(ex: Exported) -> None:
    ex.bundle.write_bytes(b"\x1f\x8b" + os.urandom(64))
    _refused(ex)


def test_bundle_import_requires_the_lock_signature_when_the_policy_does(ex: Exported, tmp_path: Path) -> None:
    _, pub = keypair(tmp_path, "signer")
    policy = write_policy(tmp_path / "signed.yaml", signatures={"trusted_keys": [pub]})
    before = _listing(ex.fresh)
    with pytest.raises(SecureHubError) as info:
        import_bundle(ex.bundle, lock=ex.lock, policy=str(policy))
    assert info.value.code == "signature-invalid"
    assert _listing(ex.fresh) == before


def test_bundle_import_cli_tampered_exit_1(ex: Exported) -> None:
    _rewrite(ex.bundle, lambda ms: ms.append(_file("README.txt", b"hello")))
    before = _listing(ex.fresh)
    r = ex.cli("cache", "import", str(ex.bundle), "--lock", str(ex.lock))
    assert r.returncode == 1
    assert r.stderr.startswith("error[hash-mismatch]: ")
    assert _listing(ex.fresh) == before
    assert Lockfile.load(ex.lock).repo(f"{REPO}:v1") is not None


@pytest.mark.parametrize("args", [("cache", "export"), ("cache", "import"), ("cache", "dir", "extra.bundle")])
def test_bundle_cli_usage_errors(ex: Exported, args: tuple[str, ...]) -> None:
    r = ex.cli(*args)
    assert r.returncode == 2 and r.stderr.startswith("error[usage]: ")


def test_bundle_export_of_a_lock_rewritten_to_another_remote_is_lock_drift(ex: Exported, tmp_path: Path) -> None:
    # An unsigned hub.lock whose entry names another remote (the same pinned commit mirrored on an
    # attacker's server): export would have fetched from it. Refused like a load, before git runs.
    locked = Lockfile.load(ex.lock)
    entry = locked.repos[f"{REPO}:v1"]
    hostile = f"{ex.git.base_url}/attacker/mirror.git"
    doc = json.loads(ex.lock.read_bytes())
    doc["repos"][f"{REPO}:v1"]["remote"] = hostile
    ex.lock.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    bundle = tmp_path / "drift.bundle"
    with pytest.raises(SecureHubError) as info:
        export_bundle(bundle, lock=ex.lock, policy="strict")
    assert info.value.code == "lock-drift", info.value
    assert hostile in info.value.message and "--upgrade" in info.value.message
    assert not bundle.exists()
    assert ex.git.requests == []  # no git request to either remote
    assert entry.remote != hostile
