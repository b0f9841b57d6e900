"""Start, watch and kill the confined child.

:func:`launch` runs ``python -s -P -S -B securehub/sandbox/child/bootstrap.py <plan>``
with ``subprocess.Popen`` (no ``preexec_fn``: it can deadlock when another
thread holds a lock, and the bootstrap confines itself instead), only the
channel fd inherited, a new session, a scrubbed environment and stdout/stderr
going to files in the parent-side run directory (never pipes a daemon could
hold open). It then reads the bootstrap's ``ready`` frame, re-derives the
isolation level from the reported mechanisms, and either answers "go" (one
byte, ``G``) or kills the child and raises ``SandboxUnavailable``. Only after
"go" does the child import site-packages and run the entry.

Run directory (``config.tmp_parent`` or the system temp dir)::

    securehub-sandbox-XXXXXXXX/    0700, removed on exit
      child/                      SandboxChild.tmpdir: the only writable place
        home/ tmp/                HOME and TMPDIR of the child
      stdout  stderr              the child's output (read back capped)

Guarantees of :class:`SandboxChild`:

- a watchdog thread SIGKILLs the child's process group at ``deadline``
  (``timeout_s`` after launch, or after the call of a child started ahead:
  :meth:`SandboxChild.hold_deadline`) even if the parent is busy elsewhere;
- leaving the ``with`` block kills the child, reaps it (``wait4``) and
  removes the run directory; with the seccomp filter the child cannot fork,
  so "the child is dead" means "the whole tree is dead";
- the child also dies with the *thread* that called :func:`launch`
  (``PR_SET_PDEATHSIG``): call it from a thread that outlives the child.

Known limits: under ``isolation: best-effort`` without seccomp the child can
fork, and a grandchild that calls ``setsid`` escapes the process-group kill
(only ``require`` guarantees the whole tree dies). Disk use is capped per
file (``RLIMIT_FSIZE``), not in total. ``stat()`` of paths outside the
allowed trees is not prevented (Landlock does not mediate it), so the child
can learn whether a path exists, not its content.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import site
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from securehub._util.text import one_line
from securehub.errors import (
    SandboxError,
    SandboxProtocol,
    SandboxResource,
    SandboxTimeout,
    SandboxUnavailable,
    SandboxViolation,
)
from securehub.sandbox._isolation import detect
from securehub.sandbox.config import (
    EXIT_CONFINE_FAILED,
    EXIT_ENTRY_FAILED,
    EXIT_MEMORY,
    IsolationReport,
    SandboxConfig,
)
from securehub.sandbox.parent import forkserver
from securehub.sandbox.parent.cleanup import CleanupError, remove_tree
from securehub.sandbox.parent.diskwatch import DiskWatch
from securehub.sandbox.parent.env import python_flags, scrubbed_env
from securehub.sandbox.parent.process import ChildProcess, ForkedProcess, SpawnedProcess
from securehub.sandbox.wire.protocol import (
    SEND_FLAGS,
    BodyReceiver,
    ChannelClosed,
    Frame,
    FrameLimits,
    expect,
    recv_frame,
    recv_frame_to_file,
    send_frame,
    send_frame_file,
)

__all__ = [
    "DEFAULT_ENTRY",
    "ExitInfo",
    "IsolationDegradedWarning",
    "SandboxChild",
    "SandboxCleanupWarning",
    "check_available",
    "launch",
    "python_read_paths",
]

DEFAULT_ENTRY = "securehub.sandbox.child.runtime:main"
_BOOTSTRAP = Path(__file__).parents[1] / "child" / "bootstrap.py"
_MB = 1024 * 1024
_READY_HEADER_CAP = 64 * 1024
_READY_LIMITS = FrameLimits(header_bytes=_READY_HEADER_CAP, max_items=256, max_str_bytes=4096, max_depth=3)
_EXIT_GRACE_S = 2.0
_NAMESPACE_END_S = 10.0


class IsolationDegradedWarning(RuntimeWarning):
    """``isolation: best-effort`` ran the child with some mechanisms missing."""


def check_available(config: SandboxConfig) -> IsolationReport:
    """What the kernel offers for ``config``, probed without starting a child or confining the caller."""
    o = detect.offered(config.disable_mechanisms)
    abi = o["landlock"]
    return IsolationReport.build(
        config.required_mechanisms(),
        netns=bool(o["netns"]),
        userns=bool(o["userns"]),
        landlock_abi=abi if isinstance(abi, int) and not isinstance(abi, bool) else None,
        seccomp=bool(o["seccomp"]),
        no_new_privs=bool(o["no_new_privs"]),
        rlimits=bool(o["rlimits"]),
        caps=bool(o["caps"]),
        pidns=bool(o["pidns"]),
        uid=bool(o["uid"]),
    )


def _unavailable(report: IsolationReport, when: str, problems: tuple[str, ...] = ()) -> SandboxUnavailable:
    detail = f" ({'; '.join(problems)})" if problems else ""
    return SandboxUnavailable(
        f"sandbox isolation {when} is {report.level!r}: missing {', '.join(report.missing)}{detail}; "
        "the policy requires full isolation (sandbox.isolation: require). Enable these kernel features "
        "(user and PID namespaces, Landlock, seccomp; a distinct child uid needs root), or set "
        "sandbox.isolation: best-effort in the policy to run with reduced isolation (recorded in the audit log)"
    )


def python_read_paths() -> tuple[str, ...]:
    """Directories the child needs to run this interpreter and import installed packages.

    The prefixes of the installation and the virtualenv, site-packages, the
    directories ``.pth`` files add, and the securehub package itself (which
    may be installed editable). Not the current directory, not ``/root``.
    """
    paths: list[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    if sys.executable:
        paths.append(str(Path(sys.executable).resolve().parent))
    site_dirs = list(site.getsitepackages())
    paths += site_dirs
    for sp in site_dirs:
        sp_path = Path(sp)
        if not sp_path.is_dir():
            continue
        for pth in sorted(sp_path.glob("*.pth")):
            for line in pth.read_text(encoding="utf-8", errors="replace").splitlines():
                entry = line.strip()
                if entry and not entry.startswith(("#", "import ", "import\t")) and Path(entry).is_absolute():
                    paths.append(entry)
    paths.append(str(Path(__file__).resolve().parents[2]))
    out: list[str] = []
    for p in paths:
        for candidate in (p, os.path.realpath(p)):
            if candidate and Path(candidate).exists() and candidate not in out:
                out.append(candidate)
    return tuple(out)


def _needs_read_search(paths: list[str]) -> bool:
    """True when a directory above one of ``paths`` is not searchable by "others".

    The child then runs as outside uid 65534 and cannot reach the Python
    installation (pyenv below /root, mode 0700) without CAP_DAC_READ_SEARCH,
    which it keeps inside its own user namespace only in that case.
    """
    for p in paths:
        for d in Path(p).parents:
            try:
                if not d.stat().st_mode & stat.S_IXOTH:
                    return True
            except OSError:
                return True
    return False


@dataclass(frozen=True)
class ExitInfo:
    """How the child ended.

    ``returncode``: exit status, or ``None`` when killed by a signal (``signal``).
    ``cpu_s``: user+system CPU seconds it used. ``timed_out``: the parent's
    wall-clock deadline killed it. ``killed``: the parent killed it for another
    reason (protocol error, cleanup).
    """

    returncode: int | None
    signal: int | None
    cpu_s: float
    timed_out: bool
    killed: bool

    def describe(self) -> str:
        """Human-readable summary ("exit status 3", "signal SIGKILL")."""
        if self.signal is not None:
            return f"signal {signal.Signals(self.signal).name}"
        return f"exit status {self.returncode}"


class SandboxCleanupWarning(RuntimeWarning):
    """The run directory of a finished child could not be removed (the message names the path)."""


def _rmtree(path: Path) -> None:
    """Remove a run dir (see :mod:`.cleanup`); a failure is a warning naming the path, never silent."""
    try:
        remove_tree(path)
    except CleanupError as exc:
        # exc.filename may name a directory the child created (any bytes but '/' and NUL): sanitised
        # (red team 11; a warning is printed to the terminal as it is).
        warnings.warn(
            f"could not remove the sandbox run directory {one_line(str(exc.filename))}: {exc.strerror}; "
            f"delete {one_line(str(path))} by hand",
            SandboxCleanupWarning,
            stacklevel=3,
        )


class SandboxChild:
    """A running, confined child. Use as a context manager; see the module docstring."""

    def __init__(
        self,
        *,
        config: SandboxConfig,
        process: ChildProcess,
        channel: socket.socket,
        run_dir: Path,
        deadline: float,
    ) -> None:
        self.config = config
        self.channel = channel
        self.run_dir = run_dir
        self.tmpdir = run_dir / "child"
        self.stdout_path = run_dir / "stdout"
        self.stderr_path = run_dir / "stderr"
        self.deadline = deadline
        self.pid = process.pid
        self.isolation: IsolationReport | None = None
        self.problems: tuple[str, ...] = ()
        #: Outside pid of the child's PID-namespace init (set by the handshake).
        self.init_pid: int | None = None
        #: Outside pid of the process running the entry (set by the handshake).
        self.worker_pid: int | None = None
        self._init_pidfd: int | None = None
        #: True once the child was told "go": from then on repository code may run, and no exit
        #: status of the child is the trusted bootstrap's word any more (see :meth:`error_for_exit`).
        self.started = False
        self._process = process
        self._lock = threading.Lock()
        self._exit: ExitInfo | None = None
        self._timed_out = False
        self._killed = False
        self._closed = False
        self._watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), self._on_deadline)
        self._watchdog.daemon = True
        self._watchdog.start()
        #: max_file_mb bounds each file (RLIMIT_FSIZE); this bounds the temp dir as a whole (red team 15).
        self._disk = DiskWatch(self.tmpdir, config.max_file_mb * _MB, self._on_disk_breach)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> SandboxChild:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill the child (if alive), reap it, close the channel, remove the run dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._watchdog.cancel()
        self._disk.stop()
        with contextlib.suppress(OSError):
            self.channel.close()
        self.kill_tree()
        self._await_namespace_end()
        _rmtree(self.run_dir)

    def _await_namespace_end(self) -> None:
        """Kill the namespace's init and wait until it has exited (so has everything in it).

        The bootstrap reaps the init before it exits normally; this covers
        the supervisor being SIGKILLed first. A pid-1 exit completes only after
        the kernel has killed and reaped every other process of its namespace,
        which is when its pidfd turns readable.
        """
        with self._lock:
            fd, self._init_pidfd = self._init_pidfd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(int(_NAMESPACE_END_S * 1000)):
                warnings.warn(
                    f"the sandbox child's PID namespace (init pid {self.init_pid}) did not end within "
                    f"{_NAMESPACE_END_S:g} s of SIGKILL",
                    SandboxCleanupWarning,
                    stacklevel=3,
                )
        finally:
            os.close(fd)

    def hold_deadline(self) -> None:
        """Stop the wall-clock watchdog while a child started ahead waits for its call.

        Such a child has run only the trusted bootstrap and ``import torch``
        and blocks reading its ``call`` frame; no repository code runs before
        :meth:`rearm_deadline`. Its owner (:class:`.prepared.PreparedChild`)
        kills it if the call never comes.
        """
        with self._lock:
            self._watchdog.cancel()

    def rearm_deadline(self) -> None:
        """Start the wall-clock limit (``timeout_s``) now: called just before a held child's ``call`` is sent."""
        with self._lock:
            self._watchdog.cancel()
            if self._exit is not None or self._closed:
                return
            self.deadline = time.monotonic() + self.config.timeout_s
            self._watchdog = threading.Timer(self.config.timeout_s, self._on_deadline)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _on_disk_breach(self, reason: str) -> None:
        with self._lock:
            if self._exit is not None:
                return
        self.kill_tree()

    def _on_deadline(self) -> None:
        with self._lock:
            if self._exit is None:
                self._timed_out = True
        self.kill_tree()

    def _signal_group(self, sig: int) -> None:
        # Caller holds the lock and the child is not reaped, so its pid (and
        # process group id) cannot have been reused.
        self._process.signal_group(sig)

    def kill_tree(self) -> None:
        """SIGKILL the child's process group and reap the child. Returns when it is dead."""
        with self._lock:
            if self._exit is not None:
                return
            if not self._timed_out:
                self._killed = True
            self._signal_group(signal.SIGKILL)
        self.wait(None)

    def _reap(self) -> ExitInfo | None:
        with self._lock:
            if self._exit is not None:
                return self._exit
            ended = self._process.reap()
            if ended is None:
                return None
            self._process.release()
            status, cpu = ended
            if os.WIFSIGNALED(status):
                code, sig = None, os.WTERMSIG(status)
            else:
                code, sig = os.waitstatus_to_exitcode(status), None
            # Only a kill the parent issued *before* the child died counts as ours.
            killed_by_us = sig == signal.SIGKILL
            self._exit = ExitInfo(
                returncode=code,
                signal=sig,
                cpu_s=cpu,
                timed_out=self._timed_out and killed_by_us,
                killed=self._killed and killed_by_us,
            )
            return self._exit

    def wait(self, timeout: float | None) -> ExitInfo | None:
        """Wait up to ``timeout`` seconds (``None``: forever) for the child to exit.

        Returns its :class:`ExitInfo`, or ``None`` if it is still running.
        Does not kill it.
        """
        end = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            info = self._reap()
            if info is not None:
                return info
            if end is not None and time.monotonic() >= end:
                return None
            time.sleep(delay if end is None else min(delay, max(0.0, end - time.monotonic())))
            delay = min(delay * 2, 0.05)

    def exit_info(self) -> ExitInfo | None:
        """How the child ended, or ``None`` while it runs (non-blocking)."""
        return self._reap()

    # ------------------------------------------------------------------ errors

    def error_for_exit(self, info: ExitInfo) -> SandboxError | None:
        """The error an exit means: timeout, resource, violation, or ``None`` for status 0."""
        cfg = self.config
        if info.killed and self._disk.breach is not None:
            return SandboxResource(
                f"the sandbox child wrote {self._disk.breach} into its temp dir (sandbox.max_file_mb: "
                f"{cfg.max_file_mb} MiB bounds each file and the temp dir as a whole) and was killed; raise "
                "sandbox.max_file_mb in the policy if the entrypoint legitimately writes that much"
            )
        if info.timed_out:
            return SandboxTimeout(
                f"the sandbox child ran past the wall-clock limit of {cfg.timeout_s:g} s and was killed; "
                "raise sandbox.timeout_s in the policy if the entrypoint legitimately needs longer"
            )
        if info.signal == signal.SIGXCPU or (
            info.signal == signal.SIGKILL and not info.killed and info.cpu_s >= cfg.cpu_s
        ):
            return SandboxResource(
                f"the sandbox child used its CPU limit of {cfg.cpu_s} s (used {info.cpu_s:.1f} s) and was "
                "killed; raise sandbox.cpu_s in the policy if the entrypoint legitimately needs more"
            )
        if info.returncode == EXIT_MEMORY:
            return SandboxResource(
                f"the sandbox child ran out of memory (limit {cfg.memory_mb} MB of address space); "
                "raise sandbox.memory_mb in the policy if the model legitimately needs more"
            )
        if info.signal == signal.SIGKILL and not info.killed:
            return SandboxResource(
                "the sandbox child was killed by SIGKILL from outside the parent (most likely the kernel's "
                "out-of-memory killer); free memory or lower the model's needs"
            )
        if info.signal == signal.SIGSYS:
            return SandboxViolation(
                "the sandbox child made a system call the seccomp filter kills on (foreign architecture or "
                "x32 ABI); the repository's code is hostile or broken"
            )
        # Status 85 is the bootstrap's "could not confine" only before "go"; afterwards repository code
        # chose it (os._exit(85)) to present its own stderr as the machine's missing isolation, under a
        # code no child may report (red team 5). It is then an early exit like any other.
        if info.returncode == EXIT_CONFINE_FAILED and not self.started:
            return SandboxUnavailable(
                f"the sandbox child could not confine itself: {self.stderr_tail(2000).strip()!r}; "
                "see the isolation requirements in the docs"
            )
        if info.returncode == 0:
            return None
        why = "an uncaught exception" if info.returncode == EXIT_ENTRY_FAILED else info.describe()
        if info.killed:
            why = f"{why} (killed by the parent)"
        return SandboxProtocol(
            f"the sandbox child exited early with {why}; expected it to finish the exchange. "
            f"Its last output: {self.stderr_tail(2000).strip()!r}"
        )

    def expire(self, exc: SandboxTimeout) -> SandboxError:
        """The child's deadline passed while the parent worked for it: kill it as the watchdog would; the error."""
        return self._after_channel_error(exc)

    def _after_channel_error(self, exc: SandboxError) -> SandboxError:
        """Kill/reap after a channel failure and pick the most precise error."""
        if isinstance(exc, ChannelClosed):
            info = self.wait(_EXIT_GRACE_S)
            if info is None:
                self.kill_tree()
                info = self.wait(None)
            assert info is not None  # noqa: S101 - wait(None) returns only once reaped
            err = self.error_for_exit(info)
            return err if err is not None else exc
        if isinstance(exc, SandboxTimeout):
            with self._lock:
                if self._exit is None:
                    self._timed_out = True
        self.kill_tree()
        info = self.exit_info()
        if info is not None and info.timed_out:
            return self.error_for_exit(info) or exc
        return exc

    # ------------------------------------------------------------------ channel

    def send(self, type: str, meta: Mapping[str, Any], body: bytes = b"") -> None:
        """Send a frame, bounded by the deadline. On failure the child is killed."""
        try:
            send_frame(self.channel, type, meta, body, deadline=self.deadline)
        except (SandboxTimeout, ChannelClosed) as exc:
            raise self._after_channel_error(exc) from exc

    def send_file(self, type: str, meta: Mapping[str, Any], path: Path) -> None:
        """Send a frame whose body is streamed from ``path``. On failure the child is killed."""
        try:
            send_frame_file(self.channel, type, meta, path, deadline=self.deadline)
        except (SandboxTimeout, ChannelClosed) as exc:
            raise self._after_channel_error(exc) from exc

    def recv(
        self,
        *,
        max_body_bytes: int | None = None,
        max_header_bytes: int = 1 << 20,
        body_sink: BinaryIO | None = None,
        limits: Mapping[str, FrameLimits] | None = None,
        receiver: BodyReceiver | None = None,
    ) -> Frame:
        """Receive one frame, bounded by the deadline and caps (body default: ``max_output_mb``).

        ``limits``: the frame types accepted, each with its caps (see
        :func:`.protocol.recv_frame`); ``receiver``: takes some bodies into
        its own buffers. If the child died, the error says why
        (``SandboxTimeout``, ``SandboxResource``, ...); any protocol error
        kills the child.
        """
        cap = self.config.max_output_mb * _MB if max_body_bytes is None else max_body_bytes
        try:
            return recv_frame(
                self.channel,
                max_body_bytes=cap,
                max_header_bytes=max_header_bytes,
                deadline=self.deadline,
                body_sink=body_sink,
                limits=limits,
                receiver=receiver,
            )
        except SandboxError as exc:
            raise self._after_channel_error(exc) from exc

    def recv_to_file(self, path: Path, *, max_body_bytes: int | None = None, max_header_bytes: int = 1 << 20) -> Frame:
        """Like :meth:`recv`, streaming the body into the new file ``path``."""
        cap = self.config.max_output_mb * _MB if max_body_bytes is None else max_body_bytes
        try:
            return recv_frame_to_file(
                self.channel,
                path,
                max_body_bytes=cap,
                max_header_bytes=max_header_bytes,
                deadline=self.deadline,
            )
        except SandboxError as exc:
            raise self._after_channel_error(exc) from exc

    def stderr_tail(self, max_bytes: int = 65536) -> str:
        """The last ``max_bytes`` of the child's stderr, decoded with replacement (untrusted text)."""
        return _tail(self.stderr_path, max_bytes)

    def stdout_tail(self, max_bytes: int = 65536) -> str:
        """The last ``max_bytes`` of the child's stdout (untrusted text)."""
        return _tail(self.stdout_path, max_bytes)


