"""``torch.hub.load`` as the child sees it: nested loads answered by the parent (runs in the child).

SPEC section 6: "Nested torch.hub.load calls inside a hubconf go through the
same resolver, lock and policy". The child never fetches or imports another
repository itself. :meth:`NestedLoader.load` sends a ``nested_load`` frame
(:class:`~securehub.sandbox.wire.messages.NestedRequest`) and waits; the parent
runs a complete securehub load of the inner repo in a sandbox of its own and
answers with the inner model's config and state (``nested_export`` /
``nested_result``), or refuses (``error``, raised here as
:class:`~securehub.sandbox.child.errors.NestedLoadRefused`, which keeps the
parent's code so the outer load fails with it if the entrypoint lets it
through).

The inner module is rebuilt here with :func:`securehub.reconstruct.rebuild.reconstruct`,
restricted to the strategies the parent sent that are in
:data:`~securehub.sandbox.wire.messages.NESTED_STRATEGIES` (``trusted``/``export``;
never ``source``: the child cannot read the inner tree) and the parent's
``trusted_modules``. Modules built this way are created under the outer
entrypoint's constructor recording, so the outer result describes them like
any other module.

Like the rest of the child runtime this is a convenience, not a boundary:
the parent re-checks every request, and the outer result is validated as usual.
"""

from __future__ import annotations

import json
import math
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from torch import nn

from securehub.errors import SecureHubError
from securehub.sandbox.child.errors import NestedLoadRefused, NestedRebuildRefused
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import recv_frame, send_frame

__all__ = ["NestedLoader"]

_MAX_REPLY_HEADER_BYTES = 80 << 20  # the config travels in the nested_result header (parent cap: 16 MiB + 64 KiB)
_MAX_REPLY_BODY_BYTES = 1 << 62  # the parent is trusted; disk use is capped by RLIMIT_FSIZE
_MAX_EXPORT_PROGRAM_BYTES = 512 << 20


class _DrainingSink:
    """Writes a frame body to a file; after a write error keeps draining so the channel stays in sync."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            try:
                self.fh.write(data)
            except OSError as exc:  # e.g. EFBIG from RLIMIT_FSIZE: re-raised once the frame is consumed
                self.error = exc
        return len(data)


def _rebuild_refusal(repo_or_dir: str, model: str, exc: SecureHubError) -> str:
    """What a refused rebuild of a nested load's model says: which load, why, and what would let it load."""
    return (
        f"nested torch.hub.load({repo_or_dir!r}, {model!r}) in the entrypoint: the inner model was loaded but "
        f"cannot be rebuilt inside the outer entrypoint's sandbox, which uses only the trusted and export "
        f"strategies ([{exc.code}] {exc.message}). example_inputs given to securehub.load apply to the outer "
        f"entrypoint only; for export, record example inputs for the inner one: securehub lock {repo_or_dir} "
        f"-e {model} --example-input SHAPE:DTYPE (or --example-input auto)"
    )


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what would not survive JSON unchanged (TypeError), except tuples, which become lists."""
    if depth > 32:
        raise TypeError(f"{where} nests deeper than 32 levels")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which has no JSON form")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; JSON object keys are strings")
            _check_json(item, f"{where}[{key!r}]", depth + 1)
        return
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, not a JSON value")


def _request(
    repo_or_dir: Any, model: Any, args: tuple[Any, ...], kwargs: dict[str, Any], source: Any, force_reload: Any
) -> m.NestedRequest:
    """The request to send, or the ``TypeError``/``ValueError`` torch.hub-style misuse deserves."""
    if not isinstance(repo_or_dir, str) or not isinstance(model, str):
        raise TypeError("torch.hub.load(repo_or_dir, model, ...): repo_or_dir and model must be strings")
    if source not in ("github", "local"):
        raise ValueError(f'Unknown source: "{source}". Allowed values: "github" | "local".')
    if not model.isidentifier():
        raise ValueError(f"torch.hub.load: model must be an entrypoint name, got {model!r}")
    reserved = sorted(set(kwargs) & m.RESERVED_NESTED_KWARGS)
    if reserved:
        raise TypeError(
            f"torch.hub.load inside the securehub sandbox cannot pass {reserved} to the entrypoint: these names "
            "are parameters of the load itself, whose trust settings come from the user's policy"
        )
    _check_json(list(args), "torch.hub.load args")
    _check_json(kwargs, "torch.hub.load kwargs")
    request = m.NestedRequest(
        repo_or_dir=repo_or_dir,
        model=model,
        args=tuple(args),
        kwargs=dict(kwargs),
        source=source,
        force_reload=bool(force_reload),
    )
    meta = request.to_meta()
    size = len(json.dumps([meta["args"], meta["kwargs"]], ensure_ascii=False, separators=(",", ":")).encode())
    if size > m.MAX_NESTED_ARGS_BYTES:
        raise ValueError(
            f"torch.hub.load arguments are {size} bytes as JSON; nested loads in the securehub sandbox take at "
            f"most {m.MAX_NESTED_ARGS_BYTES}"
        )
    return request


class _Reply:
    """The parent's answer to one nested load, as received."""

    def __init__(self) -> None:
        self.export: m.ExportInfo | None = None
        self.config: dict[str, Any] = {}
        self.trusted_modules: tuple[str, ...] = ()
        self.strategies: tuple[str, ...] = ()
        self.state_path: Path | None = None


