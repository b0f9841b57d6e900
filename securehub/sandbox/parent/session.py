"""The parent's side of one sandboxed hubconf call (SPEC sections 6 and 7).

:func:`run_in_sandbox` launches a confined child (:mod:`.spawn`), sends the
``call``, answers ``fetch`` requests through the caller's *broker*, and
admits the child's answer only after checking it (:mod:`.messages` schemas,
size caps, :func:`securehub.verify.safetensors_check.check_safetensors_result`).

Guarantees:

- nothing from the child is unpickled or executed; the config is JSON
  checked for shape, the state is a validated safetensors file;
- every frame is of a type the op allows and within that type's caps
  (:data:`.messages.CHILD_FRAME_LIMITS`: header and body size checked on the
  length prefix, JSON depth, item count and string size scanned before the
  header is parsed), at most ``_MAX_FRAMES`` per call; anything else is
  ``sandbox-protocol`` and the child is killed;
- the child's output (every frame body together) is capped at
  ``config.max_output_mb``; going over raises ``SandboxResource``;
- a ``load`` call's state body is received straight into its tensors
  (:func:`securehub.verify.fast_safetensors.receive_state`: header validated
  first, memory committed as bytes arrive, hashed and copied to the staging
  file on the way) and returned as ``SandboxResult.state``, so the parent
  never reads the file back;
- ``out_dir`` receives ``state.safetensors`` only after every check passed;
  on any failure it holds nothing this call wrote;
- when the function returns or raises, the child and everything it started
  are dead (``SandboxChild.close``).

Artifact hand-off. Landlock rules are fixed when the child confines itself,
but artifacts are asked for during the call. Granting read on the whole
artifact cache would let the child read every other cached artifact, and a
hard link inside the child's *writable* temp dir would let it modify or
chmod the cached inode. So each call gets its own hand-off directory,
outside the child's temp dir, created before launch and granted read-only;
verified artifacts are placed there as they are requested:

- as a hard link when the child achieved Landlock *and* seccomp (it can
  neither open the inode for writing nor change its mode) and the
  directory is on the same file system as the artifact;
- otherwise as a copy (mode 0444), so a less confined child can at worst
  spoil its own copy. The cache re-verifies digests on every load anyway.

The hand-off directory is removed when the call ends.

The digest recorded for each hand-over (``SandboxResult.fetched``) is the
digest of the placed file. When the broker answers with the digest it has
just verified (:class:`Verified`), the child is answered at once and the
placed file is hashed on a second thread while the child works; before the
call returns (or reports the child's error) every such hash must equal the
broker's (``hash-mismatch`` otherwise: the blob changed after it was
verified), so nothing built from a changed blob is ever returned. A plain
path is hashed before the child is answered.

Op ``convert`` (:func:`securehub.pipeline.convert.convert_in_sandbox`) uses the same
hand-off for the one checkpoint it converts: ``convert_file`` is placed in
the call's hand-off directory (link or copy, as above) before the ``call``
frame names it, so the child can read that file and nothing else of the
cache -- granting the file's own directory would expose every artifact next
to it. No hubconf is imported and no tree is granted. The answer is a
``converted`` frame: a :class:`.messages.ConvertLayout` (checked by
:func:`.messages.parse_convert`) and a safetensors body whose tensor names
must be exactly the ones the layout refers to.

Nested loads (SPEC section 6: "Nested torch.hub.load calls inside a hubconf
go through the same resolver, lock and policy"). The child's
``torch.hub.load`` sends a ``nested_load`` request; it is parsed strictly
(:meth:`.messages.NestedRequest.from_meta`) and handed to the caller's
*nested* callback, which performs a complete securehub load of the inner
repo (its own resolver, lock, policy, sandbox and validation) and returns a
:class:`NestedAnswer`. The session re-checks the answer (config schema,
safetensors layout) and streams it to the child (``nested_export`` and
``nested_result``), which rebuilds the inner module with the ``trusted`` or
``export`` strategy only. A ``SecureHubError`` from the callback is sent to
the child as an ``error`` reply and, if the entrypoint lets it through, the
call fails with that very exception (same mechanism as broker refusals).
Refused without asking the callback: any nested load when no callback was
given (``entrypoint-error``), one deeper than
:data:`.messages.MAX_NESTED_DEPTH` (``entrypoint-error``), and
``source="local"`` (``repo-not-allowed``: a path named by sandboxed code
means nothing trustworthy in the parent). The time a nested load takes counts
against the outer child's wall-clock limit (it waits for the answer).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import torch
from safetensors.torch import save

from securehub._util.deadline import time_left
from securehub._util.digest import file_sha256
from securehub._util.identity import FileIdentity
from securehub.config.lockfile import InputSpec
from securehub.errors import (
    EntrypointError,
    HashMismatch,
    RepoNotAllowed,
    SandboxProtocol,
    SandboxResource,
    SandboxTimeout,
    SecureHubError,
)
from securehub.sandbox.config import IsolationReport, SandboxConfig
from securehub.sandbox.parent.handoff import Broker, Verified
from securehub.sandbox.parent.prepared import PreparedChild
from securehub.sandbox.parent.spawn import DEFAULT_ENTRY, SandboxChild
from securehub.sandbox.wire import messages as m
from securehub.sandbox.wire.protocol import Fill, Frame
from securehub.verify.fast_safetensors import HashedState, ReceivedState, receive_state
from securehub.verify.safetensors_check import (
    MalformedSafetensors,
    SafetensorsHeader,
    check_safetensors_result,
    malformed_result,
)

__all__ = [
    "STATE_FILE_NAME",
    "Nested",
    "NestedAnswer",
    "NestedLoad",
    "SandboxResult",
    "run_in_sandbox",
]

STATE_FILE_NAME = "state.safetensors"


@dataclass(frozen=True)
class NestedAnswer:
    """What the *nested* callback returns for a nested load it performed and validated.

    ``state_path``: the nested load's validated safetensors state file (the
    callback's own :class:`SandboxResult.state_path`); it must stay in place
    until the callback's caller has sent it, so write it under the
    ``out_dir`` the callback is given. ``config``: the nested result's
    ``securehub-config/1`` document. ``export``: its exported program, or
    ``None``. ``fetched``: every ``(url, sha256)`` the nested load handed to
    its own child (including ITS nested loads: pass ``SandboxResult.all_fetched``).
    ``trusted_modules``/``strategies``: the policy's
    ``reconstruct.trusted_modules`` and ``reconstruct.strategies``; the child
    uses only ``trusted`` and ``export`` of them, never ``source``.
    """

    state_path: Path
    config: Mapping[str, Any]
    export: m.ExportInfo | None
    fetched: tuple[tuple[str, str], ...]
    trusted_modules: tuple[str, ...]
    strategies: tuple[str, ...]


#: Performs a nested load for the child: gets the parsed request and an empty
#: directory (``out_dir`` for the nested ``run_in_sandbox``; removed by the
#: session once the answer is sent) and returns a :class:`NestedAnswer`, or
#: raises a ``SecureHubError`` (which the child's entrypoint sees). Call the
#: nested ``run_in_sandbox`` with ``nested_depth=request.depth``.
Nested = Callable[[m.NestedRequest, Path], NestedAnswer]


@dataclass(frozen=True)
class NestedLoad:
    """A nested load whose model was handed to the child: the request and its artifacts."""

    request: m.NestedRequest
    fetched: tuple[tuple[str, str], ...]


_MB = 1024 * 1024
_MAX_FETCHES = 256
_MAX_NESTED_LOADS = 64
#: Every frame a child may send in one call: its requests, one export, one final frame.
_MAX_FRAMES = _MAX_FETCHES + _MAX_NESTED_LOADS + 2
_MAX_EXPORT_PROGRAM_BYTES = 512 * _MB
_UNBOUNDED_FRAME = 1 << 62  # result bodies: bounded by the output budget (SandboxResource), not per frame


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed call produced, after validation.

    ``state_path``: ``out_dir/state.safetensors`` (ops ``load`` and
    ``convert``), a well-formed safetensors file; its tensors are untrusted
    values. ``converted``: the checked layout of a ``convert`` (its tensor
    names are exactly those of ``state_path``), else ``None``.
    ``config``: the checked ``securehub-config/1`` document (op ``load``;
    ``{}`` otherwise) including ``aliases`` and maybe ``export_error``.
    ``names``/``doc``: for ``list``/``help``. ``export``: the exported
    program when asked for and the child produced one. ``fetched``: every
    artifact handed to this call's own child, as ``(url, sha256)``, in request
    order. ``nested``: every nested ``torch.hub.load`` whose model was handed
    to the child, in request order, with the artifacts that load used;
    :attr:`all_fetched` is ``fetched`` followed by those (what an audit line
    or auto-lock of the whole operation needs).
    """

    state_path: Path | None
    config: dict[str, Any]
    names: list[str] | None
    doc: str | None
    fetched: tuple[tuple[str, str], ...]
    isolation: IsolationReport
    export: m.ExportInfo | None = None
    nested: tuple[NestedLoad, ...] = ()
    converted: m.ConvertLayout | None = None
    #: The example inputs the child's search found (``find_inputs`` ``auto``/``hint``), bounds-checked
    #: like a user's ``--example-input``; ``None`` when no search ran or nothing fitted.
    found_inputs: tuple[InputSpec, ...] | None = None
    #: Op ``load``: the state as received -- its tensors (each owning its storage), each tensor's data
    #: sha256 and their state digest, and the identity of the file ``state_path`` holds -- so the parent
    #: never reads the file back.
    #: ``None`` for other ops (and from test runners that only write a file).
    state: HashedState | None = None

    @property
    def all_fetched(self) -> tuple[tuple[str, str], ...]:
        """``fetched``, then each nested load's artifacts (duplicates kept: each is one hand-over)."""
        return self.fetched + tuple(item for load in self.nested for item in load.fetched)


