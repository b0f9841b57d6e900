"""First code run in the sandbox child: confine, report, then run the entry.

Started by :func:`securehub.sandbox.parent.spawn.launch` as
``python -s -P -S -B <this file> <plan-json>``: as a *script*, with site disabled,
so that nothing but the standard library and the isolation modules is
imported before confinement (not ``securehub/__init__.py``, not ``.pth``
hooks, not site-packages). Three processes, steps in order:

*supervisor* (the process the parent started; stays outside, unconfined,
runs only this file):

1. only fds 0, 1, 2 and the channel may be open (others are closed and the
   result re-checked): a leaked fd would bypass Landlock;
2. ``PR_SET_PDEATHSIG(SIGKILL)`` and ``getppid()`` re-checked;
3. ``unshare(CLONE_NEWPID)`` and fork the *init*; write the init's uid/gid
   maps (inside 0 -> outside 65534, see ``_isolation/pidns.py``) and chown
   the private temp dir to 65534; close the channel; wait for the init and
   relay the worker's wait status (exit code, or death by the same signal)
   as its own, so the parent's error mapping is unchanged.

*init* (pid 1 of the new PID namespace; the parent has no pid there):

4. new user + IPC namespaces, switch to outside uid/gid 65534 (or identity
   maps when that is impossible) and, with ``network: deny``, a new network
   namespace;
5. every capability dropped (bounding set too), except
   ``CAP_DAC_READ_SEARCH`` inside the namespace when the interpreter sits
   below a directory 65534 cannot search; PDEATHSIG re-armed, supervisor
   liveness re-checked; fork the *worker*, close the channel, reap until the
   worker exits, report its status, exit (the kernel then kills whatever is
   left in the namespace). Pid 1 ignores signals it has no handler for,
   which is why the entry does not run here.

*worker* (runs the entry):

6. rlimits (address space, CPU, file size, open files, processes, no core);
7. capabilities verified, ``PR_SET_PDEATHSIG(SIGKILL)`` and ``getppid()``;
8. ``PR_SET_NO_NEW_PRIVS``;
9. Landlock: read beneath the Python installation, the plan's read paths and
   system libraries; read/write beneath the private temp dir only; TCP
   denied (ABI >= 4); signals and abstract sockets scoped (ABI >= 6);
10. seccomp filter (see ``_isolation/seccomp.py``);
11. frame ``ready`` with the :class:`IsolationReport` of what was achieved
    (from actual syscall results) and the outside pids of init and worker,
    which the parent checks in its own ``/proc``; then ``site.main()`` and
    the entry.

A mechanism that fails is recorded as missing; under ``isolation: require``
the parent refuses to continue after reading the report, and the entry is
not run until the parent answers ``go``. Exit statuses: see
:mod:`securehub.sandbox.config` (``EXIT_*``).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
import traceback
import types
from typing import Any

# Must match securehub.sandbox.config (checked by a unit test); not imported
# from there to keep the pre-confinement import set to the standard library.
EXIT_CONFINE_FAILED = 85
EXIT_MEMORY = 86
EXIT_ENTRY_FAILED = 87

_MEMORY_MARKERS = ("can't allocate memory", "cannot allocate memory", "not enough memory", "bad_alloc")

# Read-only system paths the interpreter and native extensions need. /proc
# and /sys are deliberately narrow: the child's own /proc entry, and the CPU
# description torch's cpuinfo reads (without it: "Error in cpuinfo"). Other
# processes' /proc entries (cmdline, environ) stay unreadable.
_SYSTEM_READ = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/share/zoneinfo",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
    "/proc/self",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/sys/devices/system/cpu",
)
_SYSTEM_RW_FILES = ("/dev/null",)


def _send(sock: socket.socket, ftype: str, meta: dict[str, Any]) -> None:
    # Same framing as securehub.sandbox.wire.protocol.send_frame (unit-tested against it).
    header = json.dumps({"type": ftype, "meta": meta}, separators=(",", ":")).encode()
    sock.sendall(struct.pack(">QI", 4 + len(header), len(header)) + header)


def _recv_go(sock: socket.socket) -> bool:
    """Read the parent's one-byte verdict after ``ready``: b'G' go, anything else stop."""
    data = sock.recv(1)
    return data == b"G"


def _check_fds(channel_fd: int) -> None:
    allowed = {0, 1, 2, channel_fd}
    for name in os.listdir("/proc/self/fd"):  # noqa: PTH208 - no pathlib pre-confinement
        fd = int(name)
        if fd not in allowed:
            try:
                os.close(fd)
            except OSError:
                continue  # the fd listdir itself used, already closed
    leftover = {int(n) for n in os.listdir("/proc/self/fd")} - allowed  # noqa: PTH208
    # listdir's own directory fd shows up in its listing; it is the only tolerated extra.
    if len(leftover) > 1:
        raise OSError(f"file descriptors {sorted(leftover)} are still open after closing")


