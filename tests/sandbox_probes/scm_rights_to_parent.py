"""Probe: send the answer frame with file descriptors attached (SCM_RIGHTS): a file in the child's
temp dir and the channel itself, split over two messages so each carries its own rights."""

import json
import os
import socket
import struct

from securehub.sandbox.wire.protocol import recv_frame

channel: socket.socket  # provided by the bootstrap

recv_frame(channel, max_body_bytes=0)  # noqa: F821 - global from the bootstrap
fd = os.open("planted", os.O_CREAT | os.O_RDWR, 0o600)
header = json.dumps({"type": "result", "meta": {"ok": True}}).encode()
frame = struct.pack(">QI", 4 + len(header), len(header)) + header
rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("ii", fd, channel.fileno()))]  # noqa: F821
channel.sendmsg([frame[:5]], rights)  # noqa: F821
channel.sendmsg([frame[5:]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))])  # noqa: F821
