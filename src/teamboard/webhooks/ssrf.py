"""Server-side request forgery protection for webhook endpoints.

A webhook URL is a request the server makes on an admin's behalf, so it must never reach
what only the server can reach: loopback, private and shared (CGNAT) networks, link-local
addresses (cloud metadata services live at 169.254.169.254 and fd00:ec2::254), multicast,
reserved and unspecified addresses, or IPv4 addresses hidden in IPv6 ones (mapped, 6to4,
NAT64). The rules apply to the *resolved* addresses, never to the host name's spelling
(``localhost``, ``0x7f.1``, ``2130706433`` and DNS names pointing inside all resolve to
refused addresses).

* :meth:`Guard.check_url` validates the URL's form: ``https`` (``http`` only with
  ``WEBHOOK_ALLOW_HTTP``), a host, no credentials, no fragment.
* :meth:`Guard.resolve` resolves the host **once** and refuses it when any address is
  refused (a name with one public and one private address is refused). The sender then
  connects to the checked address itself (``teamboard.webhooks.delivery``), so a second,
  different DNS answer (rebinding) can never be used.
* Redirects are never followed (a 3xx is a failed attempt), so none can lead inside.

``WEBHOOK_ALLOWED_NETWORKS`` (CIDRs) lets chosen networks through anyway: receivers on
premises, or the tests' receiver on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``(host, port) -> addresses``; the default asks the system resolver (tests inject one).
Resolver = Callable[[str, int], Awaitable[list[str]]]

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
MAX_URL_LENGTH = 2048


class RefusedUrl(ValueError):
    """The URL may not be used; ``code`` says why (a stable error code)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Target:
    """Where to connect: the checked address, and the URL's host (Host header, TLS SNI)."""

    url: httpx.URL
    address: str
    host: str


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return [str(info[4][0]) for info in infos]


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _NAT64_LOCAL:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast, and so is any IPv4 address it carries."""
    inner = embedded_ipv4(address)
    if inner is not None and not is_public(inner):
        return False
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def parse_networks(text: str) -> list[Network]:
    parts = (part.strip() for part in text.split(","))
    return [ipaddress.ip_network(part, strict=False) for part in parts if part]


class Guard:
    def __init__(
        self,
        *,
        allowed_networks: Sequence[Network] = (),
        allow_http: bool = False,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._allowed = list(allowed_networks)
        self._schemes = {"https", "http"} if allow_http else {"https"}
        self._resolver = resolver

    def allows(self, address: IPAddress) -> bool:
        return any(address in network for network in self._allowed) or is_public(address)

    def check_url(self, raw: str) -> httpx.URL:
        if len(raw) > MAX_URL_LENGTH:
            raise RefusedUrl("webhook_url_invalid", "The URL is too long")
        try:
            url = httpx.URL(raw)
        except httpx.InvalidURL as exc:
            raise RefusedUrl("webhook_url_invalid", "The URL is malformed") from exc
        if url.scheme not in self._schemes:
            schemes = " or ".join(sorted(self._schemes))
            raise RefusedUrl("webhook_url_invalid", f"The URL must use {schemes}")
        if not url.host or url.userinfo or url.fragment:
            raise RefusedUrl(
                "webhook_url_invalid", "The URL needs a host, and no credentials or fragment"
            )
        return url

    async def resolve(self, raw: str) -> Target:
        """The URL and the one address to connect to, or :class:`RefusedUrl`."""
        url = self.check_url(raw)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            found = await self._resolver(url.host, port)
        except (OSError, UnicodeError) as exc:
            raise RefusedUrl("webhook_url_unresolvable", "The host does not resolve") from exc
        addresses = [ipaddress.ip_address(address.split("%")[0]) for address in found]
        if not addresses:
            raise RefusedUrl("webhook_url_unresolvable", "The host does not resolve")
        refused = [address for address in addresses if not self.allows(address)]
        if refused:
            raise RefusedUrl(
                "webhook_url_refused",
                "The URL resolves to an address webhooks may not reach"
                " (private, loopback, link-local, metadata or reserved)",
            )
        return Target(url, str(addresses[0]), url.host)
