"""Where a delivery may be sent: server-side request forgery kept out.

An endpoint's URL names a host; the host is resolved, and every address it resolves to is
checked, so a name that also points inside the network is refused. Refused are addresses that
are not globally routable (private, loopback, link-local, shared, reserved, multicast,
unspecified), also in their IPv6 forms that carry an IPv4 address (mapped `::ffff:a.b.c.d`,
NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo). An administrator allows loopback
(`TASKLIGHT_WEBHOOK_ALLOW_LOOPBACK`) or networks (`TASKLIGHT_WEBHOOK_ALLOWED_NETWORKS`).

The sender then connects to the address it checked (`Destination.address`), never resolving the
name again in between, so a DNS answer that changes after the check cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
#: Longest endpoint URL accepted.
MAX_URL_CHARS = 2000
#: Seconds a host name may take to resolve: an unanswered lookup must not hold up a request.
RESOLVE_TIMEOUT_S = 5.0


class DestinationRefused(ValueError):
    """The URL may not be a webhook destination; the message says why."""


@dataclass(frozen=True)
class Policy:
    """Which addresses besides globally routable ones an administrator allows."""

    allowed: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, *, allow_loopback: bool, allowed_networks: str) -> Policy:
        """The policy of the settings: loopback if allowed, and each network of a comma
        separated list (`10.1.0.0/16, fd00::/8`); raises ValueError for one that is not."""
        networks = [
            ipaddress.ip_network(item.strip(), strict=False)
            for item in allowed_networks.split(",")
            if item.strip()
        ]
        return cls((*LOOPBACK, *networks) if allow_loopback else tuple(networks))

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused, or None if a delivery may go there."""
        for candidate in _forms(address):
            if any(candidate in network for network in self.allowed):
                continue
            if not candidate.is_global or candidate.is_multicast:
                return f"{address} is not a public address ({_kind(candidate)})"
        return None


@dataclass(frozen=True)
class Target:
    """An endpoint URL taken apart."""

    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class Destination:
    """A checked URL: where to connect (`address`), and the host to name in `Host` and TLS."""

    target: Target
    address: str


def parse(url: str) -> Target:
    """The parts of an endpoint URL; raises `DestinationRefused` for one that cannot be one
    (not http(s), no host, credentials in it, too long)."""
    if len(url) > MAX_URL_CHARS:
        raise DestinationRefused(f"the URL is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("the URL must start with https:// or http://")
    if not parts.hostname:
        raise DestinationRefused("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("the URL must not hold credentials; the signature is the proof")
    if "%" in parts.hostname:
        raise DestinationRefused("an IPv6 zone is not allowed in the URL")
    default = 443 if parts.scheme == "https" else 80
    return Target(parts.scheme, parts.hostname.rstrip(".").lower(), port or default)


async def resolve(url: str, policy: Policy) -> Destination:
    """Resolve the URL's host and check every address; the first one, to connect to. Raises
    `DestinationRefused` if any address is refused or the host does not resolve."""
    target = parse(url)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            ),
            RESOLVE_TIMEOUT_S,
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"{target.host} does not resolve ({exc})") from None
    except TimeoutError:
        message = f"{target.host} did not resolve within {RESOLVE_TIMEOUT_S:g} s"
        raise DestinationRefused(message) from None
    addresses: list[str] = []
    for info in infos:
        text = str(info[4][0])
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise DestinationRefused(f"{target.host} resolves to no address")
    for text in addresses:
        reason = policy.refusal(ipaddress.ip_address(text.split("%", 1)[0]))
        if reason is not None:
            raise DestinationRefused(f"{target.host}: {reason}")
    return Destination(target, addresses[0])


def _forms(address: IPAddress) -> list[IPAddress]:
    """The address and each IPv4 address its IPv6 form carries (a mapped address is its IPv4
    address: that is where a connection to it goes)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    forms: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.sixtofour is not None:
            forms.append(address.sixtofour)
        if address.teredo is not None:
            forms.extend(address.teredo)
        if any(address in network for network in _NAT64):
            forms.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return forms


def _kind(address: IPAddress) -> str:
    for kind in ("loopback", "private", "link_local", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "not globally routable"