class _BudgetSink:
    """A file sink that raises ``SandboxResource`` once the call's output budget is spent."""

    def __init__(self, fh: BinaryIO, budget: list[int], cap_mb: int) -> None:
        self.fh = fh
        self.budget = budget
        self.cap_mb = cap_mb

    def write(self, data: bytes) -> int:
        if len(data) > self.budget[0]:
            raise SandboxResource(
                f"the sandbox child's output exceeds sandbox.max_output_mb ({self.cap_mb} MB); "
                "nothing it produced was kept. Raise the limit in the policy if the model is that large"
            )
        self.budget[0] -= len(data)
        return self.fh.write(data)


class _StateReceiver:
    """Receives a ``load`` call's ``result`` body straight into tensors (:func:`receive_state`).

    The body is also written, in order, to the frame's staging file (what
    ``state_path`` becomes), so the parent neither writes it from a stream
    buffer first nor reads it back. Only a body whose declared length fits the
    call's remaining output budget is taken; memory is committed as its bytes
    arrive (:func:`receive_state`), never for what the header merely declares.
    """

    def __init__(self, fd: int, budget: list[int], cap_mb: int) -> None:
        self.fd = fd
        self.budget = budget
        self.cap_mb = cap_mb
        self.received: ReceivedState | None = None
        self.written: FileIdentity | None = None

    def takes(self, ftype: str, body_len: int) -> bool:
        # A body over the remaining budget goes to the budgeted file sink, as before: it is refused
        # (``sandbox-resource``) once more than the budget actually arrived, ``sandbox-protocol`` if the
        # child stops sending first.
        return ftype == m.RESULT and 0 < body_len <= self.budget[0]

    def receive(self, ftype: str, body_len: int, fill: Fill) -> None:
        self.budget[0] -= body_len
        try:
            self.received = receive_state(fill, body_len, copy_fd=self.fd)
        except MalformedSafetensors as exc:
            raise malformed_result(exc) from exc
        self.written = FileIdentity.of(os.fstat(self.fd))


