"""The exceptions the child's replaced torch.hub functions raise into repository code (runs in the child).

Their own module so that :mod:`securehub.sandbox.child.fetch` (downloads)
and :mod:`securehub.sandbox.child.nested` (nested loads) share them without
importing each other (issue 9: the two formed an import cycle).
"""

from __future__ import annotations

__all__ = ["ArtifactRefused", "NestedLoadRefused", "NestedRebuildRefused", "WeightsOnlyRefused"]


class ArtifactRefused(RuntimeError):  # noqa: N818 - reads better at the entrypoint's side
    """The parent refused or failed a request; ``code`` is its error code, ``index`` the request's number.

    The child runtime hands ``code`` and ``index`` back when this ends the
    entrypoint, so the parent re-raises its own original error.
    """

    def __init__(self, code: str, message: str, index: int) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.index = index


class WeightsOnlyRefused(RuntimeError):  # noqa: N818
    """``torch.load`` was asked to unpickle arbitrary objects."""


class NestedLoadRefused(ArtifactRefused):
    """A nested ``torch.hub.load`` was refused by the parent, or the nested load failed there."""


class NestedRebuildRefused(RuntimeError):  # noqa: N818
    """The model a nested ``torch.hub.load`` returned cannot be rebuilt in the child (``reconstruct-refused``).

    The inner load itself succeeded in the parent; its trusted/export rebuild
    here refused it. The child runtime reports this as ``reconstruct-refused``
    (not as the outer entrypoint's own ``entrypoint-error``) when it ends the entrypoint.
    """

    code = "reconstruct-refused"
