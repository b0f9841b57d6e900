"""A call spy shared by tests that assert which step functions ran, and in which order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def spy(events: list[str], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, appending ``label`` to ``events`` each time it is called (before it runs)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        events.append(label)
        return fn(*args, **kwargs)

    return wrapped