def _tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - max_bytes))
            data = fh.read(max_bytes)
    except FileNotFoundError:
        return ""
    return data.decode("utf-8", errors="replace")


def _child_env(child_dir: Path) -> dict[str, str]:
    home = child_dir / "home"
    env = scrubbed_env(home, child_dir / "tmp")
    env.update(XDG_CACHE_HOME=str(home / ".cache"), TORCH_HOME=str(home / ".cache" / "torch"))
    return env


def _open_output(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)


def launch(
    config: SandboxConfig,
    *,
    entry: str = DEFAULT_ENTRY,
    probe_file: Path | None = None,
    warm_export: bool = False,
) -> SandboxChild:
    """Start a confined child and return it once its isolation is accepted.

    The entry ``"module:function"`` is called as ``function(channel)`` with the
    channel socket, after confinement. ``probe_file`` (tests only) is run with
    :func:`runpy.run_path` instead, with the socket as the global ``channel``.

    Raises ``SandboxUnavailable`` (before spawning, from the pre-flight, or
    after the ``ready`` report) when ``isolation: require`` and isolation is
    not ``full``; with ``best-effort`` a degraded level emits
    :class:`IsolationDegradedWarning` and ``SandboxChild.isolation`` records it.

    ``warm_export``: the call may run ``torch.export``; a fork server imports
    what that needs (once per server) before forking this child.
    """
    if ":" not in entry:
        raise ValueError(f"entry must be 'module:function', got {entry!r}")
    if config.isolation == "require":
        offered = check_available(config)
        if offered.level != "full":
            raise _unavailable(offered, "offered by this system")
    if not sys.executable:
        raise SandboxUnavailable(
            "sys.executable is empty, so no Python interpreter can be started for the sandbox; "
            "run securehub from a regular Python installation"
        )
    server = _fork_server() if config.fork_server else None
    tmp_parent = config.tmp_parent or Path(tempfile.gettempdir())
    run_dir = Path(tempfile.mkdtemp(prefix="securehub-sandbox-", dir=tmp_parent))
    child_dir = run_dir / "child"
    for d in (child_dir, child_dir / "home", child_dir / "tmp"):
        d.mkdir(mode=0o700)
    read_paths = [*python_read_paths(), *(str(p.resolve()) for p in config.read_paths)]
    if probe_file is not None:
        read_paths.append(str(probe_file.resolve()))
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    plan = {
        "channel_fd": child_sock.fileno(),
        "parent_pid": os.getpid(),
        "tmpdir": str(child_dir),
        "read_paths": read_paths,
        "network": config.network,
        "filesystem": config.filesystem,
        "limits": {
            "memory_mb": config.memory_mb,
            "cpu_s": config.cpu_s,
            "max_procs": config.max_procs,
            "max_open_files": config.max_open_files,
            "max_file_mb": config.max_file_mb,
        },
        "keep_read_search": _needs_read_search(read_paths),
        "disable": sorted(config.disable_mechanisms),
        "required": sorted(config.required_mechanisms()),
        "entry": entry,
        "probe_file": None if probe_file is None else str(probe_file.resolve()),
    }
    env = _child_env(child_dir)
    out_fd = err_fd = -1
    try:
        out_fd = _open_output(run_dir / "stdout")
        err_fd = _open_output(run_dir / "stderr")
        if server is not None:
            process: ChildProcess = _fork_from(
                server, plan, env, (parent_sock, child_sock, out_fd, err_fd), warm=warm_export
            )
        else:
            process = SpawnedProcess(
                subprocess.Popen(
                    [sys.executable, *python_flags(), str(_BOOTSTRAP), json.dumps(plan)],
                    stdin=subprocess.DEVNULL,
                    stdout=out_fd,
                    stderr=err_fd,
                    pass_fds=(child_sock.fileno(),),
                    close_fds=True,
                    start_new_session=True,
                    env=env,
                    cwd=child_dir,
                )
            )
    except BaseException:
        parent_sock.close()
        _rmtree(run_dir)
        raise
    finally:
        child_sock.close()
        for fd in (out_fd, err_fd):
            if fd >= 0:
                os.close(fd)
    child = SandboxChild(
        config=config,
        process=process,
        channel=parent_sock,
        run_dir=run_dir,
        deadline=time.monotonic() + config.timeout_s,
    )
    try:
        _handshake(child)
    except BaseException:
        child.close()
        raise
    return child


