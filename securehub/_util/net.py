"""Host facts decided on the text alone (never by DNS)."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """``localhost``, an address in ``127.0.0.0/8`` or ``::1`` (brackets and a trailing dot allowed).

    Decided on the text, never by resolving the name: plain ``http://`` and
    ``git+http://`` are allowed only for loopback hosts, and a DNS answer is
    not something to base that on.
    """
    name = host.lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False