def _load_isolation(root: str) -> None:
    """Make ``securehub.sandbox._isolation`` importable without running the package __init__s."""
    pkg = types.ModuleType("securehub")
    pkg.__path__ = [root]
    sub = types.ModuleType("securehub.sandbox")
    sub.__path__ = [os.path.join(root, "sandbox")]  # noqa: PTH118 - pathlib not needed pre-confinement
    sys.modules["securehub"] = pkg
    sys.modules["securehub.sandbox"] = sub


def _forget_stubs() -> None:
    for name in [n for n in sys.modules if n == "securehub" or n.startswith("securehub.")]:
        del sys.modules[name]


def _attempt(problems: list[str], disabled: set[str], name: str, func: Any) -> bool:
    if name in disabled:
        problems.append(f"{name}: disabled by configuration (tests)")
        return False
    try:
        func()
    except (OSError, ValueError) as exc:
        problems.append(f"{name}: {exc}")
        return False
    return True


def _new_achieved() -> dict[str, Any]:
    return {
        "netns": False,
        "userns": False,
        "pidns": False,
        "uid": False,
        "landlock_abi": None,
        "seccomp": False,
        "no_new_privs": False,
        "rlimits": False,
        "caps": False,
    }


def _user_namespace(plan: dict[str, Any], achieved: dict[str, Any], problems: list[str], up: int, verdict: int) -> None:
    """Init stage: new user namespace; outside uid 65534 when the supervisor can map it.

    Tells the supervisor ``U`` (maps wanted) or ``N`` (identity maps, written
    here) over ``up``; reads its verdict (``M`` mapped, ``F`` + reason) from ``verdict``.
    """
    from securehub.sandbox._isolation import netns, pidns  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    disabled = set(plan["disable"])
    if "userns" in disabled:
        os.write(up, b"N")
        problems.append("userns: disabled by configuration (tests)")
        problems.append("uid: needs a user namespace")
        return
    if "uid" in disabled:
        os.write(up, b"N")
        problems.append("uid: disabled by configuration (tests)")
        achieved["userns"] = _attempt(problems, disabled, "userns", lambda: netns.unshare(user=True, net=False))
        return
    uid, gid = os.getuid(), os.getgid()
    try:
        pidns.unshare_user(net=False)
    except OSError as exc:
        os.write(up, b"N")
        problems.append(f"userns: {exc}")
        problems.append("uid: needs a user namespace")
        return
    os.write(up, b"U")
    answer = os.read(verdict, 512)
    if answer[:1] == b"M":
        achieved["userns"] = True
        achieved["uid"] = _attempt(problems, disabled, "uid", pidns.become_mapped_root)
        return
    problems.append(f"uid: {answer[1:].decode(errors='replace') or 'the supervisor exited'}")
    # Fall back to identity maps (the pre-uid behaviour), written by ourselves.
    achieved["userns"] = _attempt(problems, disabled, "userns", lambda: netns.write_identity_maps(uid, gid))


def _kept_caps(plan: dict[str, Any], achieved: dict[str, Any]) -> frozenset[int]:
    from securehub.sandbox._isolation import pidns  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    # CAP_DAC_READ_SEARCH only as outside uid 65534 below an unsearchable
    # directory (pyenv under /root 0700): without it nothing can be imported.
    if achieved["uid"] and plan["keep_read_search"]:
        return frozenset({pidns.CAP_DAC_READ_SEARCH})
    return frozenset()


def _drop_caps(plan: dict[str, Any], achieved: dict[str, Any], problems: list[str]) -> bool:
    from securehub.sandbox._isolation import pidns  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    keep = _kept_caps(plan, achieved)
    if _attempt(problems, set(plan["disable"]), "caps", lambda: pidns.drop_capabilities_except(keep)):
        return pidns.capabilities_at_most(keep)
    return False