class _Session:
    def __init__(
        self,
        child: SandboxChild,
        broker: Broker,
        handoff: Path,
        staging: Path,
        cap_mb: int,
        nested: Nested | None = None,
        depth: int = 0,
    ) -> None:
        self.child = child
        self.broker = broker
        self.nested = nested
        self.depth = depth
        self.requests = 0  # fetch and nested_load requests share one index space
        self.fetch_requests = 0
        self.nested_requests = 0
        self.nested_loads: list[NestedLoad] = []
        self.handoff = handoff
        self.staging = staging
        self.cap_mb = cap_mb
        self.budget = [cap_mb * _MB]
        self.frames = 0
        self.fetched: list[tuple[str, str]] = []
        self.relayed: dict[int, SecureHubError] = {}
        #: hand-overs being hashed on a second thread: (url, the broker's digest, the placed file's digest)
        self.pending: list[tuple[str, str, Future[str]]] = []
        self._hasher: ThreadPoolExecutor | None = None
        #: The ``result`` body received into memory (op ``load``), with the identity of the file it was
        #: copied to, once that frame arrived.
        self.state: tuple[ReceivedState, FileIdentity] | None = None

    # -- receiving ------------------------------------------------------------------------

    def recv(self, op: m.Op) -> Frame:
        """Next frame; its body (if any) is in a staging file named in ``Frame.body_path``.

        Only the frame types ``op`` allows are accepted, each under its own
        caps (:func:`.messages.frame_limits_for`), and at most ``_MAX_FRAMES``
        per call; anything else is ``sandbox-protocol`` and kills the child.
        """
        if self.frames >= _MAX_FRAMES:
            raise SandboxProtocol(
                f"the sandbox child sent more than {_MAX_FRAMES} frames in one call; the child is hostile"
            )
        self.frames += 1
        path = self.staging / f"frame-{self.frames}"
        with path.open("xb", buffering=0) as fh:
            receiver = _StateReceiver(fh.fileno(), self.budget, self.cap_mb) if op == "load" else None
            frame = self.child.recv(
                max_body_bytes=_UNBOUNDED_FRAME,
                max_header_bytes=_UNBOUNDED_FRAME,
                body_sink=_BudgetSink(fh, self.budget, self.cap_mb),  # type: ignore[arg-type]
                limits=m.frame_limits_for(op),
                receiver=receiver,
            )
        if receiver is not None and receiver.received is not None and receiver.written is not None:
            self.state = (receiver.received, receiver.written)
        return Frame(frame.type, frame.meta, b"", frame.body_size, path)

    # -- fetch ----------------------------------------------------------------------------

    def answer_fetch(self, frame: Frame) -> None:
        if frame.body_size:
            raise SandboxProtocol("a 'fetch' frame must not carry a body")
        request = m.FetchRequest.from_meta(frame.meta, deadline=self.child.deadline)
        if self.fetch_requests >= _MAX_FETCHES:
            raise SandboxProtocol(f"the sandbox child asked for more than {_MAX_FETCHES} artifacts")
        self.fetch_requests += 1
        index = self.requests
        self.requests += 1
        try:
            answer = self.broker(request)
        except SecureHubError as exc:
            self._within_deadline("the artifact it asked for")
            self.relayed[index] = exc
            self.child.send(m.ERROR, {"code": exc.code, "message": exc.message})
            return
        self._within_deadline("the artifact it asked for")
        if isinstance(answer, Verified):
            # Answer now; the placed file is hashed while the child works and checked in settle().
            handed = self._place(answer.path, index)
            if self._hasher is None:
                self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="securehub-handoff")
            self.pending.append((request.url, answer.sha256, self._hasher.submit(file_sha256, handed)))
            digest = answer.sha256
        else:
            handed, digest = self._hand_over(answer, index)
        self.fetched.append((request.url, digest))
        self.child.send(m.FETCHED, {"path": str(handed), "sha256": digest})

    def settle(self) -> None:
        """Wait for the hand-overs hashed in the background; ``HashMismatch`` if one differs from its broker's.

        Called before the call's result (or the child's error) is reported: an
        artifact that changed between the broker's check and the hand-over
        decides the outcome, never a result built from it.
        """
        for url, expected, future in self.pending:
            found = future.result()
            if found != expected:
                raise HashMismatch(
                    f"the artifact {url} handed to the sandbox has sha256 {found}, expected {expected} (what the "
                    "broker had just verified): the cached blob changed after it was verified. Nothing built "
                    "from it is used; run `securehub cache verify`."
                )

    def close(self) -> None:
        """Stop the background hasher (waits for a hash in progress)."""
        if self._hasher is not None:
            self._hasher.shutdown(wait=True, cancel_futures=True)

    # -- nested_load ----------------------------------------------------------------------

    def answer_nested(self, frame: Frame) -> None:
        """Answer one ``nested_load``: the nested model, or an ``error`` the child may relay."""
        if frame.body_size:
            raise SandboxProtocol("a 'nested_load' frame must not carry a body")
        request = m.NestedRequest.from_meta(frame.meta, depth=self.depth + 1, deadline=self.child.deadline)
        if self.nested_requests >= _MAX_NESTED_LOADS:
            raise SandboxProtocol(f"the sandbox child asked for more than {_MAX_NESTED_LOADS} nested loads")
        self.nested_requests += 1
        index = self.requests
        self.requests += 1
        work = self.staging / f"nested-{index:04d}"
        work.mkdir()
        try:
            try:
                answer = self._ask_nested(request, work)
            except SecureHubError as exc:
                self._within_deadline("the nested torch.hub.load it asked for")
                self.relayed[index] = exc
                self.child.send(m.ERROR, {"code": exc.code, "message": exc.message})
                return
            self._within_deadline("the nested torch.hub.load it asked for")
            config = _check_answer(answer)
            if answer.export is not None:
                self.child.send(m.NESTED_EXPORT, answer.export.to_meta(), answer.export.program_json)
            meta = {
                "config": config,
                "trusted_modules": list(answer.trusted_modules),
                "strategies": [s for s in answer.strategies if s in m.NESTED_STRATEGIES],
            }
            self.child.send_file(m.NESTED_RESULT, meta, answer.state_path)
            self.nested_loads.append(NestedLoad(request, tuple(answer.fetched)))
        finally:
            shutil.rmtree(work, ignore_errors=False)

    def _within_deadline(self, what: str) -> None:
        """``SandboxTimeout`` (the child killed) when the child's deadline passed while the parent did ``what``.

        The work itself is bounded by the deadline each request carries (red team 5); this makes the
        outcome the parent's own decision, whatever the child managed to send in the meantime.
        """
        try:
            time_left(self.child.deadline, what)
        except SandboxTimeout as exc:
            raise self.child.expire(exc) from None

    def _ask_nested(self, request: m.NestedRequest, work: Path) -> NestedAnswer:
        """The callback's answer, or the refusal the session decides on its own."""
        if self.nested is None:
            raise EntrypointError(
                f"nested torch.hub.load is not available here: the hubconf asked for "
                f"{request.repo_or_dir!r}, {request.model!r}, but this sandboxed call was started without "
                "nested-load support; load the inner model with securehub.load in your own code instead"
            )
        if request.depth > m.MAX_NESTED_DEPTH:
            raise EntrypointError(
                f"nested torch.hub.load of {request.repo_or_dir!r}, {request.model!r} would be nesting level "
                f"{request.depth}; at most {m.MAX_NESTED_DEPTH} levels of torch.hub.load inside hubconf "
                "entrypoints are allowed (a repository that loads itself recursively?). Load the inner models "
                "yourself with securehub.load"
            )
        if request.source == "local":
            raise RepoNotAllowed(
                f"the hubconf asked for a nested torch.hub.load of the local directory {request.repo_or_dir!r}; "
                "sandboxed code may not name local directories for the parent to load. Expected a git repo "
                "spec (owner/repo:tag or git+https://...@tag); load local models yourself with securehub.load"
            )
        answer = self.nested(request, work)
        if not isinstance(answer, NestedAnswer):
            raise TypeError(f"the nested callback must return a NestedAnswer, got {type(answer).__name__}")
        return answer

    def _hand_over(self, source: Path, index: int) -> tuple[Path, str]:
        dest = self._place(source, index)
        return dest, file_sha256(dest)

    def _place(self, source: Path, index: int) -> Path:
        """Link (fully confined child) or copy ``source`` into the hand-off directory."""
        dest = self.handoff / f"{index:04d}-{_safe_name(source.name)}"
        iso = self.child.isolation
        confined = iso is not None and iso.landlock_abi is not None and iso.seccomp
        if confined:
            try:
                os.link(source, dest)
            except OSError:
                confined = False  # other file system, or links refused: fall back to a copy
        if not confined:
            shutil.copyfile(source, dest)
            dest.chmod(0o444)
        return dest


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in name)
    return cleaned.lstrip(".")[:100] or "artifact"


