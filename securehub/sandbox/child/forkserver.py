"""The fork server: a process with torch imported that forks one fresh child per sandbox call.

Started by :mod:`securehub.sandbox.parent.forkserver` as
``python -s -P -S -B <this file> <settings-json>`` with a scrubbed environment,
in a new session, with only its control socket inherited. It never runs
repository code and never learns what a call is about:

1. ``PR_SET_PDEATHSIG(SIGKILL)`` and ``getppid()`` checked (it dies with the
   parent thread that started it); every fd but 0, 1, 2 and the control
   socket closed;
2. ``site.main()`` and the imports every child needs (torch, the child
   runtime): the same trusted installation the parent imports, before any
   call exists;
3. ``R`` on the control socket, then one request at a time:

   - ``F`` (or ``FW``: first import what a ``torch.export`` needs, once) with
     three fds (the call's channel, stdout and stderr files): fork. The fork
     starts a new session, makes the two files its stdout and stderr, reads
     its plan from the channel (the plan never passes through this process,
     so no later child inherits it in memory), takes the plan's
     environment and temp dir, and runs the bootstrap's supervisor stage
     (:func:`securehub.sandbox.child.bootstrap.run_plan`): the same
     confinement, step for step, as a child the parent starts itself. Reply
     ``P`` + the fork's pid;
   - ``W`` + pid: ``wait4(pid, WNOHANG)``. Reply ``N`` (still running), ``X`` +
     wait status + CPU seconds, or ``E`` (not a child of this server). A fork
     is reaped only when the parent asks, so its pid (and process group) stay
     reserved until the parent has its exit status.

Anything else on the control socket ends the server. EOF (the parent closed
it) ends it too; a fork it made dies with it (its own PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

EXIT_CONFINE_FAILED = 85  # as securehub.sandbox.config (checked by a unit test)
_PLAN_CAP = 16 * 1024 * 1024


def _close_fds(keep: set[int]) -> None:
    for name in os.listdir("/proc/self/fd"):  # noqa: PTH208 - stdlib only before site
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                continue


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError("the parent closed the channel before the plan was complete")
        data += chunk
    return data


def _read_plan(channel_fd: int) -> dict[str, object]:
    (size,) = struct.unpack(">I", _read_exact(channel_fd, 4))
    if size > _PLAN_CAP:
        raise ValueError(f"plan of {size} bytes is over the {_PLAN_CAP}-byte cap")
    plan = json.loads(_read_exact(channel_fd, size))
    if not isinstance(plan, dict) or not isinstance(plan.get("env"), dict):
        raise TypeError("the plan is not a JSON object with an environment")
    return plan


def _take_plan(channel_fd: int) -> dict[str, object]:
    """Read the plan; take its environment and temp dir (the plan keeps the rest)."""
    import tempfile  # noqa: PLC0415 - only forks need it

    plan = _read_plan(channel_fd)
    env = plan.pop("env")
    assert isinstance(env, dict)  # noqa: S101 - checked by _read_plan (mypy narrowing)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    tempfile.tempdir = None
    os.chdir(str(plan["tmpdir"]))
    plan["channel_fd"] = channel_fd
    return plan


def _become_child(channel_fd: int, out_fd: int, err_fd: int) -> int:
    """In the fork: the call's session, stdio, plan, environment; then the bootstrap."""
    from securehub.sandbox.child import bootstrap  # noqa: PLC0415 - imported by the server already

    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    for fd in {null, out_fd, err_fd} - {0, 1, 2}:
        os.close(fd)
    try:
        plan = _take_plan(channel_fd)
    except (OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        print(f"securehub sandbox: the fork server's child got no usable plan: {exc}", file=sys.stderr)
        return EXIT_CONFINE_FAILED
    return bootstrap.run_plan(plan, served=True)


def _exit_fork(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            continue
    os._exit(code)


def _fork(ctrl: socket.socket, fds: list[int]) -> None:
    pid = os.fork()
    if pid == 0:
        code = EXIT_CONFINE_FAILED
        try:
            ctrl.close()
            code = _become_child(*fds)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # a fork must never return into the server loop
            import traceback  # noqa: PLC0415

            traceback.print_exc()
        finally:
            _exit_fork(code)
    for fd in fds:
        os.close(fd)
    ctrl.send(b"P" + struct.pack("<i", pid))


def _wait(ctrl: socket.socket, pid: int) -> None:
    try:
        got, status, usage = os.wait4(pid, os.WNOHANG)
    except ChildProcessError:
        ctrl.send(b"E")
        return
    if got == 0:
        ctrl.send(b"N")
        return
    ctrl.send(b"X" + struct.pack("<id", status, usage.ru_utime + usage.ru_stime))


def _serve(ctrl: socket.socket, warm: list[str]) -> int:
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctrl, 64, 3)
        except OSError:
            return 0
        if not msg:
            for fd in fds:
                os.close(fd)
            return 0
        if msg in (b"F", b"FW") and len(fds) == 3:
            if msg == b"FW" and warm:
                _warm(warm)
                warm = []
            _fork(ctrl, fds)
        elif msg[:1] == b"W" and len(msg) == 5 and not fds:
            _wait(ctrl, struct.unpack("<i", msg[1:])[0])
        else:
            for fd in fds:
                os.close(fd)
            return EXIT_CONFINE_FAILED


def main(argv: list[str]) -> int:
    """Run the server with the settings in ``argv[1]`` (JSON: parent_pid, ctrl_fd, preload)."""
    settings = json.loads(argv[1])
    ctrl_fd = int(settings["ctrl_fd"])
    _close_fds({0, 1, 2, ctrl_fd})
    import site  # noqa: PLC0415 - after the fds are closed

    site.main()
    import importlib  # noqa: PLC0415

    from securehub.sandbox._isolation import prctl  # noqa: PLC0415 - needs site (editable installs)

    prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the thread that started us
    if os.getppid() != int(settings["parent_pid"]):
        return EXIT_CONFINE_FAILED
    for name in settings["preload"]:
        importlib.import_module(str(name))
    ctrl = socket.socket(fileno=ctrl_fd)
    ctrl.send(b"R")
    return _serve(ctrl, [str(name) for name in settings["warm"]])


def _warm(names: list[str]) -> None:
    """Import what a fork's first ``torch.export`` would (a torch without one of them still serves)."""
    import importlib  # noqa: PLC0415

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv))
