"""Convert a pickle checkpoint inside the sandbox (SPEC sections 2 and 8, strict).

Under ``artifacts.pickle_in_parent: false`` a pickle checkpoint is never
unpickled in the calling process, not even with ``weights_only=True``.
:func:`convert_in_sandbox` hands the (already downloaded, verified and
scanned) file to a confined child -- same policy, limits and isolation as a
hubconf run -- which loads it with ``torch.load(weights_only=True)`` and
returns the tensors as safetensors and everything else as JSON
(:mod:`securehub.sandbox.child.convert`). This process only parses JSON,
checks the safetensors layout and loads it with the safetensors library.

What comes back, compared with ``torch.load`` of the same file:

- the same nesting of dicts, ``OrderedDict``s, lists and tuples, with the
  same keys (string and integer keys keep their type) in the same order;
- tensors equal in dtype, shape and values, as plain ``torch.Tensor``
  (``nn.Parameter`` becomes a tensor, ``requires_grad`` is not kept), on
  ``map_location`` (default CPU); one tensor object (or identical view)
  stored under several keys is one tensor object here too; other storage
  sharing (overlapping views) becomes independent copies;
- ``None``/bool/int/float/str values unchanged (NaN and infinities included);
  tuple subclasses such as ``torch.Size`` come back as plain tuples;
- a container object referenced twice comes back as one shared object.

A checkpoint holding anything else (``torch.dtype``, ``bytes``, sets,
sparse or quantized tensors, keys that are not str/int, a top level that is
not a mapping), or one ``weights_only`` refuses, fails with
``format-not-allowed``.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file

from securehub.errors import FormatNotAllowed, SandboxProtocol
from securehub.pipeline.sandbox_config import sandbox_config
from securehub.sandbox.parent.session import run_in_sandbox
from securehub.sandbox.parent.spawn import DEFAULT_ENTRY
from securehub.sandbox.wire import messages as m

if TYPE_CHECKING:
    from securehub.config.policy import Policy
    from securehub.sandbox.config import IsolationReport, SandboxConfig

__all__ = ["ConvertResult", "convert_checkpoint", "convert_in_sandbox", "rebuild"]


@dataclass(frozen=True)
class ConvertResult:
    """A converted checkpoint (``state``) and the isolation the converting child achieved (for the audit log)."""

    state: dict[str, Any]
    isolation: IsolationReport


def convert_in_sandbox(
    path: Path, *, policy: Policy, map_location: Any = None, sha256: str | None = None
) -> dict[str, Any]:
    """:func:`convert_checkpoint`, returning only the checkpoint."""
    return convert_checkpoint(path, policy=policy, map_location=map_location, sha256=sha256).state


def convert_checkpoint(
    path: Path, *, policy: Policy, map_location: Any = None, sha256: str | None = None
) -> ConvertResult:
    """Unpickle the checkpoint at ``path`` inside the sandbox and rebuild it here (see the module docstring).

    ``path`` must be a verified artifact (the broker's download: digest,
    format and static scan already checked); with ``sha256`` the copy handed
    to the child is re-checked against it (``hash-mismatch``).
    ``map_location``: ``None`` (CPU), a device string or a ``torch.device``;
    anything else raises ``TypeError`` (the checkpoint is always loaded on
    CPU inside the sandbox, so torch's dict/callable forms have nothing to
    map from).

    Raises ``format-not-allowed`` (refused by ``weights_only`` or not
    convertible; the message gives torch's reason), the sandbox's codes
    (``sandbox-unavailable``, ``-timeout``, ``-resource``, ``-violation``)
    as they are, and ``sandbox-protocol`` for a malformed answer.
    """
    return _run(path, sandbox_config(policy), map_location=map_location, sha256=sha256)


def _device(map_location: Any) -> str:
    if map_location is None:
        return "cpu"
    if isinstance(map_location, (str, torch.device)):
        try:
            return str(torch.device(map_location))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"map_location {map_location!r} is not a device: {exc}") from None
    raise TypeError(
        f"map_location must be None, a device string or a torch.device when the checkpoint is converted in the "
        f"sandbox, got {type(map_location).__name__}"
    )


def _no_fetch(request: m.FetchRequest) -> Path:
    raise SandboxProtocol(f"the sandbox child asked to fetch {request.url!r} during a convert")


def _run(
    path: Path,
    config: SandboxConfig,
    *,
    map_location: Any = None,
    sha256: str | None = None,
    entry: str = DEFAULT_ENTRY,
    probe_file: Path | None = None,
) -> ConvertResult:
    """Convert ``path`` in a sandbox built from ``config`` (``entry``/``probe_file``: for tests)."""
    device = _device(map_location)
    path = Path(path).resolve()
    if not path.is_file():
        raise ValueError(f"{path} is not a file; expected a downloaded, verified checkpoint")
    with tempfile.TemporaryDirectory(prefix="securehub-convert-", dir=config.tmp_parent) as work:
        try:
            result = run_in_sandbox(
                "convert",
                None,
                None,
                (),
                {},
                config=config,
                broker=_no_fetch,
                out_dir=Path(work),
                entry=entry,
                probe_file=probe_file,
                convert_file=path,
                convert_sha256=sha256,
            )
        except FormatNotAllowed as exc:
            raise FormatNotAllowed(
                f"{path.name}: the checkpoint cannot be loaded as weights only (converted in the sandbox): "
                f"{exc.message.rstrip('.')}. Expected a torch.save checkpoint of tensors and plain containers "
                "(dicts, lists, tuples, numbers, strings); ask the publisher for a safetensors file"
            ) from None
        if result.converted is None or result.state_path is None:
            raise SandboxProtocol("the sandbox answered a convert without a converted checkpoint")
        tensors = load_file(str(result.state_path), device=device)
    return ConvertResult(rebuild(result.converted, tensors), result.isolation)


def rebuild(layout: m.ConvertLayout, tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The checkpoint described by ``layout`` (checked by :func:`~securehub.sandbox.wire.messages.parse_convert`).

    ``tensors`` must hold every name in ``layout.tensor_names`` (the session
    checks that the safetensors file holds exactly those). Containers are
    built in index order: a layout only refers to earlier containers, so this
    always terminates and never recurses.
    """
    built: list[Any] = []

    def value(ref: m.ConvertRef) -> Any:
        if ref.kind == "c":
            return built[int(ref.target)]
        if ref.kind == "t":
            return tensors[str(ref.target)]
        return layout.extras[str(ref.target)]

    for container in layout.containers:
        items = [value(ref) for ref in container.items]
        obj: Any
        if container.kind == "dict":
            obj = dict(zip(container.keys, items, strict=True))
        elif container.kind == "odict":
            obj = collections.OrderedDict(zip(container.keys, items, strict=True))
        elif container.kind == "list":
            obj = items
        else:
            obj = tuple(items)
        built.append(obj)
    root = value(layout.root)
    if not isinstance(root, dict):
        raise SandboxProtocol("the converted checkpoint's root is not a mapping")
    return root