def _confine_worker(plan: dict[str, Any], achieved: dict[str, Any], problems: list[str], parent: int) -> None:
    """Worker stage (runs the entry): rlimits, caps, PDEATHSIG, no-new-privs, Landlock, seccomp."""
    from securehub.sandbox._isolation import landlock, pidns, prctl, rlimits, seccomp  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    disabled = set(plan["disable"])
    deny_net = plan["network"] == "deny"
    lim = plan["limits"]
    achieved["rlimits"] = _attempt(problems, disabled, "rlimits", lambda: rlimits.apply(**lim))
    # The init dropped the capabilities before forking us (the bounding set
    # cannot be lowered twice: CAP_SETPCAP is gone); verify what we inherited.
    achieved["caps"] = achieved["caps"] and pidns.capabilities_at_most(_kept_caps(plan, achieved))

    # PDEATHSIG after the last credential change (changes and fork clear it);
    # the parent here is the namespace's init, whose death kills us anyway.
    prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != parent:
        os._exit(EXIT_CONFINE_FAILED)

    achieved["no_new_privs"] = _attempt(problems, disabled, "no_new_privs", lambda: prctl(38, 1, 0, 0, 0))
    if plan["filesystem"] == "confined" and achieved["no_new_privs"] and "landlock" not in disabled:
        try:
            achieved["landlock_abi"] = landlock.restrict(
                read_paths=[*_SYSTEM_READ, *plan["read_paths"]],
                write_paths=[plan["tmpdir"]],
                read_write_files=_SYSTEM_RW_FILES,
                deny_tcp=deny_net,
            )
        except OSError as exc:
            problems.append(f"landlock: {exc}")
    elif "landlock" in disabled:
        problems.append("landlock: disabled by configuration (tests)")
    if achieved["no_new_privs"]:
        achieved["seccomp"] = _attempt(problems, disabled, "seccomp", lambda: seccomp.install(os.getpid()))


def _report(plan: dict[str, Any], achieved: dict[str, Any]) -> dict[str, Any]:
    required = set(plan["required"])
    have = {
        "netns": achieved["netns"],
        "userns": achieved["userns"],
        "pidns": achieved["pidns"],
        "uid": achieved["uid"],
        "landlock": achieved["landlock_abi"] is not None,
        "seccomp": achieved["seccomp"],
        "no_new_privs": achieved["no_new_privs"],
        "rlimits": achieved["rlimits"],
        "caps": achieved["caps"],
    }
    missing = sorted(m for m in required if not have[m])
    level = "full" if not missing else ("none" if len(missing) == len(required) else "degraded")
    report = {k: achieved[k] for k in ("netns", "userns", "pidns", "uid", "landlock_abi", "seccomp", "no_new_privs")}
    report.update(rlimits=achieved["rlimits"], caps=achieved["caps"], level=level, missing=missing)
    return report


def _is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == 12:  # ENOMEM
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _MEMORY_MARKERS)


def _run(plan: dict[str, Any], channel: socket.socket, *, served: bool) -> int:
    if not served:
        import site  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

        site.main()  # site-packages and .pth hooks, now under confinement
    probe = plan["probe_file"]
    try:
        if probe is not None:
            import runpy  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

            runpy.run_path(probe, init_globals={"channel": channel}, run_name="__main__")
        else:
            import importlib  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

            module_name, _, func_name = plan["entry"].partition(":")
            module = importlib.import_module(module_name)
            getattr(module, func_name)(channel)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as exc:
        traceback.print_exc()
        return EXIT_MEMORY if _is_memory_error(exc) else EXIT_ENTRY_FAILED
    return 0


def _own_pids() -> dict[str, int]:
    """Outside pids of this worker and of its parent (the namespace's init).

    ``/proc`` is the host's procfs (no mount namespace), which names
    processes as its own (outer) PID namespace sees them; the parent
    re-checks both in its own ``/proc`` before trusting them.
    """
    worker = int(os.readlink("/proc/self"))  # noqa: PTH115 - no pathlib pre-confinement
    with open("/proc/self/status", encoding="ascii") as fh:  # noqa: PTH123 - stdlib only
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    return {"worker": worker, "init": int(fields["PPid"].strip())}


def _relay(status: int) -> int:
    """Exit the supervisor the way the worker ended: same status, or death by the same signal."""
    if os.WIFSIGNALED(status):
        import resource  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs
        import signal  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

        sig = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # these cannot be caught or reset
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
        os.kill(os.getpid(), sig)
        return 128 + sig  # a signal whose default action is not to terminate
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EXIT_CONFINE_FAILED


def _grant_uid(plan: dict[str, Any], init_pid: int) -> bytes:
    """Supervisor: write the init's id maps and hand it the temp dir; the verdict byte(s)."""
    from securehub.sandbox._isolation import pidns  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    try:
        pidns.write_id_maps(init_pid)
        tmp = plan["tmpdir"]
        for path in (tmp, os.path.join(tmp, "home"), os.path.join(tmp, "tmp")):  # noqa: PTH118
            os.chown(path, pidns.CHILD_UID, pidns.CHILD_GID, follow_symlinks=False)
    except OSError as exc:
        return b"F" + f"could not map outside uid {pidns.CHILD_UID}: {exc}".encode()[:400]
    return b"M"


def _supervise(plan: dict[str, Any], init_pid: int, up: int, verdict: int) -> int:
    """Supervisor stage (outside the new PID namespace, unconfined trusted code).

    Grants the uid map when asked, then waits for the init, which reports the
    worker's raw wait status (4 bytes) before exiting; relays it.
    """
    ask = os.read(up, 1)
    if ask == b"U":
        os.write(verdict, _grant_uid(plan, init_pid))
    data = b""
    while True:
        chunk = os.read(up, 64)
        if not chunk:
            break
        data += chunk[: 8 - len(data)]
    _, own = os.waitpid(init_pid, 0)
    status = struct.unpack("<i", data[:4])[0] if len(data) >= 4 else own
    return _relay(status)


