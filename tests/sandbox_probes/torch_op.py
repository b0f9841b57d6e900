"""Probe: import torch and run a tiny tensor op; report the result and the import time."""

import time

t0 = time.monotonic()
import torch  # noqa: E402

from securehub.sandbox.wire.protocol import send_frame  # noqa: E402

value = float((torch.arange(4.0) * 2).sum())
send_frame(channel, "result", {"value": value, "import_s": time.monotonic() - t0})  # noqa: F821