def _fork_server() -> forkserver.ForkServer | None:
    """The process's fork server for this launch (``None``: a fresh interpreter); one that cannot start is
    ``SandboxUnavailable`` (nothing falls back silently)."""
    try:
        return forkserver.server_for_launch()
    except forkserver.ForkServerError as exc:
        raise SandboxUnavailable(
            f"the sandbox fork server did not start: {exc}; set SECUREHUB_FORK_SERVER=0 to start every "
            "sandbox child as a fresh interpreter, and report this"
        ) from None


def _fork_from(
    server: forkserver.ForkServer,
    plan: dict[str, Any],
    env: dict[str, str],
    ends: tuple[socket.socket, socket.socket, int, int],
    *,
    warm: bool,
) -> ForkedProcess:
    """Fork the child from ``server``; its plan (with its environment) goes over the channel.

    A server that fails the request is dropped (the next launch starts
    another) and the error is ``SandboxUnavailable``: no child was started.
    A fork that dies before reading its plan is reported by the handshake
    like any child that exits early. ``ends``: the parent's and the child's channel
    ends, the child's stdout and stderr fds.
    """
    parent_sock, child_sock, out_fd, err_fd = ends
    try:
        process = ForkedProcess(server, server.fork(child_sock.fileno(), out_fd, err_fd, warm=warm))
    except (forkserver.ForkServerError, OSError) as exc:
        forkserver.forget(server)
        raise SandboxUnavailable(
            f"the sandbox fork server failed to start a child: {exc}; set SECUREHUB_FORK_SERVER=0 to start "
            "every sandbox child as a fresh interpreter, and report this"
        ) from None
    body = json.dumps({**plan, "parent_pid": server.pid, "env": env}).encode()
    with contextlib.suppress(OSError):
        parent_sock.sendall(struct.pack(">I", len(body)) + body, SEND_FLAGS)
    return process


