"""Probe scripts run *inside* the sandbox by the sandbox tests, and the harness that runs them."""
