"""Probe: exit with status 3 without answering."""

raise SystemExit(3)
