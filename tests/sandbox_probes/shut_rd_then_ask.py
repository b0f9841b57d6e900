"""Probe: stop reading the channel (``shutdown(SHUT_RD)``), ask for an artifact, then wait.

Whatever the parent answers goes to a socket that no longer reads: the parent's ``send`` fails with
``EPIPE``, which raises ``SIGPIPE`` in the parent unless it sends with ``MSG_NOSIGNAL``.
"""

import socket
import time

from securehub.sandbox.wire.protocol import send_frame

channel: socket.socket  # provided by the bootstrap

channel.shutdown(socket.SHUT_RD)  # noqa: F821 - global from the bootstrap
_META = {
    "url": "https://weights.example.com/w.pth",
    "kind": "load_state_dict",
    "file_name": None,
    "hash_prefix": None,
    "check_hash": False,
}
send_frame(channel, "fetch", _META)  # noqa: F821 - global from the bootstrap
time.sleep(30)
