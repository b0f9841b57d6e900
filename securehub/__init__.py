"""securehub: a security-first, sandboxed replacement for torch.hub."""

from __future__ import annotations

from securehub._hubdir import get_dir, set_dir
from securehub.errors import SecureHubError

__all__ = ["SecureHubError", "get_dir", "set_dir"]
__version__ = "0.1.0"