def _example_inputs_body(example_inputs: Sequence[torch.Tensor] | None) -> bytes:
    if example_inputs is None:
        return b""

    tensors: dict[str, torch.Tensor] = {}
    for i, t in enumerate(example_inputs):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"example_inputs[{i}] must be a torch.Tensor, got {type(t).__name__}")
        tensors[str(i)] = t.detach().to("cpu").contiguous()
    return bytes(save(tensors))


def _check_state(path: Path, config: Mapping[str, Any]) -> set[str]:
    return _check_aliases(check_safetensors_result(path), config)


def _check_aliases(header: SafetensorsHeader, config: Mapping[str, Any]) -> set[str]:
    """The stored tensor names; ``sandbox-protocol`` unless every alias names one stored tensor (and none is one)."""
    names = {t.name for t in header.tensors}
    for alias, target in config["aliases"].items():
        if not isinstance(alias, str) or target not in names or alias in names:
            raise SandboxProtocol(
                f"result alias {m.sanitize_text(str(alias), limit=120)!r} -> "
                f"{m.sanitize_text(str(target), limit=120)!r} does not name one stored tensor"
            )
    return names


def _check_answer(answer: NestedAnswer) -> dict[str, Any]:
    """Re-check what the callback returned before it goes to the child (defence in depth).

    The callback's nested ``run_in_sandbox`` validated it already; a failure
    here is a bug in the parent, so it fails the whole call (never relayed).
    """
    if not answer.state_path.is_file():
        raise ValueError(f"the nested callback's state_path {answer.state_path} is not a file")
    config = m.parse_result_config({"config": dict(answer.config)})
    names = _check_state(answer.state_path, config)
    if answer.export is not None:
        missing = sorted((set(answer.export.state.values()) | set(answer.export.constants.values())) - names)
        if missing:
            raise ValueError(f"the nested exported program refers to tensors its state file lacks: {missing[:5]}")
    for item in answer.fetched:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            raise TypeError(f"NestedAnswer.fetched must hold (url, sha256) string pairs, got {item!r}")
    for name in (*answer.trusted_modules, *answer.strategies):
        if not isinstance(name, str):
            raise TypeError(f"NestedAnswer.trusted_modules/strategies must be strings, got {name!r}")
    return config


