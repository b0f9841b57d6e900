"""Probe: raise an uncaught exception."""

raise ValueError("boom from the probe")
