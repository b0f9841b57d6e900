"""Probe: send hostile bytes on the channel (from the params frame, hex) and keep running."""

import time

from securehub.sandbox.wire.protocol import recv_frame

params = recv_frame(channel, max_body_bytes=0).meta  # noqa: F821
channel.sendall(bytes.fromhex(params["hex"]))  # noqa: F821
if params.get("close"):
    channel.close()  # noqa: F821
    raise SystemExit(0)
time.sleep(3600)
