"""What the ``source`` strategy's parent-side entrypoint call may reach: verified artifacts, nothing else.

The call runs repository code with the parent's rights (that is what a policy
listing ``source`` allows), so this is not a sandbox; it makes sure the call
never *needs* or *gets* the network or an unverified artifact:

- ``torch.hub.load_state_dict_from_url``, ``torch.hub.download_url_to_file``,
  ``torch.utils.model_zoo.load_url`` are answered from the artifacts the
  sandbox's child fetched for this very load: the URL must be one of them
  (otherwise ``artifact-not-allowed``), the cached blob is read into memory
  and re-hashed, and its digest must equal both what the child received and
  what hub.lock pins (otherwise ``hash-mismatch``). The bytes used are the
  bytes hashed (no re-open between check and use);
- ``torch.load`` runs with ``weights_only=True`` only, as in the child, and
  not at all when the policy keeps pickle out of this process
  (``artifacts.pickle_in_parent: false``: ``format-not-allowed``);
- a nested ``torch.hub.load`` is refused (``reconstruct-refused``): it would
  resolve and fetch another repository from inside repository code;
- opening a ``torch.package`` archive (``PackageImporter``, silero's TTS
  models) is refused (``reconstruct-refused``): its pickle is not
  ``weights_only`` and it runs the code the archive ships, none of it in the
  pinned tree; the export strategy rebuilds such a model from the sandbox's run;
- any socket connect/bind/send, DNS lookup or process spawn during the call
  is refused by an audit hook (``sandbox-violation`` naming the attempt).

Every refusal is also *recorded*: a hubconf that catches the exception and
carries on still fails the load afterwards (fail closed).

Scope: the patches are process-wide for the duration of the call (torch's
own modules and any library the repository uses see them, e.g. a repository
that calls torchvision's weight loader), and the audit hook refuses network
and process creation from *every* thread while a call is active. Calls are
serialised by a lock; everything is restored when the call ends.
"""

from __future__ import annotations

import hashlib
import io
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.hub
import torch.package.package_importer
import torch.serialization
import torch.utils.model_zoo
from safetensors.torch import load as load_safetensors_bytes

from securehub.errors import (
    ArtifactNotAllowed,
    FormatNotAllowed,
    HashMismatch,
    ReconstructRefused,
    SandboxViolation,
    SecureHubError,
)
from securehub.verify.formats import detect_format

__all__ = ["ArtifactSource", "guarded_call"]

#: Audit events that reach the network or start another program (which could reach it).
_NETWORK_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.getnameinfo",
    }
)
_PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty"}
)


@dataclass(frozen=True)
class ArtifactSource:
    """The artifacts the parent-side call may use.

    ``fetched``: ``(url, sha256)`` of every artifact the sandbox's child
    received for this load. ``locked``: hub.lock's sha256 per URL (where the
    lock pins it). ``blob``: where the content-addressed cache keeps the
    blob with a digest (the file is re-hashed on every use).
    ``pickle_in_parent``: the policy's ``artifacts.pickle_in_parent``.
    """

    fetched: tuple[tuple[str, str], ...]
    locked: Mapping[str, str]
    blob: Callable[[str], Path]
    pickle_in_parent: bool = True

    def read(self, url: str) -> bytes:
        """The verified bytes of ``url``; see the module docstring for the refusals."""
        digests = dict(self.fetched)
        if url not in digests:
            raise ArtifactNotAllowed(
                f"the entrypoint asked for {url} in this process, but the sandboxed run fetched only "
                f"{sorted(digests) or 'nothing'}; expected the same requests. securehub answers the source "
                "strategy's call only from artifacts the sandbox fetched and verified (never the network). "
                "Check why the repository behaves differently here, or use the trusted/export strategy"
            )
        expected = digests[url]
        pinned = self.locked.get(url)
        if pinned is not None and pinned != expected:
            raise HashMismatch(
                f"artifact {url}: hub.lock pins sha256 {pinned}, the sandbox received {expected}; nothing was "
                "used. Re-lock the entrypoint if the artifact legitimately changed"
            )
        path = self.blob(expected)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise HashMismatch(
                f"artifact {url}: expected the cached blob {path} (sha256 {expected}), found none ({exc.strerror}); "
                "load again to re-download it"
            ) from None
        found = hashlib.sha256(data).hexdigest()
        if found != expected:
            raise HashMismatch(
                f"artifact {url}: expected sha256 {expected} (hub.lock / the sandbox's run), the cached file "
                f"{path} has {found}; nothing was used. The cache was tampered with or corrupted: run "
                "`securehub cache prune` and load again"
            )
        return data


@dataclass
class _Call:
    """One active parent-side call: its artifacts and every refusal it caused (fail closed)."""

    artifacts: ArtifactSource
    refused: list[SecureHubError] = field(default_factory=list)

    def refuse(self, error: SecureHubError) -> SecureHubError:
        self.refused.append(error)
        return error


@dataclass
class _GuardState:
    """Process-wide: the call in progress (if any) and whether the audit hook is installed."""

    active: _Call | None = None
    owner: int | None = None
    hook_installed: bool = False


_LOCK = threading.Lock()
_STATE = _GuardState()


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    call = _STATE.active
    if call is None:
        return
    if event in _NETWORK_EVENTS:
        target = args[1] if event.startswith("socket.") and len(args) > 1 else args[0] if args else ""
        raise call.refuse(
            SandboxViolation(
                f"the entrypoint attempted {event.removeprefix('socket.')} {target!r} while the source strategy "
                "re-ran it in this process; expected no network access (artifacts are answered from the verified "
                "cache). The model was not returned; use the trusted/export strategy for this repository"
            )
        )
    if event in _PROCESS_EVENTS:
        raise call.refuse(
            SandboxViolation(
                f"the entrypoint attempted to start a process ({event}) while the source strategy re-ran it in "
                "this process; expected none. The model was not returned"
            )
        )


