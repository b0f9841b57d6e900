"""Probe: fill the temp dir with things meant to trip the parent's cleanup, then keep writing.

Reads ``params`` ({"outside": path of a parent file}); leaves symlinks to it and to ``/``, a
hard-link attempt on it, a socket inode, a FIFO attempt, a 1 TiB sparse file attempt, names with
escape sequences and newlines, a directory with mode 0; answers ``result`` with what worked, and
then keeps four threads creating files until it is killed.
"""

import os
import socket
import threading

from securehub.sandbox.wire.protocol import recv_frame, send_frame

channel: socket.socket  # provided by the bootstrap

params = recv_frame(channel, max_body_bytes=0).meta  # noqa: F821 - global from the bootstrap
outside = params["outside"]
done = {}


def attempt(name, func):
    try:
        func()
        done[name] = "ok"
    except OSError as exc:
        done[name] = exc.errno


attempt("symlink_outside", lambda: os.symlink(outside, "to_outside"))
attempt("symlink_root", lambda: os.symlink("/", "to_root"))
attempt("hardlink_outside", lambda: os.link(outside, "hard_outside"))
attempt("hardlink_stderr", lambda: os.link("/proc/self/fd/2", "hard_stderr", follow_symlinks=True))
attempt("fifo", lambda: os.mkfifo("fifo"))


def _bound_socket():
    a, _b = socket.socketpair()
    a.bind(os.path.abspath("sock"))


attempt("socket_inode", _bound_socket)


def _sparse():
    with open("sparse", "wb") as fh:
        fh.truncate(1 << 40)


attempt("sparse_1tib", _sparse)
attempt("sparse_1gib", lambda: open("sparse_small", "wb").truncate(1 << 30))
attempt("escape_name", lambda: open("\x1b]0;pwned\x07\x1b[2J\nname", "w").close())
attempt("mode0_dir", lambda: os.mkdir("locked", 0))


def _writer(i):
    n = 0
    while True:
        n += 1
        try:
            with open(f"w{i}-{n}", "w") as fh:
                fh.write("x")
        except OSError:
            pass


for i in range(4):
    threading.Thread(target=_writer, args=(i,), daemon=True).start()
send_frame(channel, "result", done)  # noqa: F821
threading.Event().wait()
