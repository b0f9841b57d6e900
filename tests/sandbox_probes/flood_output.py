"""Probe: write 256 MiB to stdout and stderr (escape sequences included), then exit with status 3."""

import os

chunk = (b"\x1b]0;pwned\x07\x1b[2J" + b"A" * 1000 + b"\n") * 1024
for _ in range(256 * 1024 * 1024 // len(chunk)):
    os.write(1, chunk)
    os.write(2, chunk)
os._exit(3)
