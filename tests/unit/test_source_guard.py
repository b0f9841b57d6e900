"""The source strategy's call guard: artifacts only from the verified cache, no network, restored after."""

from __future__ import annotations

import hashlib
import io
import socket
from pathlib import Path

import pytest
import torch
import torch.hub
import torch.package
from safetensors.torch import save

from securehub.errors import SecureHubError
from securehub.reconstruct.source_guard import ArtifactSource, guarded_call

URL = "https://weights.example.com/net.safetensors"
WEIGHTS = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}


def _source(tmp_path: Path, data: bytes, *, locked: str | None = None, stored: bytes | None = None) -> ArtifactSource:
    digest = hashlib.sha256(data).hexdigest()
    blobs = tmp_path / "blobs"
    blobs.mkdir(exist_ok=True)
    (blobs / digest).write_bytes(data if stored is None else stored)
    return ArtifactSource(((URL, digest),), {URL: locked or digest}, lambda sha: blobs / sha)


def _code(tmp_path: Path, source: ArtifactSource, fn: object) -> str:
    with pytest.raises(SecureHubError) as info:
        guarded_call(source, fn)  # type: ignore[arg-type]
    return info.value.code


def test_fetched_artifact_is_answered_from_the_verified_blob(tmp_path: Path) -> None:
    source = _source(tmp_path, save(WEIGHTS))
    got = guarded_call(source, lambda: torch.hub.load_state_dict_from_url(URL, progress=False))
    assert torch.equal(got["w"], WEIGHTS["w"])


