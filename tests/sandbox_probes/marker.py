"""Probe: write a marker file at the path in the params frame (proves the probe ran)."""

from securehub.sandbox.wire.protocol import recv_frame, send_frame

params = recv_frame(channel, max_body_bytes=0).meta  # noqa: F821
with open(params["path"], "w") as fh:
    fh.write("ran")
send_frame(channel, "result", {"ok": True})  # noqa: F821