def _install_hook() -> None:
    if not _STATE.hook_installed:
        sys.addaudithook(_audit_hook)  # audit hooks cannot be removed: it is inert while no call is active
        _STATE.hook_installed = True


def _replacements(call: _Call, orig_load: Callable[..., Any]) -> dict[tuple[Any, str], Any]:
    def safe_load(f: Any, map_location: Any = None, pickle_module: Any = None, **kw: Any) -> Any:
        if not call.artifacts.pickle_in_parent:
            raise call.refuse(
                FormatNotAllowed(
                    "the entrypoint called torch.load in this process, but the policy keeps pickle out of it "
                    "(artifacts.pickle_in_parent: false); expected safetensors checkpoints. Ask the publisher for "
                    "safetensors, or use the trusted/export strategy (pickle is then read inside the sandbox)"
                )
            )
        if kw.pop("weights_only", None) is False or pickle_module is not None:
            raise call.refuse(
                ReconstructRefused(
                    "the entrypoint called torch.load with weights_only=False or a pickle_module in this process; "
                    "the source strategy loads checkpoints with weights_only=True only"
                )
            )
        return orig_load(f, map_location=map_location, weights_only=True, **kw)

    def load_state_dict_from_url(
        url: str, model_dir: Any = None, map_location: Any = None, progress: bool = True,
        check_hash: bool = False, file_name: str | None = None, weights_only: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        try:
            data = call.artifacts.read(str(url))
        except SecureHubError as exc:
            raise call.refuse(exc) from None
        if detect_format(data) == "safetensors":  # by content, as the broker decided when admitting it
            device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
            return {k: v.to(device) for k, v in load_safetensors_bytes(data).items()}
        result = safe_load(io.BytesIO(data), map_location=map_location)
        if not isinstance(result, dict):
            raise TypeError(f"checkpoint at {url} holds a {type(result).__name__}, expected a state dict")
        return result

    def download_url_to_file(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        try:
            data = call.artifacts.read(str(url))
        except SecureHubError as exc:
            raise call.refuse(exc) from None
        Path(dst).write_bytes(data)

    def nested_load(repo_or_dir: Any, model: Any, *args: Any, **kwargs: Any) -> Any:
        raise call.refuse(
            ReconstructRefused(
                f"the entrypoint makes a nested torch.hub.load({repo_or_dir!r}, {model!r}); the source strategy "
                "does not resolve or fetch other repositories from repository code running in this process. "
                "Pass example_inputs=... so the export strategy rebuilds this entrypoint, or load the nested "
                "model yourself with securehub.load"
            )
        )

    def package_importer(self: Any, file_or_buffer: Any, *args: Any, **kwargs: Any) -> None:
        name = file_or_buffer if isinstance(file_or_buffer, (str, Path)) else type(file_or_buffer).__name__
        raise call.refuse(
            ReconstructRefused(
                f"the entrypoint opened a torch.package archive ({str(name)[-120:]!r}) in this process; expected "
                "checkpoints read with torch.load(weights_only=True) only: an archive's pickle rebuilds arbitrary "
                "objects and runs the Python code the archive ships, which is not part of the pinned tree. Pass "
                "example_inputs=... (or lock them with securehub lock --example-input) so the export strategy "
                "rebuilds the model from the sandbox's run, where the archive was opened"
            )
        )

    return {
        (torch.package.package_importer.PackageImporter, "__init__"): package_importer,
        (torch, "load"): safe_load,
        (torch.serialization, "load"): safe_load,
        (torch.hub, "load_state_dict_from_url"): load_state_dict_from_url,
        (torch.hub, "download_url_to_file"): download_url_to_file,
        (torch.hub, "load"): nested_load,
        (torch.utils.model_zoo, "load_url"): load_state_dict_from_url,
    }


@contextmanager
def _patched(replacements: Mapping[tuple[Any, str], Any]) -> Iterator[None]:
    saved = {key: getattr(key[0], key[1]) for key in replacements}
    try:
        for (owner, name), value in replacements.items():
            setattr(owner, name, value)
        yield
    finally:
        for (owner, name), value in saved.items():
            setattr(owner, name, value)


def guarded_call(artifacts: ArtifactSource, fn: Callable[[], Any]) -> Any:
    """Run ``fn()`` with the guards of the module docstring; re-raise the first refusal it caused.

    Raises the first recorded refusal even when ``fn`` caught it and returned
    normally. Any other exception of ``fn`` propagates unchanged.
    """
    outer = _STATE.active
    if outer is not None and _STATE.owner == threading.get_ident():
        # Repository code of a call in progress asked for another source rebuild (securehub.load
        # from hubconf.py): refused, not waited for (the lock is held by this very thread).
        raise outer.refuse(
            ReconstructRefused(
                "the entrypoint started another source-strategy rebuild while being re-run in this process; "
                "expected none. Load that model yourself with securehub.load"
            )
        )
    call = _Call(artifacts)
    with _LOCK, _patched(_replacements(call, torch.serialization.load)):
        _install_hook()
        _STATE.active, _STATE.owner = call, threading.get_ident()
        try:
            try:
                result = fn()
            except Exception:
                if call.refused:
                    raise call.refused[0] from None
                raise
        finally:
            _STATE.active, _STATE.owner = None, None
    if call.refused:
        raise call.refused[0]
    return result
