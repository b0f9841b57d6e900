"""What a broker answers a sandbox child's fetch request with (no torch: the CLI imports it).

The session (:mod:`securehub.sandbox.parent.session`) asks the caller's *broker* for
every artifact the child requests; the pipeline's
:class:`securehub.pipeline.broker.ArtifactBroker` is the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from securehub.sandbox.wire import messages as m

__all__ = ["Broker", "Verified"]


@dataclass(frozen=True)
class Verified:
    """A broker's answer: the verified artifact's path and the sha256 the broker has just checked it has."""

    path: Path
    sha256: str


#: A broker gets the child's request and returns the path of a downloaded,
#: verified artifact (or a :class:`Verified` naming its digest too), or raises a
#: ``SecureHubError`` (which the child sees).
Broker = Callable[[m.FetchRequest], Path | Verified]
