"""Host facts decided on the text alone (never by DNS)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Final

_GLOB_CHARS: Final = frozenset("*?[]!")
#: A host name as DNS spells it: ASCII letters, digits, '-' and '_' in dot-separated labels (an
#: internationalised name in its ``xn--`` form), an optional trailing dot; no label starts with '-'.
_PLAIN_HOST: Final = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_][A-Za-z0-9_-]{0,62})*\.?")


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


def is_plain_host(host: str) -> bool:
    """Whether ``host`` (as ``urlsplit().hostname`` gives it) is an IP address or a plain ASCII DNS name.

    Not plain: a non-ASCII name (``w\u0435ights.example.com`` with a Cyrillic e, fullwidth letters, the
    ideographic full stop), which HTTP clients map to some other ASCII name before resolving it and a
    reviewer reads as the name it imitates; percent-encoding, spaces or other punctuation. Decided on the
    text alone.
    """
    bare = host.strip("[]")
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return len(host) <= 253 and _PLAIN_HOST.fullmatch(host) is not None
    return True


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
    ``https://a.org.evil.com/x`` or ``https://a.org:8443/x`` (another host or origin). Both sides are
    compared in their canonical origin spelling (:func:`canonical_origin`): ``HTTPS://A.ORG./x`` and
    ``https://a.org:443/x`` name the same origin as ``https://a.org/x``, and a mirror that did not match
    them sent the request to the origin instead of the mirror (red team 14).
    """
    canonical = canonical_origin(url)

    def matches(prefix: str) -> bool:
        if not prefix or not canonical.startswith(prefix):
            return False
        return prefix.endswith("/") or len(canonical) == len(prefix) or canonical[len(prefix)] in "/?#"

    keys = {canonical_origin(prefix): prefix for prefix in prefixes}
    found = [key for key in keys if matches(key)]
    if not found:
        return None
    best = max(found, key=len)
    return prefixes[keys[best]] + canonical[len(best) :]


_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}
_ORIGIN: Final = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>\[[^\]/]*\]|[^/?#:@\[\]]*)(?::(?P<port>[0-9]*))?"
)


def canonical_origin(url: str) -> str:
    """``url`` with its scheme and host lower-cased, a trailing dot of the host and an empty or default port
    (``:443`` for https, ``:80`` for http) dropped; the rest (path, query, fragment) as given. A URL whose
    authority holds user-info or is not ``host[:port]`` is returned unchanged (it is refused elsewhere)."""
    match = _ORIGIN.match(url)
    if match is None or url[match.end() : match.end() + 1] not in ("", "/", "?", "#"):
        return url
    scheme, host, port = match["scheme"].lower(), match["host"].lower(), match["port"]
    if host.endswith(".") and not host.startswith("["):
        host = host[:-1]
    if not host:
        return url
    keep_port = port is not None and port != "" and port != _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{host}{':' + port if keep_port else ''}{url[match.end() :]}"
