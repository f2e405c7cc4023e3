"""Who is connecting: address allowlists (CIDRs) and the client address behind proxies.

``X-Forwarded-For`` is written by whoever sent the request, so it is believed only as far
as it was written by proxies we trust: the chain is read from the right (the hop nearest
to us), trusted proxies are skipped, and the first address that is not a trusted proxy
is the client. Anything a client put further left is never looked at.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from enclave.errors import ConfigError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_V4_WITH_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")
_V6_BRACKETED = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::\d{1,5})?")


class Allowlist:
    """A set of networks (``"10.0.0.0/8"``, ``"2001:db8::/32"``, or single addresses).

    :meth:`allows` answers *may this address connect*: an empty list allows everyone.
    :meth:`contains` answers *is this address listed*: an empty list contains no one
    (the right question for trusted proxies).
    """

    def __init__(self, cidrs: Iterable[str], *, name: str = "allowlist") -> None:
        self.networks: tuple[Network, ...] = tuple(_network(c, name) for c in cidrs)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"Allowlist({[str(n) for n in self.networks]!r})"

    def contains(self, ip: str) -> bool:
        address = parse_ip(ip)
        return address is not None and self.has(address)

    def has(self, address: Address) -> bool:
        return any(address in net for net in self.networks)

    def allows(self, ip: str) -> bool:
        return not self.networks or self.contains(ip)


def parse_ip(text: str) -> Address | None:
    """An address from a peer or a forwarded hop; ``None`` if it is not one.

    Accepts ``1.2.3.4:5678`` and ``[2001:db8::1]:443`` (some proxies add the port), drops
    an IPv6 zone (``fe80::1%eth0``) and turns IPv4-mapped IPv6 (``::ffff:1.2.3.4``) into
    the IPv4 address, so that IPv4 networks match it.
    """
    text = text.strip()
    for pattern in (_V4_WITH_PORT, _V6_BRACKETED):
        found = pattern.fullmatch(text)
        if found:
            text = found.group(1)
    try:
        address: Address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_ip(
    peer: str | None,
    forwarded_for: Sequence[str],
    trusted: Allowlist | Iterable[str],
) -> str:
    """The client's address, as a string (``""`` when even the peer is unknown).

    ``forwarded_for`` holds the ``X-Forwarded-For`` header values in the order received
    (each may list several hops, comma-separated). They count only when ``peer`` is a
    trusted proxy. A malformed hop ends the walk: the last trusted hop is the answer.
    """
    proxies = trusted if isinstance(trusted, Allowlist) else Allowlist(trusted)
    current = parse_ip(peer) if peer else None
    if current is None:
        return peer or ""
    for hop in reversed(_hops(forwarded_for)):
        if not proxies.has(current):
            break
        address = parse_ip(hop)
        if address is None:
            break
        current = address
    return str(current)


def _hops(forwarded_for: Sequence[str]) -> list[str]:
    return [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]


def _network(cidr: str, name: str) -> Network:
    try:
        net: Network = ipaddress.ip_network(cidr.strip(), strict=False)
    except (ValueError, TypeError):
        raise ConfigError(f"invalid address or CIDR in {name}: {cidr!r}") from None
    mapped = net.network_address.ipv4_mapped if net.version == 6 else None
    if mapped is not None and net.prefixlen >= 96:  # ::ffff:10.0.0.0/104 is 10.0.0.0/8
        return ipaddress.IPv4Network(f"{mapped}/{net.prefixlen - 96}")
    return net