def _read_small(path: Path | None, limit: int, what: str) -> bytes:
    if path is None:
        return b""
    size = path.stat().st_size
    if size > limit:
        raise SandboxResource(f"{what} from the sandbox child is {size} bytes; the cap is {limit}")
    return path.read_bytes()


def _check_converted(frame: Frame) -> m.ConvertLayout:
    """A ``converted`` frame: its layout, and a body whose tensors are exactly the ones the layout names."""
    layout = m.parse_convert(frame.meta)
    assert frame.body_path is not None  # noqa: S101 - recv always names the staging file
    header = check_safetensors_result(frame.body_path, name="the converted checkpoint")
    names = {t.name for t in header.tensors}
    if names != layout.tensor_names:
        odd = sorted(names ^ layout.tensor_names)[:5]
        raise SandboxProtocol(
            "the converted checkpoint's tensors do not match its layout (stored but unreferenced, or referenced "
            f"but missing: {[m.sanitize_text(n, limit=80) for n in odd]}); the sandbox child is broken or hostile"
        )
    return layout


_Answer = tuple[
    Path | None,
    dict[str, Any],
    list[str] | None,
    str | None,
    m.ExportInfo | None,
    m.ConvertLayout | None,
    tuple[InputSpec, ...] | None,
    HashedState | None,
]