def test_pickle_artifact_is_loaded_weights_only(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save(WEIGHTS, buf)
    source = _source(tmp_path, buf.getvalue())
    got = guarded_call(source, lambda: torch.utils.model_zoo.load_url(URL))  # type: ignore[attr-defined]
    assert torch.equal(got["w"], WEIGHTS["w"])


def test_url_the_sandbox_did_not_fetch_is_artifact_not_allowed(tmp_path: Path) -> None:
    source = _source(tmp_path, save(WEIGHTS))
    assert _code(tmp_path, source, lambda: torch.hub.load_state_dict_from_url(URL + "?v=2")) == "artifact-not-allowed"


def test_blob_differing_from_the_sandboxs_digest_is_hash_mismatch(tmp_path: Path) -> None:
    source = _source(tmp_path, save(WEIGHTS), stored=save({"w": torch.zeros(2, 3)}))
    assert _code(tmp_path, source, lambda: torch.hub.load_state_dict_from_url(URL)) == "hash-mismatch"


def test_sandbox_digest_differing_from_the_lock_is_hash_mismatch(tmp_path: Path) -> None:
    source = _source(tmp_path, save(WEIGHTS), locked="0" * 64)
    assert _code(tmp_path, source, lambda: torch.hub.load_state_dict_from_url(URL)) == "hash-mismatch"


def test_missing_blob_is_hash_mismatch(tmp_path: Path) -> None:
    source = ArtifactSource(((URL, "a" * 64),), {}, lambda sha: tmp_path / sha)
    assert _code(tmp_path, source, lambda: torch.hub.download_url_to_file(URL, str(tmp_path / "x"))) == "hash-mismatch"
    assert not (tmp_path / "x").exists()


def test_refusals_swallowed_by_the_entrypoint_still_fail_the_call(tmp_path: Path) -> None:
    def swallowing() -> str:
        for attempt in (
            lambda: torch.hub.load("acme/other:v1", "net"),
            lambda: torch.load(io.BytesIO(b""), weights_only=False),
        ):
            try:
                attempt()
            except Exception:  # noqa: S112 - the hostile entrypoint ignores every refusal
                continue
        return "model"

    # The first refusal (the nested load) is what the call raises.
    assert _code(tmp_path, _source(tmp_path, b"x"), swallowing) == "reconstruct-refused"


def test_everything_is_restored_and_the_hook_is_inert_after_the_call(tmp_path: Path) -> None:
    originals = (torch.load, torch.hub.load, torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file)
    with pytest.raises(SecureHubError):
        guarded_call(_source(tmp_path, b"x"), lambda: socket.getaddrinfo("localhost", 80))
    assert (torch.load, torch.hub.load, torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file) == originals
    server = socket.create_server(("127.0.0.1", 0))  # the parent's own network use is not affected afterwards
    with server, socket.create_connection(server.getsockname(), timeout=2):
        pass


def test_a_source_rebuild_started_from_inside_the_call_is_refused_not_deadlocked(tmp_path: Path) -> None:
    source = _source(tmp_path, b"x")

    def reentering() -> str:
        try:
            guarded_call(source, lambda: "inner model")
        except SecureHubError:
            pass  # swallowed: the outer call fails all the same
        return "outer model"

    assert _code(tmp_path, source, reentering) == "reconstruct-refused"


def test_pickle_is_not_loaded_here_when_the_policy_keeps_it_out_of_the_parent(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save(WEIGHTS, buf)
    base = _source(tmp_path, buf.getvalue())
    source = ArtifactSource(base.fetched, base.locked, base.blob, pickle_in_parent=False)
    assert _code(tmp_path, source, lambda: torch.hub.load_state_dict_from_url(URL)) == "format-not-allowed"
    # safetensors is not pickle: still answered
    (tmp_path / "st").mkdir()
    st = _source(tmp_path / "st", save(WEIGHTS))
    got = guarded_call(ArtifactSource(st.fetched, st.locked, st.blob, pickle_in_parent=False),
                       lambda: torch.hub.load_state_dict_from_url(URL))  # fmt: skip
    assert torch.equal(got["w"], WEIGHTS["w"])


class _Canary:
    """A pickle payload: unpickling it would write ``path`` (``__reduce__`` runs code on load)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.path), "pwned"))  # type: ignore[return-value]


@pytest.mark.parametrize(
    "load",
    [
        lambda data: torch.load(io.BytesIO(data), weights_only=False),
        lambda data: torch.serialization.load(io.BytesIO(data), weights_only=False),
        lambda data: torch.load(io.BytesIO(data), pickle_module=__import__("pickle")),
    ],
    ids=["torch.load", "torch.serialization.load", "pickle_module"],
)
def test_full_unpickling_in_the_rerun_is_refused_before_the_payload_runs(tmp_path: Path, load: object) -> None:
    canary = tmp_path / "canary"
    buf = io.BytesIO()
    torch.save(_Canary(canary), buf)
    code = _code(tmp_path, _source(tmp_path, b"x"), lambda: load(buf.getvalue()))  # type: ignore[operator]
    assert code == "reconstruct-refused"
    assert not canary.exists()


def _archive(tmp_path: Path, canary: Path) -> Path:
    """A torch.package archive (silero's TTS models ship as one) whose module writes ``canary`` when imported."""
    path = tmp_path / "model.pt"
    with torch.package.PackageExporter(path) as exporter:
        code = f"from pathlib import Path\nPath({str(canary)!r}).write_text('ran')\n"
        exporter.save_source_string("tts_models", code)
    return path


def test_opening_a_torch_package_archive_in_the_rerun_is_refused_before_its_code_runs(tmp_path: Path) -> None:
    """A torch.package archive's pickle is not weights_only and it imports the code it ships: none of it is in
    the pinned tree, so the parent never opens one (export rebuilds such a model from the sandbox's run)."""
    canary = tmp_path / "canary"
    archive = _archive(tmp_path, canary)

    def opening() -> str:
        try:
            torch.package.PackageImporter(str(archive)).import_module("tts_models")
        except Exception:  # noqa: S110 - the entrypoint ignores the refusal: the call fails all the same
            pass
        return "model"

    with pytest.raises(SecureHubError) as info:
        guarded_call(_source(tmp_path, b"x"), opening)
    assert info.value.code == "reconstruct-refused"
    assert f"the entrypoint opened a torch.package archive ({str(archive)!r}) in this process" in info.value.message
    assert "Pass example_inputs=... (or lock them with securehub lock --example-input)" in info.value.message
    assert not canary.exists()
    # restored after the call: the archive opens (and its code runs) outside the guard
    torch.package.PackageImporter(str(archive)).import_module("tts_models")
    assert canary.read_text() == "ran"
