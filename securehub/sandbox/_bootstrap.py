"""First code run in the sandbox child: confine, report, then run the entry.

Started by :func:`securehub.sandbox.spawn.launch` as
``python -I -S <this file> <plan-json>``: as a *script*, with site disabled,
so that nothing but the standard library and the isolation modules is
imported before confinement (not ``securehub/__init__.py``, not ``.pth``
hooks, not site-packages). Steps, in order:

1. only fds 0, 1, 2 and the channel may be open (others are closed and the
   result re-checked): a leaked fd would bypass Landlock;
2. new user + IPC namespaces (identity uid/gid map) and, with
   ``network: deny``, a new network namespace;
3. rlimits (address space, CPU, file size, open files, processes, no core);
4. every capability dropped;
5. ``PR_SET_PDEATHSIG(SIGKILL)`` armed after the last credential change, and
   ``getppid()`` re-checked (the parent may already be gone);
6. ``PR_SET_NO_NEW_PRIVS``;
7. Landlock: read beneath the Python installation, the plan's read paths and
   system libraries; read/write beneath the private temp dir only; TCP
   denied (ABI >= 4); signals and abstract sockets scoped (ABI >= 6);
8. seccomp filter (see ``_isolation/seccomp.py``);
9. frame ``ready`` with the :class:`IsolationReport` of what was achieved
   (from actual syscall results), then ``site.main()`` and the entry.

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
    # Same framing as securehub.sandbox.protocol.send_frame (unit-tested against it).
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


def _confine(plan: dict[str, Any]) -> dict[str, Any]:
    from securehub.sandbox._isolation import landlock, netns, prctl, rlimits, seccomp

    disabled = set(plan["disable"])
    deny_net = plan["network"] == "deny"
    achieved: dict[str, Any] = {
        "netns": False,
        "userns": False,
        "landlock_abi": None,
        "seccomp": False,
        "no_new_privs": False,
        "rlimits": False,
        "caps": False,
    }
    problems: list[str] = []
    if not sys.platform.startswith("linux"):
        achieved["problems"] = [f"no isolation mechanisms are implemented on {sys.platform}"]
        return achieved

    def attempt(name: str, func: Any) -> bool:
        if name in disabled:
            problems.append(f"{name}: disabled by configuration (tests)")
            return False
        try:
            func()
        except (OSError, ValueError) as exc:
            problems.append(f"{name}: {exc}")
            return False
        return True

    if attempt("userns", lambda: netns.unshare(user=True, net=False)):
        achieved["userns"] = True
    if deny_net:
        # Inside the new user namespace we hold CAP_SYS_ADMIN; without it, only root can.
        achieved["netns"] = attempt("netns", lambda: netns.unshare(user=False, net=True))
    lim = plan["limits"]
    achieved["rlimits"] = attempt("rlimits", lambda: rlimits.apply(**lim))
    if attempt("caps", netns.drop_capabilities):
        achieved["caps"] = netns.capabilities_clear()

    # PDEATHSIG after the last credential change (changes may clear it).
    prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != plan["parent_pid"]:
        os._exit(EXIT_CONFINE_FAILED)

    achieved["no_new_privs"] = attempt("no_new_privs", lambda: prctl(38, 1, 0, 0, 0))
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
        achieved["seccomp"] = attempt("seccomp", lambda: seccomp.install(os.getpid()))
    achieved["problems"] = problems
    return achieved


def _report(plan: dict[str, Any], achieved: dict[str, Any]) -> dict[str, Any]:
    required = set(plan["required"])
    have = {
        "netns": achieved["netns"],
        "userns": achieved["userns"],
        "landlock": achieved["landlock_abi"] is not None,
        "seccomp": achieved["seccomp"],
        "no_new_privs": achieved["no_new_privs"],
        "rlimits": achieved["rlimits"],
        "caps": achieved["caps"],
    }
    missing = sorted(m for m in required if not have[m])
    level = "full" if not missing else ("none" if len(missing) == len(required) else "degraded")
    report = {k: achieved[k] for k in ("netns", "userns", "landlock_abi", "seccomp", "no_new_privs")}
    report.update(rlimits=achieved["rlimits"], caps=achieved["caps"], level=level, missing=missing)
    return report


def _is_memory_error(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, OSError) and exc.errno == 12:  # ENOMEM
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _MEMORY_MARKERS)


def _run(plan: dict[str, Any], channel: socket.socket) -> int:
    import site

    site.main()  # site-packages and .pth hooks, now under confinement
    probe = plan["probe_file"]
    try:
        if probe is not None:
            import runpy

            runpy.run_path(probe, init_globals={"channel": channel}, run_name="__main__")
        else:
            import importlib

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


def main(argv: list[str]) -> int:
    """Run the bootstrap on the plan in ``argv[1]`` (JSON); return the exit status."""
    plan = json.loads(argv[1])
    channel_fd = int(plan["channel_fd"])
    try:
        _check_fds(channel_fd)
    except OSError as exc:
        print(f"securehub sandbox: {exc}", file=sys.stderr)
        return EXIT_CONFINE_FAILED
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # noqa: PTH100, PTH120
    _load_isolation(root)
    achieved = _confine(plan)
    _forget_stubs()
    os.chdir(plan["tmpdir"])
    problems = achieved.pop("problems")
    channel = socket.socket(fileno=channel_fd)
    _send(channel, "ready", {"isolation": _report(plan, achieved), "problems": problems})
    if not _recv_go(channel):
        return 0
    return _run(plan, channel)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
