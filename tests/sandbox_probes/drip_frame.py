"""Probe: send a frame one byte every 0.2 s, forever (a slow-loris on the parent's read)."""

import json
import socket
import struct
import time

channel: socket.socket  # provided by the bootstrap

header = json.dumps({"type": "result", "meta": {"x": "y" * 1000}}).encode()
frame = struct.pack(">QI", 4 + len(header), len(header)) + header
for i in range(len(frame)):
    channel.sendall(frame[i : i + 1])  # noqa: F821 - global from the bootstrap
    time.sleep(0.2)
