"""The package version: one definition, importable from any layer without importing ``securehub`` itself."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
