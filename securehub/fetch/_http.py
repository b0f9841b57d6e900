"""HTTP transport for artifact downloads: URL rules, manual redirects, bounded reads.

Private to :mod:`securehub.fetch.artifacts`. What it guarantees:

* No connection is opened to a URL before its scheme and host were checked
  (:func:`securehub.trust.artifact.check_url`): only ``https``, or ``http`` to a loopback host
  (``127.0.0.0/8``, ``::1``, ``localhost``); no user-info in URLs; the host
  must match the allowlist unless it is exempt (a configured mirror's own
  host). Checks use the URL text only -- no DNS lookup happens for a refused
  URL.
* Redirects are followed by hand (at most :data:`MAX_REDIRECTS` hops), each
  target checked as above before it is contacted, so an ``https -> http``
  downgrade or a hop to a host outside the allowlist is refused.
* Credentials from ``auth_headers_for`` go only to the origin (scheme, host,
  port) of the first request; never to a redirect target elsewhere. Cookies
  are never stored or replayed, and ``~/.netrc`` is not consulted (requests
  would otherwise attach netrc credentials to whatever host a redirect names).
* Bodies are read raw (no content decoding: the digest is over the bytes the
  server sent, as with torch.hub) and never past the caller's limit + 1 byte.
* Time is bounded as a whole, not only per read: with a ``deadline`` (a
  :func:`time.monotonic` value), no new hop is started and no further body
  read is issued after it, and every read returns as soon as *some* bytes
  arrived (``read1``), so a server that drips one byte a second (each read
  well inside the read timeout) still fails with ``network`` at the deadline.
  The overrun past the deadline is at most one read timeout.
* With an :class:`~securehub.fetch.addrguard.AddressGuard` (a URL the repository
  chose, not the user: SSRF, red-team finding 5), every new connection - the
  first request and every redirect hop - resolves the host itself, refuses
  (``artifact-not-allowed``) unless every address is public or the origin is
  trusted as configured, and connects to exactly the checked address; the
  Host header, SNI and certificate check still use the name. Such a session
  ignores proxy settings from the environment (a proxy would resolve the name
  itself, out of the guard's sight) and uses direct connections only.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import socket
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import SplitResult, urljoin

import requests
import requests.adapters
import urllib3
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions
import urllib3.util.connection

from securehub.errors import ArtifactNotAllowed, NetworkError
from securehub.fetch.addrguard import AddressGuard, AddressRefused
from securehub.trust.artifact import check_url, redact_url

__all__ = [
    "MAX_REDIRECTS",
    "HttpBody",
    "check_deadline",
    "open_body",
]

#: Redirect hops followed before giving up (browsers use 20; artifact hosts need 1-2).
MAX_REDIRECTS: Final = 5

_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
_CHUNK_BYTES: Final = 1 << 16
_USER_AGENT: Final = "securehub/0.1"

AuthHeadersFor = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class _Origin:
    scheme: str
    host: str
    port: int


def _origin(parts: SplitResult) -> _Origin:
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return _Origin(scheme, (parts.hostname or "").lower().rstrip("."), port)


class _NoNetrc(requests.auth.AuthBase):
    """An auth hook that adds nothing: its presence stops requests from reading ``~/.netrc``."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def _connect_checked(conn: urllib3.connection.HTTPConnection, addresses: tuple[str, ...]) -> socket.socket:
    """Open a socket to one of ``addresses`` (already checked) - never to a fresh DNS answer."""
    last: OSError | None = None
    for address in addresses:
        try:
            sock = urllib3.util.connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise urllib3.exceptions.ConnectTimeoutError(
                conn, f"Connection to {conn.host} ({address}) timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            last = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    raise urllib3.exceptions.NewConnectionError(conn, f"Failed to establish a new connection: {last}")


def _guarded_new_conn(conn: urllib3.connection.HTTPConnection, guard: AddressGuard) -> socket.socket | None:
    """The socket for ``conn`` after the guard's check, or None to connect as urllib3 would (trusted)."""
    try:
        addresses = guard.addresses_for(conn.host, conn.port)
    except socket.gaierror as exc:
        raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
    return None if addresses is None else _connect_checked(conn, addresses)


class _GuardedHTTPConnection(urllib3.connection.HTTPConnection):
    """An HTTP connection that asks its :class:`AddressGuard` where it may connect."""

    def __init__(self, *args: Any, address_guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address_guard = address_guard

    def _new_conn(self) -> socket.socket:
        sock = _guarded_new_conn(self, self._address_guard)
        return super()._new_conn() if sock is None else sock


class _GuardedHTTPSConnection(_GuardedHTTPConnection, urllib3.connection.HTTPSConnection):
    """The same guard for HTTPS (the MRO puts the guarded ``_new_conn`` first; SNI and the
    certificate check still use the host name)."""


class _GuardedPoolManager(urllib3.PoolManager):
    """A pool manager whose pools open only guarded connections."""

    def __init__(self, address_guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._address_guard = address_guard

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> urllib3.connectionpool.HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = _GuardedHTTPSConnection if scheme == "https" else _GuardedHTTPConnection
        pool.conn_kw["address_guard"] = self._address_guard
        return pool


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose every connection goes through an :class:`AddressGuard`; no proxies."""

    def __init__(self, address_guard: AddressGuard) -> None:
        self._address_guard = address_guard
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        self.poolmanager = _GuardedPoolManager(
            self._address_guard, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> urllib3.ProxyManager:
        # A proxy resolves the name itself: the guard could not check where the request lands.
        raise ArtifactNotAllowed(
            "a proxy was selected for a download the repository chose; expected a direct connection, "
            "whose resolved address securehub can check. Lock the artifact, or configure a mirror for it"
        )


def _guarded_session(guard: AddressGuard | None) -> requests.Session:
    session = requests.Session()
    if guard is not None:
        session.trust_env = False  # no proxies (nor netrc) from the environment
        # trust_env also governed the CA bundle variables; keep honouring those (TLS trust, not routing).
        session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        adapter = _GuardedAdapter(guard)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def _refused_address(exc: AddressRefused, parts: SplitResult, role: str) -> ArtifactNotAllowed:
    return ArtifactNotAllowed(
        f"{role} {redact_url(parts)} was refused before connecting: {exc.host} resolves to {exc.address}, "
        f"which is not a public address ({exc.reason}). A URL chosen by the repository (not locked in "
        "hub.lock) may reach only public addresses; expected a public host. If this host is yours, "
        f"name it literally in the policy's artifacts.hosts (e.g. {exc.host!r}; the '*' glob does not "
        "count), lock the artifact with `securehub lock --url URL`, or configure a mirror for it"
    )


class HttpBody:
    """An open 200 response whose body can be read in bounded chunks."""

    def __init__(self, response: requests.Response, url: str, deadline: float | None = None) -> None:
        self._response = response
        #: The URL that finally answered (after redirects).
        self.url = url
        self._deadline = deadline

    @property
    def content_length(self) -> int | None:
        """The declared ``Content-Length``; :class:`NetworkError` if it is malformed."""
        raw = self._response.headers.get("Content-Length")
        if raw is None:
            return None
        value = raw.strip()
        if not value.isdigit():
            raise NetworkError(
                f"{self.url}: expected a decimal Content-Length header, found {raw!r}; the server is misbehaving"
            )
        return int(value)

    def chunks(self, limit: int) -> Iterator[bytes]:
        """Yield the raw body; stops after at most ``limit + 1`` bytes so a caller sees an overrun.

        Timeouts, broken connections, a body shorter than its ``Content-Length``
        and passing the deadline raise :class:`NetworkError`.
        """
        remaining = limit + 1
        raw = self._response.raw
        while remaining > 0:
            check_deadline(self._deadline, self.url)
            try:
                # read1: return what has arrived instead of waiting to fill the chunk, so a dripping
                # server cannot hold one read open far past the deadline (hostile-server drip attack).
                data = raw.read1(min(_CHUNK_BYTES, remaining), decode_content=False)
            except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                raise NetworkError(f"{self.url}: the download broke off ({_describe(exc)}); try again") from exc
            if not data:
                return
            remaining -= len(data)
            yield data


def check_deadline(deadline: float | None, what: str) -> None:
    """Raise :class:`NetworkError` when ``deadline`` (a :func:`time.monotonic` value) has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise NetworkError(
            f"{what}: the download did not finish within the policy's artifacts.download_timeout_s; the server is "
            "too slow or stalling (nothing was cached). Try again later, use a mirror, or raise "
            "artifacts.download_timeout_s if this artifact is legitimately that slow to fetch"
        )


def _read_timeout(read_timeout_s: float, deadline: float | None) -> float:
    """The per-read timeout: never longer than the time left before the deadline (at least 10 ms)."""
    if deadline is None:
        return read_timeout_s
    return max(0.01, min(read_timeout_s, deadline - time.monotonic()))


@contextlib.contextmanager
def open_body(
    url: str,
    *,
    hosts: Sequence[str],
    exempt_hosts: Collection[str],
    auth_headers_for: AuthHeadersFor | None,
    connect_timeout_s: float,
    read_timeout_s: float,
    guard: AddressGuard | None = None,
    deadline: float | None = None,
) -> Iterator[HttpBody]:
    """GET ``url`` following redirects by hand; yield the final 200 response's body.

    ``deadline`` (a :func:`time.monotonic` value) bounds the whole transfer,
    redirects and body included (module docstring).

    Every hop is checked with :func:`check_url` before it is contacted (the
    first one too); with ``guard``, every connection is also checked on its
    resolved address at connect time (module docstring). Errors:
    :class:`ArtifactNotAllowed` for a refused hop or address,
    :class:`NetworkError` for connection problems, timeouts, HTTP errors and
    more than :data:`MAX_REDIRECTS` redirects.
    """
    current = url
    parts = check_url(current, hosts=hosts, exempt_hosts=exempt_hosts, role="download URL")
    first_origin = _origin(parts)
    role = "download URL"
    with _guarded_session(guard) as session:
        # Never store cookies a server sets, so none are replayed to a redirect target.
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        for hop in range(MAX_REDIRECTS + 1):
            check_deadline(deadline, redact_url(parts))
            headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
            if auth_headers_for is not None and _origin(parts) == first_origin:
                headers.update(auth_headers_for(current))
            try:
                response = session.get(
                    current,
                    headers=headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=(_read_timeout(connect_timeout_s, deadline), _read_timeout(read_timeout_s, deadline)),
                    auth=_NoNetrc(),
                )
            except AddressRefused as exc:
                raise _refused_address(exc, parts, role) from None
            except requests.RequestException as exc:
                raise NetworkError(
                    f"{redact_url(parts)}: could not fetch ({_describe(exc)}); check the network, or set "
                    "SECUREHUB_OFFLINE=1 to use only the cache"
                ) from exc
            with contextlib.closing(response):
                status = response.status_code
                if status in _REDIRECT_CODES:
                    location = response.headers.get("Location")
                    if not location:
                        raise NetworkError(f"{redact_url(parts)}: redirect {status} without a Location header")
                    if hop == MAX_REDIRECTS:
                        raise NetworkError(
                            f"{url}: expected at most {MAX_REDIRECTS} redirects, found more (last: "
                            f"{redact_url(parts)} -> {location}); the server may be in a redirect loop"
                        )
                    current = urljoin(current, location)
                    role = "redirect target"
                    parts = check_url(current, hosts=hosts, exempt_hosts=exempt_hosts, role=role)
                    continue
                if status != 200:
                    raise NetworkError(
                        f"{redact_url(parts)}: expected HTTP 200, found {status} "
                        f"{response.reason or ''}; check the URL or try again later"
                    )
                yield HttpBody(response, redact_url(parts), deadline)
                return
    raise AssertionError("unreachable: the redirect loop returns or raises")  # pragma: no cover


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "connect timeout"
    if isinstance(exc, requests.ReadTimeout | urllib3.exceptions.ReadTimeoutError):
        return "read timeout"
    return type(exc).__name__
