"""Probe: try one forbidden (or allowed) action inside the sandbox and report what happened.

Run by the bootstrap with ``runpy`` after confinement; ``channel`` is the
global the bootstrap provides. Reads a ``params`` frame ({"action", "args"}),
answers one ``result`` frame: {"ok": bool, "errno": int | None, "detail": ...}.
"""

import ctypes
import errno
import os
import signal
import socket
import struct
import subprocess

from securehub.sandbox.wire.protocol import recv_frame, send_frame

channel: socket.socket  # provided by the bootstrap


def _attempt(func, *args):
    try:
        detail = func(*args)
    except OSError as exc:
        return {"ok": False, "errno": exc.errno, "detail": str(exc)}
    return {"ok": True, "errno": None, "detail": detail}


def tcp_connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(("127.0.0.1", port))
    s.sendall(b"leak")
    return "connected"


def udp_sendto(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"leak", ("127.0.0.1", port))
    return "sent"


def unix_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"leak")
    return "connected"


def abstract_unix_connect(name):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0" + name)
    s.sendall(b"leak")
    return "connected"


def ctypes_tcp_connect(port):
    """TCP connect through libc directly: no Python socket module, no audit hooks."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket")
    addr = struct.pack("!HH4s8x", socket.AF_INET, port, socket.inet_aton("127.0.0.1"))
    addr = struct.pack("=H", socket.AF_INET) + addr[2:]
    if libc.connect(fd, addr, len(addr)) != 0:
        raise OSError(ctypes.get_errno(), "connect")
    libc.write(fd, b"leak", 4)
    return "connected"


def ctypes_unix_socket():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket")
    return "created"


def dgram_socketpair_sendto(path):
    """A connected AF_UNIX datagram pair (socketpair) re-aimed at a socket outside with sendto."""
    a, _b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.sendto(b"leak", path)
    return "sent"


def dgram_socketpair_connect(path):
    """The same pair re-connected (datagram sockets may connect again) to a socket outside."""
    a, _b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.connect(path)
    a.send(b"leak")
    return "sent"


def ctypes_dgram_socketpair_sendto(path, sock_type):
    """socketpair + sendto through libc: no Python socket module, no audit hook."""
    libc = ctypes.CDLL(None, use_errno=True)
    fds = (ctypes.c_int * 2)()
    if libc.socketpair(socket.AF_UNIX, sock_type, 0, fds) != 0:
        raise OSError(ctypes.get_errno(), "socketpair")
    raw = path.encode()
    addr = struct.pack("=H", socket.AF_UNIX) + raw + b"\0"
    if libc.sendto(fds[0], b"leak", 4, 0, addr, len(addr)) < 0:
        raise OSError(ctypes.get_errno(), "sendto")
    return "sent"


def stream_socketpair_works():
    a, b = socket.socketpair()
    a.sendall(b"ping")
    return b.recv(4).decode()


def open_path(path, flags):
    fd = os.open(path, flags)
    os.close(fd)
    return "opened"


def signal_own_process_group(sig):
    """kill(0, sig): the child's process group also holds the bootstrap's supervisor (outside uid 0)."""
    seen = []
    signal.signal(sig, lambda signum, _frame: seen.append(signum))
    os.kill(0, sig)
    return {"delivered_to_self": seen == [sig]}


def ioctl_on_stdin(request):
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(b"x" * 8)
    if libc.ioctl(0, ctypes.c_ulong(request), buf) != 0:
        raise OSError(ctypes.get_errno(), f"ioctl {request:#x}")
    return "done"


def read_file(path):
    with open(path, "rb") as fh:
        return fh.read(100).decode("latin-1")


def list_dir(path):
    return sorted(os.listdir(path))


def write_file(path):
    with open(path, "w") as fh:
        fh.write("pwned")
    return "written"


def chmod(path, mode):
    os.chmod(path, mode)
    return "changed"


def utime(path):
    os.utime(path, (0, 0))
    return "changed"


def setxattr(path):
    os.setxattr(path, "user.pwn", b"1")
    return "changed"


def os_system(marker):
    rc = os.system(f"echo pwned > {marker}")
    if rc != 0:
        raise OSError(errno.EPERM, f"os.system returned {rc}")
    return "ran"


def subprocess_run(marker):
    subprocess.run(["/bin/sh", "-c", f"echo pwned > {marker}"], check=False)
    return "ran"


def fork_bomb():
    for _ in range(10000):
        if os.fork() == 0:
            while True:
                os.fork()
    return "forked"


def double_fork_daemon(marker):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        if os.fork() == 0:
            with open(marker, "w") as fh:
                fh.write(str(os.getpid()))
            signal.pause()
        os._exit(0)
    return "forked"


def setsid():
    os.setsid()
    return "new session"


def kill(pid, sig):
    os.kill(pid, sig)
    return "signalled"


def x32_syscall():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall(0x40000000 | 39)  # getpid through the x32 ABI: the filter kills
    return "survived"


def raw_syscall(nr):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_long(0), ctypes.c_long(0), ctypes.c_long(0))
    if ret < 0:
        raise OSError(ctypes.get_errno(), f"syscall {nr}")
    return ret


def proc_status():
    with open("/proc/self/status") as fh:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)


def environment():
    return dict(os.environ)


def interpreter():
    """What the interpreter made of its flags and environment: hashing, import path, startup hooks."""
    import sys

    return {
        "hash_randomization": sys.flags.hash_randomization,
        "str_hash": hash("securehub"),
        "set_order": list({"alpha", "beta", "gamma", "delta", "eps", "zeta"}),
        "sys_path": list(sys.path),
        "inspect": sys.flags.inspect,
        "no_user_site": sys.flags.no_user_site,
        "safe_path": getattr(sys.flags, "safe_path", None),
    }


def open_fds():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError as exc:
            out[name] = f"error {exc.errno}"
    return out


def thread_works():
    import threading

    box = []
    t = threading.Thread(target=lambda: box.append(os.getpid()))
    t.start()
    t.join()
    return box[0]


def tmpdir_roundtrip():
    path = os.path.join(os.environ["TMPDIR"], "x.txt")
    with open(path, "w") as fh:
        fh.write("ok")
    with open(path) as fh:
        return fh.read()


def prlimit(pid, which, soft, hard):
    import resource

    return list(resource.prlimit(pid, which, (soft, hard)))


def setpriority(pid, prio):
    os.setpriority(os.PRIO_PROCESS, pid, prio)
    return "reniced"


def sched_setaffinity(pid, cpus):
    os.sched_setaffinity(pid, set(cpus))
    return "pinned"


def ioprio_set(pid):
    # IOPRIO_WHO_PROCESS, class IDLE (3 << 13)
    return raw_syscall_args(251, 1, pid, 3 << 13)


def raw_syscall_args(nr, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if ret < 0:
        raise OSError(ctypes.get_errno(), f"syscall {nr}")
    return ret


def setresuid(uid):
    os.setresuid(uid, uid, uid)
    return "switched"


def ids():
    return {"pid": os.getpid(), "ppid": os.getppid(), "uid": os.getuid(), "gid": os.getgid()}


def deep_dirs(depth, link_target):
    """A directory chain ``depth`` deep (beyond PATH_MAX), an unsearchable dir, a symlink out."""
    os.symlink(link_target, "link_out")
    os.mkdir("locked", 0)
    base = os.open(".", os.O_RDONLY)
    for _ in range(depth):
        os.mkdir("d")
        os.chdir("d")
    with open("leaf", "w") as fh:
        fh.write("x")
    os.symlink(link_target, "deep_link_out")
    os.fchdir(base)
    return depth


params = recv_frame(channel, max_body_bytes=0).meta  # noqa: F821 - global from the bootstrap
result = _attempt(globals()[params["action"]], *params["args"])
send_frame(channel, "result", result)  # noqa: F821
