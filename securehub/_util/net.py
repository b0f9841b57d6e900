"""Host facts decided on the text alone (never by DNS)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Final

_GLOB_CHARS: Final = frozenset("*?[]!")


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


def normalize_host(host: str) -> str:
    """``host`` lower-cased, without IPv6 brackets or a trailing dot (how hosts are compared)."""
    return host.strip().lower().strip("[]").rstrip(".")


def literal_hosts(patterns: Iterable[str]) -> frozenset[str]:
    """The entries of ``patterns`` that name one host literally (no glob characters), normalised.

    Only these count as the policy naming a host *explicitly*: ``"*"`` or
    ``"*.corp"`` admit hosts by pattern, which is not a decision to let a
    repository reach a private address.
    """
    return frozenset(normalize_host(p) for p in patterns if p.strip() and not (_GLOB_CHARS & set(p)))


def rewrite_by_prefix(url: str, prefixes: Mapping[str, str]) -> str | None:
    """``url`` with its longest matching key of ``prefixes`` replaced by that key's value; ``None`` if none matches.

    A key matches only at a boundary: it ends with ``/``, or ``url`` continues after it with ``/``,
    ``?`` or ``#`` (or ends there). So ``https://a.org`` matches ``https://a.org/x`` but not
    ``https://a.org.evil.com/x`` or ``https://a.org:8443/x`` (another host or origin).
    """

    def matches(prefix: str) -> bool:
        if not prefix or not url.startswith(prefix):
            return False
        return prefix.endswith("/") or len(url) == len(prefix) or url[len(prefix)] in "/?#"

    found = [prefix for prefix in prefixes if matches(prefix)]
    if not found:
        return None
    best = max(found, key=len)
    return prefixes[best] + url[len(best) :]