def _converse(
    session: _Session,
    op: Literal["load", "list", "help", "convert"],
    out_dir: Path,
    find_inputs: m.FindInputs = "off",
    want_export: bool = False,
) -> _Answer:
    # An ``export`` frame is admitted only when this call asked for one (``want_export``): a child that
    # sends a program unasked (no example inputs, or a ``hint`` search) would otherwise choose the export
    # strategy, and with it forward(), for a load whose caller and hub.lock gave no inputs, so no output
    # pin ever compares that program (red team 4). Anything else is the catch-all ``sandbox-protocol``.
    export: m.ExportInfo | None = None
    while True:
        frame = session.recv(op)
        if frame.type == m.FETCH and op == "load":
            session.answer_fetch(frame)
            continue
        if frame.type == m.NESTED_LOAD and op == "load":
            session.answer_nested(frame)
            continue
        if frame.type == m.ERROR:
            if frame.body_size:
                raise SandboxProtocol("an 'error' frame must not carry a body")
            allowed = m.CONVERT_ERROR_CODES if op == "convert" else m.CHILD_ERROR_CODES
            raise m.parse_error(frame.meta, session.relayed, allowed)
        if frame.type == m.NAMES and op == "list" and not frame.body_size:
            return None, {}, m.parse_names(frame.meta), None, None, None, None, None
        if frame.type == m.DOC and op == "help" and not frame.body_size:
            return None, {}, None, m.parse_doc(frame.meta), None, None, None, None
        if frame.type == m.CONVERTED and op == "convert":
            layout = _check_converted(frame)
            assert frame.body_path is not None  # noqa: S101 - checked by _check_converted
            final = out_dir / STATE_FILE_NAME
            frame.body_path.replace(final)
            return final, {}, None, None, None, layout, None, None
        if frame.type == m.EXPORT and op == "load" and want_export and export is None:
            body = _read_small(frame.body_path, _MAX_EXPORT_PROGRAM_BYTES, "the exported program")
            export = m.parse_export(frame.meta, body)
            continue
        if frame.type == m.RESULT and op == "load":
            config = m.parse_result_config(frame.meta)
            found = m.parse_found_inputs(frame.meta, find_inputs)
            assert frame.body_path is not None  # noqa: S101 - recv always names the staging file
            received = session.state
            if received is None:  # an empty body: no receiver took it
                names = _check_state(frame.body_path, config)
            else:
                names = _check_aliases(received[0].header, config)
            if export is not None:
                missing = sorted((set(export.state.values()) | set(export.constants.values())) - names)
                if missing:
                    raise SandboxProtocol(f"the exported program refers to tensors the state file lacks: {missing[:5]}")
            stray = m.unreferenced_export_keys(names, export)
            if stray:
                raise SandboxProtocol(
                    f"the state file holds {len(stray)} tensors under the export prefixes that no exported "
                    f"program maps (e.g. {m.sanitize_text(stray[0], limit=120)!r}); expected only the program's "
                    "own tensors there. The child's output was discarded; the entrypoint may be hostile or broken"
                )
            final = out_dir / STATE_FILE_NAME
            frame.body_path.replace(final)
            state = _moved_state(final, *received) if received is not None else None
            return final, config, None, None, export, None, found, state
        raise SandboxProtocol(
            f"unexpected {m.sanitize_text(frame.type, limit=64)!r} frame from the sandbox child "
            f"during a {op!r} call; the child is broken or hostile"
        )