def _handshake(child: SandboxChild) -> None:
    frame = child.recv(max_body_bytes=0, limits={"ready": _READY_LIMITS})
    meta = expect(frame, "ready", {"isolation": dict, "problems": list, "pids": dict})
    problems = list(meta["problems"])
    if not all(isinstance(p, str) for p in problems):
        raise SandboxProtocol("'ready' frame key 'problems' must be a list of strings")
    claimed = IsolationReport.from_dict(meta["isolation"])
    pidns, uid = _measure_pid_and_uid(child, meta["pids"], problems)
    # Re-derive level/missing from the mechanisms against OUR config.
    report = IsolationReport.build(
        child.config.required_mechanisms(),
        netns=claimed.netns,
        userns=claimed.userns,
        landlock_abi=claimed.landlock_abi,
        seccomp=claimed.seccomp,
        no_new_privs=claimed.no_new_privs,
        rlimits=claimed.rlimits,
        caps=claimed.caps,
        pidns=claimed.pidns and pidns,
        uid=claimed.uid and uid,
    )
    child.isolation = report
    child.problems = tuple(problems)
    if report.level != "full":
        if child.config.isolation == "require":
            raise _unavailable(report, "achieved in the child", child.problems)
        warnings.warn(
            f"sandbox isolation is {report.level!r} (missing {', '.join(report.missing)}); "
            "running anyway because sandbox.isolation is best-effort",
            IsolationDegradedWarning,
            stacklevel=3,
        )
    child.started = True  # set first: the child may run repository code as soon as the byte is sent
    try:
        child.channel.sendall(b"G", SEND_FLAGS)
    except OSError as exc:
        raise child._after_channel_error(
            ChannelClosed("the sandbox child closed the channel before 'go'", mid_frame=False)
        ) from exc


