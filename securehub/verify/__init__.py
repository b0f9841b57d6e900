"""Verification of what crosses into trusted state: digests, signatures, scans."""