def _run_init(plan: dict[str, Any], achieved: dict[str, Any], problems: list[str], up: int, verdict: int) -> int:
    """Init stage (pid 1 of the new PID namespace): user/IPC/net namespaces, then fork the worker.

    Pid 1 ignores signals it has no handler for, so the entry runs in a
    forked worker with ordinary signal semantics (SIGXCPU, SIGABRT); this
    process only reaps, reports the worker's status and exits, which makes
    the kernel kill whatever else is left in the namespace.
    """
    import select  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    from securehub.sandbox._isolation import netns, prctl  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    disabled = set(plan["disable"])
    _user_namespace(plan, achieved, problems, up, verdict)
    if plan["network"] == "deny":
        # Inside the new user namespace we hold CAP_SYS_ADMIN; without it, only root can.
        achieved["netns"] = _attempt(problems, disabled, "netns", lambda: netns.unshare(user=False, net=True))
    achieved["caps"] = _drop_caps(plan, achieved, problems)
    prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: after the credential change, which clears it
    poller = select.poll()
    poller.register(verdict, select.POLLIN)
    if any(ev & (select.POLLHUP | select.POLLERR) for _, ev in poller.poll(0)):
        os._exit(EXIT_CONFINE_FAILED)  # the supervisor died before PDEATHSIG was armed
    os.close(verdict)
    me = os.getpid()
    worker = os.fork()
    if worker == 0:
        problems_w = list(problems)
        os.close(up)
        _confine_worker(plan, achieved, problems_w, me)
        achieved["problems"] = problems_w
        return -1  # the caller continues as the worker
    os.close(int(plan["channel_fd"]))
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == worker:
            break
    os.write(up, struct.pack("<i", status))
    os._exit(0)


def _fork_stages(plan: dict[str, Any]) -> dict[str, Any] | int:
    """Supervisor -> init (new PID namespace) -> worker. Returns the worker's ``achieved``
    in the worker, and the exit status to use in the supervisor."""
    from securehub.sandbox._isolation import pidns, prctl  # noqa: PLC0415 - lazy: bootstrap script, each stage imports what it needs

    achieved = _new_achieved()
    problems: list[str] = []
    prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL: die with the launching thread
    if os.getppid() != plan["parent_pid"]:
        return EXIT_CONFINE_FAILED
    if not sys.platform.startswith("linux"):
        achieved["problems"] = [f"no isolation mechanisms are implemented on {sys.platform}"]
        return achieved
    achieved["pidns"] = _attempt(problems, set(plan["disable"]), "pidns", pidns.unshare_pid)
    up_r, up_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    init = os.fork()
    if init == 0:
        os.close(up_r)
        os.close(verdict_w)
        if _run_init(plan, achieved, problems, up_w, verdict_r) == -1:
            return achieved
        os._exit(EXIT_CONFINE_FAILED)
    os.close(up_w)
    os.close(verdict_r)
    os.close(int(plan["channel_fd"]))
    return _supervise(plan, init, up_r, verdict_w)


def main(argv: list[str]) -> int:
    """Run the bootstrap on the plan in ``argv[1]`` (JSON); return the exit status."""
    return run_plan(json.loads(argv[1]), served=False)


def run_plan(plan: dict[str, Any], *, served: bool) -> int:
    """Confine (supervisor, init, worker) and run the plan's entry; the exit status of this stage.

    ``served``: this process was forked by the fork server
    (:mod:`securehub.sandbox.child.forkserver`), which ran ``site`` and imported
    torch and the child runtime before any call existed: those modules are
    already loaded (the real ``securehub`` package, not the stubs a fresh
    interpreter uses), and ``site`` is not run again.
    """
    channel_fd = int(plan["channel_fd"])
    try:
        _check_fds(channel_fd)
    except OSError as exc:
        print(f"securehub sandbox: {exc}", file=sys.stderr)
        return EXIT_CONFINE_FAILED
    if not served:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # noqa: PTH100, PTH120
        _load_isolation(root)
    achieved = _fork_stages(plan)
    if isinstance(achieved, int):
        return achieved
    pids = _own_pids() if sys.platform.startswith("linux") else {}
    if not served:
        _forget_stubs()
    os.chdir(plan["tmpdir"])
    problems = achieved.pop("problems")
    channel = socket.socket(fileno=channel_fd)
    _send(channel, "ready", {"isolation": _report(plan, achieved), "problems": problems, "pids": pids})
    if not _recv_go(channel):
        return 0
    return _run(plan, channel, served=served)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