def _moved_state(final: Path, received: ReceivedState, written: FileIdentity) -> HashedState:
    """The received state, with the identity ``final`` has after the rename (which changes only its ctime).

    ``HashMismatch`` when ``final`` is not the inode that was written, or its size or mtime moved since
    the last write: then its bytes may not be the ones received (and hashed).
    """
    now = FileIdentity.of(os.lstat(final))
    if (now.dev, now.ino, now.size, now.mtime_ns) != (written.dev, written.ino, written.size, written.mtime_ns):
        raise HashMismatch(
            f"{final}: expected the file the sandbox's result was just written to, found it replaced or "
            "changed; nothing from it is used. Something else writes the cache's tmp/ directory"
        )
    return HashedState(received.tensors, now, received.tensor_sha256, received.state_digest)


def _converse_settled(
    session: _Session,
    op: Literal["load", "list", "help", "convert"],
    out_dir: Path,
    find_inputs: m.FindInputs,
    want_export: bool = False,
) -> _Answer:
    """:func:`_converse`, then every background hand-over check (:meth:`_Session.settle`).

    A blob that changed after the broker verified it is the error reported, also when the child
    failed on it; on that error ``out_dir`` keeps nothing (the state file the child sent is removed).
    """
    try:
        answer = _converse(session, op, out_dir, find_inputs, want_export)
    except SecureHubError:
        session.settle()
        raise
    try:
        session.settle()
    except SecureHubError:
        if answer[0] is not None:
            answer[0].unlink(missing_ok=True)
        raise
    return answer


def _hand_over_checkpoint(session: _Session, source: Path, sha256: str | None) -> Path:
    """Place the checkpoint to convert in the hand-off dir; check its digest there when one is given."""
    handed, digest = session._hand_over(source, 0)
    if sha256 is not None and digest != sha256.lower():
        raise HashMismatch(
            f"the checkpoint {source} handed to the sandbox has sha256 {digest}, expected {sha256}; "
            "it changed after it was verified. Nothing was converted; run `securehub cache verify`"
        )
    return handed