def _proc_status(pid: int) -> dict[str, list[str]]:
    """Fields of ``/proc/<pid>/status`` as seen from this process's namespaces."""
    with Path(f"/proc/{pid}/status").open(encoding="ascii", errors="replace") as fh:
        return {k: v.split() for k, _, v in (line.partition(":") for line in fh)}


def _measure_pid_and_uid(child: SandboxChild, pids: Mapping[str, object], problems: list[str]) -> tuple[bool, bool]:
    """Check the ``pidns`` and ``uid`` layers from our own ``/proc``, not from the child's word.

    ``pids`` names the outside pids of the namespace init and the worker.
    The init must be a child of the bootstrap we started, be pid 1 of its
    namespace, and is then held by a pidfd (so it can be waited for at
    close). ``uid``: the worker's and the init's real, effective, saved and
    filesystem uids and gids all differ from ours. Anything that does not
    check out counts as the layer missing (``isolation: require`` refuses).
    """
    init, worker = pids.get("init"), pids.get("worker")
    well_formed = all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in (init, worker))
    if set(pids) != {"init", "worker"} or not well_formed:
        problems.append(f"pidns, uid: the child reported no usable pids ({dict(pids)!r})")
        return False, False
    assert isinstance(init, int) and isinstance(worker, int)  # noqa: S101 - narrowed above for mypy
    try:
        pidfd = os.pidfd_open(init)
    except OSError as exc:
        problems.append(f"pidns, uid: cannot hold the namespace init {init}: {exc}")
        return False, False
    try:
        st_init, st_worker = _proc_status(init), _proc_status(worker)
    except OSError as exc:
        os.close(pidfd)
        problems.append(f"pidns, uid: cannot read /proc of the child: {exc}")
        return False, False
    # Opened before reading: if these still name our bootstrap's child (and
    # its child), the pidfd refers to the right process, not a reused pid.
    if st_init.get("PPid") != [str(child.pid)] or st_worker.get("PPid") != [str(init)]:
        os.close(pidfd)
        problems.append("pidns, uid: the reported pids are not the bootstrap's children")
        return False, False
    child.init_pid, child.worker_pid, child._init_pidfd = init, worker, pidfd
    ns_init, ns_worker = st_init.get("NSpid", []), st_worker.get("NSpid", [])
    pidns = len(ns_init) >= 2 and ns_init[-1] == "1" and len(ns_worker) == len(ns_init)
    mine = {"Uid": str(os.getuid()), "Gid": str(os.getgid())}
    uid = all(
        len(st.get(key, [])) == 4 and mine[key] not in st[key] for st in (st_init, st_worker) for key in ("Uid", "Gid")
    )
    if not pidns:
        problems.append(f"pidns: the child is not in its own PID namespace (NSpid {ns_worker})")
    if not uid:
        problems.append(f"uid: the child runs with the parent's uid or gid (Uid {st_worker.get('Uid')})")
    return pidns, uid
