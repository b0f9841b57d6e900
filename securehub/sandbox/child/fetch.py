"""torch.hub download functions and ``torch.load``, as the child sees them (runs in the child).

``torch.hub.load_state_dict_from_url``, ``torch.hub.download_url_to_file``
and ``torch.utils.model_zoo.load_url`` are replaced by versions that ask the
parent (a ``fetch`` frame) and wait for a read-only path (``fetched``) or a
refusal (``error``, raised here as
:class:`~securehub.sandbox.child.errors.ArtifactRefused`). ``torch.load``
always runs with ``weights_only=True``; asking for ``weights_only=False`` or
a custom ``pickle_module`` raises
:class:`~securehub.sandbox.child.errors.WeightsOnlyRefused` and records a
violation. ``torch.hub.load`` (nested loads) asks the parent too (a
``nested_load`` frame, see :mod:`securehub.sandbox.child.nested`); its
refusals are raised as
:class:`~securehub.sandbox.child.errors.NestedLoadRefused`. Fetches and nested loads
are numbered in one sequence, the index a relayed refusal names.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import torch
import torch.hub
import torch.serialization
import torch.utils.model_zoo
from safetensors.torch import load_file

from securehub.sandbox.child.audit import Watch
from securehub.sandbox.child.errors import ArtifactRefused, WeightsOnlyRefused
from securehub.sandbox.child.nested import NestedLoader
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import recv_frame, send_frame

__all__ = ["install"]

# torch.hub's own rule: the hash prefix is what follows the last '-' before the extension.
_HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")
_MAX_REPLY_BYTES = 1 << 20


class _Fetcher:
    def __init__(self, channel: socket.socket, watch: Watch) -> None:
        self.channel = channel
        self.watch = watch
        self.count = 0

    def next_index(self) -> int:
        """The number of the next request sent to the parent (fetches and nested loads share it)."""
        index = self.count
        self.count += 1
        return index

    def fetch(self, request: m.FetchRequest) -> Path:
        index = self.next_index()
        send_frame(self.channel, m.FETCH, request.to_meta())
        reply = recv_frame(self.channel, max_body_bytes=0, max_header_bytes=_MAX_REPLY_BYTES)
        if reply.type == m.ERROR:
            raise ArtifactRefused(str(reply.meta.get("code")), str(reply.meta.get("message")), index)
        if reply.type != m.FETCHED or not isinstance(reply.meta.get("path"), str):
            raise RuntimeError(f"securehub parent sent an unexpected {reply.type!r} reply to a fetch")
        path = str(reply.meta["path"])
        self.watch.allow_read(path)
        return Path(path)


def _is_safetensors(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(9)
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= path.stat().st_size - 8 and head[8:9] == b"{"


def install(channel: socket.socket, watch: Watch) -> None:
    """Replace the torch download/load functions in this (child) process."""
    fetcher = _Fetcher(channel, watch)
    orig_load: Callable[..., Any] = torch.serialization.load
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)

    def safe_load(
        f: Any, map_location: Any = None, pickle_module: Any = None, *, weights_only: Any = None, **kw: Any
    ) -> Any:
        if weights_only is False or pickle_module is not None:
            what = "weights_only=False" if weights_only is False else "pickle_module=..."
            watch.record(f"torch.load({what}) attempted")
            raise WeightsOnlyRefused(
                f"torch.load({what}) is refused inside the securehub sandbox: checkpoints are loaded "
                "with weights_only=True only; convert the checkpoint to safetensors or plain tensors"
            )
        return orig_load(f, map_location=map_location, weights_only=True, **kw)

    def load_state_dict_from_url(  # torch.hub's signature
        url: str,
        model_dir: Any = None,
        map_location: Any = None,
        progress: bool = True,
        check_hash: bool = False,
        file_name: str | None = None,
        weights_only: bool = True,
    ) -> dict[str, Any]:
        # weights_only is accepted for signature compatibility and always forced True.
        name = file_name or PurePosixPath(urlparse(url).path).name
        match = _HASH_REGEX.search(name) if check_hash else None
        request = m.FetchRequest(
            url=str(url),
            kind="load_state_dict",
            file_name=file_name,
            hash_prefix=match.group(1) if match else None,
            check_hash=bool(check_hash),
        )
        path = fetcher.fetch(request)
        if _is_safetensors(path):
            device = str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"
            return dict(load_file(str(path), device=device))
        result = orig_load(str(path), map_location=map_location, weights_only=True)
        if not isinstance(result, dict):
            raise TypeError(f"checkpoint at {url} holds a {type(result).__name__}, expected a state dict")
        return result

    def download_url_to_file(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        request = m.FetchRequest(
            url=str(url), kind="download", file_name=None, hash_prefix=hash_prefix, check_hash=False
        )
        path = fetcher.fetch(request)
        shutil.copyfile(path, dst)

    nested = NestedLoader(channel, fetcher.next_index)

    torch.load = safe_load
    torch.serialization.load = safe_load
    torch.hub.load_state_dict_from_url = load_state_dict_from_url
    torch.hub.download_url_to_file = download_url_to_file
    torch.hub.load = nested.load
    torch.utils.model_zoo.load_url = load_state_dict_from_url  # type: ignore[attr-defined]
