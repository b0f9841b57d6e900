"""Where a repository-chosen URL may connect: public addresses only (SSRF, red-team finding 5).

During ``load``/``list``/``help`` and ``securehub lock -e`` the hubconf runs in
the sandbox, but it can still make the *parent* connect somewhere: an
artifact URL it asks the broker for, or a ``git+…`` remote of a nested
``torch.hub.load``. Unless the user pinned that URL (hub.lock), configured it
(a mirror, the GitHub base URL) or names its host literally in the policy,
the parent may connect only to globally routable unicast addresses - never
loopback, private (RFC 1918, ULA ``fc00::/7``), link-local (``169.254/16``,
``fe80::/10``: cloud metadata at ``169.254.169.254``), CGNAT ``100.64/10``,
unspecified, multicast, documentation/benchmark/reserved ranges, nor an
IPv4 address of that kind wrapped in IPv6 (mapped, 6to4, NAT64).

The decision is made on the *resolved* addresses, never on the URL text
(``http://2130706433/``, ``http://0x7f.1/``, ``localhost`` and DNS names all
resolve to what they really reach), every address a name resolves to must
pass, and the caller connects to exactly the addresses returned here - never
resolving the name again, so a DNS answer cannot change between check and
connect (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Final

from securehub._util.net import literal_hosts, normalize_host

__all__ = [
    "AddressGuard",
    "AddressRefused",
    "literal_hosts",
    "non_public_reason",
    "normalize_host",
    "resolve_public",
]

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges ``ipaddress.is_global`` (Python 3.11) still calls global that are not reachable public
#: unicast destinations: shared address space (checked explicitly for clarity) and local-use NAT64.
_EXTRA_NON_PUBLIC: Final = (
    (ipaddress.ip_network("100.64.0.0/10"), "carrier-grade NAT (100.64.0.0/10)"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"),
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):  # noqa: N818 - an internal signal; callers raise the coded SecureHubError
    """``host`` resolved to ``address``, which is not a public address (``reason`` says what it is).

    Deliberately not an ``OSError``: raised inside an HTTP connection it must
    not be retried or wrapped as a connection failure by urllib3/requests.
    """

    def __init__(self, host: str, port: int, address: str, reason: str) -> None:
        super().__init__(f"{host}:{port} resolves to {address}, which is not a public address ({reason})")
        self.host = host
        self.port = port
        self.address = address
        self.reason = reason


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries and reaches (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def non_public_reason(address: str) -> str | None:
    """Why ``address`` (an IP literal, IPv6 scope id allowed) is not public, or None when it is.

    Fails closed: a string that is not an IP address is "not an IP address".
    """
    try:
        ip: _IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = non_public_reason(str(inner))
            return f"{reason} (IPv4 {inner} inside IPv6)" if reason else None
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local (cloud metadata services live at 169.254.169.254)"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    for network, reason in _EXTRA_NON_PUBLIC:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:
        return "non-global"
    return None


def resolve_public(host: str, port: int) -> tuple[str, ...]:
    """Resolve ``host`` and return its addresses, all public; :class:`AddressRefused` otherwise.

    Every address must pass (a name with one public and one private address
    is refused: the connection could land on either). The caller must connect
    to the returned addresses only. ``socket.gaierror`` propagates when the
    name does not resolve.
    """
    name = normalize_host(host)
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        reason = non_public_reason(address)
        if reason is not None:
            raise AddressRefused(name, port, address, reason)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{name} resolved to no address")
    return tuple(addresses)


@dataclass(frozen=True)
class AddressGuard:
    """The connect-time rule for one operation's repository-chosen connections.

    ``explicit_hosts``: hosts the policy names literally (any port).
    ``trusted_origins``: ``(host, port)`` pairs configured by the user (a
    mirror's own origin), trusted as configured. Everything else must resolve
    to public addresses only.
    """

    explicit_hosts: frozenset[str] = frozenset()
    trusted_origins: frozenset[tuple[str, int]] = frozenset()

    def addresses_for(self, host: str, port: int) -> tuple[str, ...] | None:
        """``None`` when ``host:port`` is trusted as configured (connect as usual); else the checked
        public addresses to connect to. Raises :class:`AddressRefused` / ``socket.gaierror``."""
        name = normalize_host(host)
        if name in self.explicit_hosts or (name, port) in self.trusted_origins:
            return None
        return resolve_public(name, port)