def run_in_sandbox(
    op: Literal["load", "list", "help", "convert"],
    tree: Path | None,
    entrypoint: str | None,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    config: SandboxConfig,
    broker: Broker,
    example_inputs: Sequence[torch.Tensor] | None = None,
    want_export: bool = False,
    out_dir: Path,
    entry: str = DEFAULT_ENTRY,
    probe_file: Path | None = None,
    nested: Nested | None = None,
    nested_depth: int = 0,
    convert_file: Path | None = None,
    convert_sha256: str | None = None,
    find_inputs: m.FindInputs = "off",
    prepared: PreparedChild | None = None,
) -> SandboxResult:
    """Run ``op`` on the hubconf in ``tree`` inside a confined child; see the module docstring.

    ``args``/``kwargs`` must be JSON values (``TypeError`` otherwise).
    ``out_dir`` must exist and must not already hold ``state.safetensors``.
    ``entry`` and ``probe_file`` are for tests (see :func:`.spawn.launch`).
    ``nested`` performs nested ``torch.hub.load`` calls of the hubconf (see
    the module docstring; without it they are refused with
    ``entrypoint-error``); ``nested_depth`` is how deeply nested this call
    itself is (0 for the user's own load; a callback passes
    ``request.depth``). ``find_inputs`` (op ``load``, no ``example_inputs``):
    ask the child to search for example inputs (see :data:`.messages.FindInputs`);
    what it reports is checked and returned as ``SandboxResult.found_inputs``.
    ``prepared``: a child started ahead for exactly this ``tree``, ``config``,
    ``entry`` and ``probe_file`` (:class:`.prepared.PreparedChild`, else
    ``ValueError``); this call takes it over and it is dead when the call
    returns or raises. Without it a child is launched here.
    Op ``convert`` converts the checkpoint ``convert_file`` (a verified
    artifact; see the module docstring): ``tree`` and ``entrypoint`` must be
    ``None`` and ``args``/``kwargs`` empty; with ``convert_sha256`` the file
    handed to the child must have that digest (``hash-mismatch`` otherwise,
    before the child sees it). It raises ``format-not-allowed`` or
    ``sandbox-violation`` as the child reports them, the ``sandbox-*`` codes
    below, and ``sandbox-protocol`` for anything malformed.
    Raises ``SecureHubError`` subclasses: whatever the child legitimately
    reports (``entrypoint-error``, ``entrypoint-not-found``,
    ``dependency-missing``, ``sandbox-violation``, ``reconstruct-refused``),
    a broker error the entrypoint let through (the broker's own exception),
    ``sandbox-timeout``/``sandbox-resource`` on limits, ``sandbox-unavailable``,
    and ``sandbox-protocol`` for anything malformed.
    """
    if op not in ("load", "list", "help", "convert"):
        raise ValueError(f"op must be 'load', 'list', 'help' or 'convert', got {op!r}")
    if op in ("load", "help") and not isinstance(entrypoint, str):
        raise TypeError("entrypoint must be a string for 'load' and 'help'")
    if not isinstance(nested_depth, int) or isinstance(nested_depth, bool) or nested_depth < 0:
        raise ValueError(f"nested_depth must be a non-negative int, got {nested_depth!r}")
    if op == "convert":
        if tree is not None or entrypoint is not None or args or kwargs or example_inputs is not None or want_export:
            raise ValueError("op 'convert' takes only convert_file: tree/entrypoint None, no args or example_inputs")
        if convert_file is None or not convert_file.is_file():
            raise ValueError(f"op 'convert' needs convert_file to be an existing file, got {convert_file!r}")
    elif convert_file is not None or convert_sha256 is not None or tree is None:
        raise ValueError(f"op {op!r} needs a tree and takes no convert_file/convert_sha256")
    if find_inputs not in m.FIND_INPUTS_MODES or (
        find_inputs != "off" and (op != "load" or example_inputs is not None)
    ):
        raise ValueError(
            f"find_inputs must be one of {m.FIND_INPUTS_MODES} (not 'off' only for a load without "
            f"example_inputs), got {find_inputs!r}"
        )
    resolved = tree.resolve() if tree is not None else None
    if not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} must be an existing directory")
    if (out_dir / STATE_FILE_NAME).exists():
        raise ValueError(f"{out_dir / STATE_FILE_NAME} already exists; give each call its own out_dir")
    body = _example_inputs_body(example_inputs)
    call = m.CallRequest(
        op=op,
        tree=str(resolved) if resolved is not None else "",
        entrypoint=entrypoint,
        args=tuple(args),
        kwargs=dict(kwargs),
        want_export=want_export,
        has_example_inputs=example_inputs is not None,
        network_allowed=config.network == "allow",
        filesystem_open=config.filesystem == "open",
        find_inputs=find_inputs,
        export_sizes=config.export_sizes,
    )
    call_meta = call.to_meta()
    try:
        json.dumps(call_meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"entrypoint args/kwargs must be JSON values: {exc}") from exc

    if prepared is not None and not prepared.matches(resolved, config, entry, probe_file):
        prepared.close()
        raise ValueError("the prepared sandbox child was launched for another tree, configuration or entry")
    staging = Path(tempfile.mkdtemp(prefix=".securehub-incoming-", dir=out_dir))
    try:
        if prepared is None:
            prepared = PreparedChild(
                resolved,
                config,
                entry=entry,
                probe_file=probe_file,
                hold=False,
                warm_export=want_export or find_inputs != "off",
            )
        handoff = prepared.handoff
        with prepared.take() as child:
            assert child.isolation is not None  # noqa: S101 - launch() sets it before returning
            if prepared.held:
                child.rearm_deadline()  # its timeout_s starts with the call, not while it waited for it
            session = _Session(child, broker, handoff, staging, config.max_output_mb, nested, nested_depth)
            try:
                if convert_file is not None:
                    call_meta["file"] = str(_hand_over_checkpoint(session, convert_file, convert_sha256))
                child.send(m.CALL, call_meta, body)
                answer = _converse_settled(session, op, out_dir, find_inputs, want_export)
            finally:
                session.close()
            state_path, cfg, names, doc, export, converted, found, state = answer
            return SandboxResult(
                state_path=state_path,
                config=cfg,
                names=names,
                doc=doc,
                fetched=tuple(session.fetched),
                isolation=child.isolation,
                export=export,
                nested=tuple(session.nested_loads),
                converted=converted,
                found_inputs=found,
                state=state,
            )
    finally:
        shutil.rmtree(staging, ignore_errors=False)
        if prepared is not None:
            prepared.close()  # the hand-off directory (the child is dead already: one call per child)
