"""Audit hook of the child: turns forbidden attempts into readable violations (runs in the child).

``sys.addaudithook`` is not a security boundary (ctypes and C extensions
bypass it); the OS-level confinement is. What this adds is *naming*: when an
entrypoint fails because Landlock or the network namespace refused
something, the user sees ``connect 127.0.0.1:8080`` or
``open /root/.ssh/id_rsa`` instead of a bare ``PermissionError``. The hook
only records; it never raises (an exception in an audit hook would abort the
audited operation in ways that differ from the OS refusing it).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["Watch", "install"]

_MAX_RECORDED = 32

#: Path components that name credentials wherever they are.
_SECRET_PARTS = frozenset(
    {
        ".ssh",
        ".netrc",
        ".aws",
        ".gnupg",
        ".docker",
        ".kube",
        ".git-credentials",
        ".pypirc",
        ".azure",
        "gcloud",
        "hub.lock",
        "id_rsa",
        "id_ed25519",
    }
)
#: Directories a child never has a reason to read, unless an allowed root is inside them.
_SECRET_ROOTS = (
    "/root",
    "/home",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/ssh",
    "/etc/sudoers",
    "/run/secrets",
    "/var/run/secrets",
)

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass
class Watch:
    """Recorded violations, and the switch that says whether repo code is running."""

    write_roots: tuple[str, ...]
    read_roots: tuple[str, ...]
    network_allowed: bool = False
    filesystem_open: bool = False
    active: bool = False
    violations: list[str] = field(default_factory=list)
    #: Reads outside the allowed roots that are not obviously secrets. Not violations by
    #: themselves (libraries probe optional files and cope with the refusal), but they name
    #: the attempt when the entrypoint then fails with a permission error.
    attempts: list[str] = field(default_factory=list)

    def allow_read(self, path: str) -> None:
        """Add a path (an artifact handed over by the parent) to the allowed read roots."""
        self.read_roots = (*self.read_roots, os.path.realpath(path))

    def record(self, what: str) -> None:
        if what not in self.violations and len(self.violations) < _MAX_RECORDED:
            self.violations.append(what)

    def attempt(self, what: str) -> None:
        if what not in self.attempts and len(self.attempts) < _MAX_RECORDED:
            self.attempts.append(what)

    # -- event handlers ---------------------------------------------------------------

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            self._on_open(args)
        elif event in ("socket.connect", "socket.sendto") and not self.network_allowed:
            self.record(f"connect {_address(args[1] if event == 'socket.connect' else args[-1])}")
        elif event == "socket.getaddrinfo" and not self.network_allowed and not _is_ip(args[0]):
            self.record(f"resolve {_text(args[0])}")
        elif event == "subprocess.Popen":
            self.record(f"exec {_argv(args[1], args[0])}")
        elif event == "os.system":
            self.record(f"system {_text(args[0])}")
        elif event in ("os.exec", "os.posix_spawn", "os.spawn"):
            self.record(f"exec {_argv(args[1] if len(args) > 1 else None, args[0])}")
        elif event in ("os.fork", "os.forkpty"):
            self.record("fork")
        elif event in ("os.kill", "os.killpg") and args and args[0] != os.getpid():
            self.record(f"kill {args[0]}")
        elif event in _FS_CHANGES:
            self._on_change(event, args)
        elif event == "resource.prlimit" and args and args[0] not in (0, os.getpid()) and args[2] is not None:
            # Changing another process's limits (the red team lowered the parent's RLIMIT_CPU to kill
            # it). seccomp refuses it; this names the attempt. Reading limits (args[2] None) is harmless.
            self.record(f"prlimit {args[0]}")

    def _on_change(self, event: str, args: tuple[Any, ...]) -> None:
        """A file system change outside the write roots (``os.makedirs`` in the repository's own tree).

        Recorded as an *attempt*, not a violation: ``os.makedirs(path, exist_ok=True)`` on a directory
        that exists fails with ``EEXIST`` and the code goes on, harmlessly. When the entrypoint then fails
        with a permission error, the attempt names what the OS refused (``mkdir <tree>/src/silero/model``).
        """
        verb, positions = _FS_CHANGES[event]
        for position in positions:
            path = args[position] if position < len(args) else None
            if isinstance(path, int) or path is None:
                continue
            try:
                full = os.path.realpath(os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path))
            except (OSError, ValueError, TypeError):
                continue  # not a path we can name; the OS decides
            if not _under(full, self.write_roots):
                self.attempt(f"{verb} {full}")

    def _on_open(self, args: tuple[Any, ...]) -> None:
        path, mode, flags = [*list(args), None, None][:3]
        if isinstance(path, int) or path is None or self.filesystem_open:
            return
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        try:
            full = os.path.realpath(os.fspath(path))
        except (OSError, ValueError, TypeError):
            return  # not a path we can name; the OS decides
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
        )
        if writing:
            if not _under(full, self.write_roots) and full != os.devnull:
                self.record(f"open {full} for writing")
            return
        if _under(full, self.read_roots) or _under(full, self.write_roots):
            return
        parts = set(PurePosixPath(full).parts)
        if parts & _SECRET_PARTS or _under(full, _SECRET_ROOTS) or _other_proc(full):
            self.record(f"open {full}")
        else:
            self.attempt(f"open {full}")


#: Audit events that change the file system: the verb named, and which arguments are paths
#: (Python's audit events table: ``os.mkdir(path, mode, dir_fd)``, ``os.rename(src, dst, ...)``, ...).
_FS_CHANGES: dict[str, tuple[str, tuple[int, ...]]] = {
    "os.mkdir": ("mkdir", (0,)),
    "os.rmdir": ("rmdir", (0,)),
    "os.remove": ("remove", (0,)),
    "os.rename": ("rename", (0, 1)),
    "os.symlink": ("symlink", (1,)),
    "os.link": ("link", (1,)),
    "os.truncate": ("truncate", (0,)),
    "os.chmod": ("chmod", (0,)),
    "os.utime": ("utime", (0,)),
}


def _is_ip(host: Any) -> bool:
    try:
        ipaddress.ip_address(os.fsdecode(host) if isinstance(host, bytes) else str(host))
    except ValueError:
        return False
    return True


def _other_proc(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return len(parts) > 2 and parts[1] == "proc" and parts[2].isdigit() and parts[2] != str(os.getpid())


def _text(value: Any, limit: int = 200) -> str:
    text = os.fsdecode(value) if isinstance(value, bytes) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _argv(argv: Any, executable: Any) -> str:
    if isinstance(argv, (list, tuple)) and argv:
        return _text(" ".join(_text(a, 80) for a in argv))
    return _text(executable if executable is not None else argv)


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(addr, bytes):
        return "unix:@" + _text(addr[1:]) if addr[:1] == b"\0" else "unix:" + _text(addr)
    if isinstance(addr, str):
        return "unix:" + _text(addr)
    return _text(addr)


def default_read_roots() -> tuple[str, ...]:
    """The Python installation, its site-packages, and this package."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths = sysconfig.get_paths()
    roots.update(paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths)
    roots.update(p for p in sys.path if p and p.startswith("/"))
    roots.add(str(Path(__file__).resolve().parents[2]))
    return tuple(sorted({os.path.realpath(r) for r in roots}))


def install(watch: Watch) -> None:
    """Add the audit hook (it cannot be removed; ``watch.active`` switches it)."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        # Never raise from here (see module docstring); a bug in naming must not
        # change what the OS allows, so failures are recorded, not propagated.
        try:
            watch.on_event(event, args)
        except Exception as exc:
            watch.record(f"audit hook could not describe {event}: {type(exc).__name__}")

    sys.addaudithook(hook)
