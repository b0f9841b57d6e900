"""Audit trail (one JSON line per decision) and reports for CI."""
