"""The time a sandbox child has left, for parent-side work done on its behalf (red team 5).

A child's requests (an artifact, a nested ``torch.hub.load``) are answered by the parent, and the
child's watchdog cannot stop that work: a request made just before the deadline could keep the
parent busy for a whole second budget (``artifacts.download_timeout_s``, a nested sandbox's own
``timeout_s``). The session attaches the child's deadline (``time.monotonic()`` based) to each
request; whoever does the work bounds it with :func:`time_left`.
"""

from __future__ import annotations

import time

from securehub.errors import SandboxTimeout

__all__ = ["time_left"]


def time_left(deadline: float | None, what: str) -> float | None:
    """Seconds until ``deadline`` (``None``: no deadline); ``SandboxTimeout`` naming ``what`` when none are left."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise SandboxTimeout(
            f"the sandbox child's wall-clock limit ran out before {what} could be done for it; nothing it "
            "produced is used. Raise sandbox.timeout_s in the policy if the entrypoint legitimately needs longer"
        )
    return left