class NestedLoader:
    """Sends nested loads over ``channel``; ``next_index`` numbers requests (shared with fetches)."""

    def __init__(self, channel: socket.socket, next_index: Callable[[], int]) -> None:
        self.channel = channel
        self.next_index = next_index

    def load(  # torch.hub.load's signature
        self,
        repo_or_dir: str,
        model: str,
        *args: Any,
        source: str = "github",
        trust_repo: Any = None,
        force_reload: bool = False,
        verbose: bool = True,
        skip_validation: bool = False,
        **kwargs: Any,
    ) -> nn.Module:
        """``torch.hub.load`` through the parent; see the module docstring.

        ``trust_repo``, ``verbose`` and ``skip_validation`` are accepted for
        compatibility and ignored (trust comes from the user's policy).
        Raises ``TypeError``/``ValueError`` for arguments that cannot be sent,
        :class:`NestedLoadRefused` when the parent refused or the nested load
        failed, and the reconstruction errors when the model cannot be rebuilt here.
        """
        from securehub.reconstruct.rebuild import reconstruct  # noqa: PLC0415 - lazy: only a nested load rebuilds

        request = _request(repo_or_dir, model, args, kwargs, source, force_reload)
        index = self.next_index()
        send_frame(self.channel, m.NESTED_LOAD, request.to_meta())
        with tempfile.TemporaryDirectory(prefix="nested-") as work:
            reply = self._receive(Path(work), index)
            assert reply.state_path is not None  # noqa: S101 - _receive returns only with a state file
            try:
                module, _strategy = reconstruct(
                    config=reply.config,
                    state_path=reply.state_path,
                    export=reply.export,
                    strategies=reply.strategies,
                    trusted_modules=reply.trusted_modules,
                    tree=None,
                )
            except SecureHubError as exc:
                raise NestedRebuildRefused(_rebuild_refusal(repo_or_dir, model, exc)) from None
        # An export-rebuilt module is an ExportedModule: its own eval()/train(False) work and train(True)
        # is refused, so nothing is patched onto the instance (an instance attribute would read, in the
        # outer model's recorded config, as an attribute set after construction and be refused).
        return module

    def _receive(self, work: Path, index: int) -> _Reply:
        reply = _Reply()
        for n in range(3):  # at most: nested_export, nested_result
            path = work / f"frame-{n}"
            with path.open("xb") as fh:
                sink = _DrainingSink(fh)
                frame = recv_frame(
                    self.channel,
                    max_body_bytes=_MAX_REPLY_BODY_BYTES,
                    max_header_bytes=_MAX_REPLY_HEADER_BYTES,
                    body_sink=sink,  # type: ignore[arg-type]
                )
            if sink.error is not None:
                raise sink.error
            if frame.type == m.ERROR:
                raise NestedLoadRefused(str(frame.meta.get("code")), str(frame.meta.get("message")), index)
            if frame.type == m.NESTED_EXPORT and reply.export is None:
                if frame.body_size > _MAX_EXPORT_PROGRAM_BYTES:
                    raise RuntimeError(f"the nested exported program is {frame.body_size} bytes; too large")
                reply.export = m.parse_export(frame.meta, path.read_bytes())
                path.unlink()
                continue
            if frame.type == m.NESTED_RESULT:
                self._result(frame.meta, reply)
                reply.state_path = path
                return reply
            break
        raise RuntimeError(f"the securehub parent sent an unexpected {frame.type!r} reply to a nested torch.hub.load")

    @staticmethod
    def _result(meta: dict[str, Any], reply: _Reply) -> None:
        trusted, strategies = meta.get("trusted_modules"), meta.get("strategies")
        if not (
            isinstance(trusted, list)
            and all(isinstance(t, str) for t in trusted)
            and isinstance(strategies, list)
            and all(s in m.NESTED_STRATEGIES for s in strategies)
        ):
            raise RuntimeError("the securehub parent sent a malformed nested_result")
        reply.config = m.parse_result_config({"config": meta.get("config")})
        reply.trusted_modules = tuple(trusted)
        reply.strategies = tuple(strategies)
