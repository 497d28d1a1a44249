"""Where a callback may go: public unicast addresses, plus whatever the operator's allow-list names.

Pure rules; the resolver is passed in, so they are testable without DNS. The gateway checks a URL when a
job is submitted and again, against a fresh resolution, just before each attempt; it then connects to the
address it checked, so a name that re-resolves in between (DNS rebinding) cannot redirect the request.

    allow = AllowList.parse(["10.20.0.0/16", "hooks.internal"])
    target = parse_callback_url("https://shop.example/hooks/greenq")
    addresses = check_addresses(target.host, await resolver(target.host, target.port), allow)
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from greenq.shared.settings import HOSTNAME

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAT64 = ipaddress.ip_network("64:ff9b::/96")

# IANA's IPv4 and IPv6 special-purpose address registries (RFC 6890 and later), plus multicast, the reserved
# class E, and deprecated site-local, written out rather than taken from Python's ipaddress, whose tables differ
# by version (3.11 calls 192.0.0.8 and fec0::1 global). Blocks the registry calls globally reachable (PCP and
# TURN anycast, AS112, AMT, ORCHIDv2, ...) are refused too: they are infrastructure, not webhook endpoints, and
# an operator can still allow one. 6to4 (2002::/16), Teredo and NAT64 (64:ff9b::/96) are judged by the IPv4
# address they carry (_embedded_ipv4), IPv4-mapped addresses by Python's reserved ::/8.
SPECIAL_PURPOSE: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(block), name)
    for block, name in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "this-network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.31.196.0/24", "AS112"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("192.175.48.0/24", "AS112"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("100:0:0:1::/64", "dummy"),
        ("2001::/23", "IETF protocol assignment"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "SRv6 SID"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
# Most specific first, so an address is named by the narrowest block it is in (0.0.0.0: unspecified).
_BY_SPECIFICITY = sorted(SPECIAL_PURPOSE, key=lambda entry: -entry[0].prefixlen)
PRINTABLE_ASCII = re.compile(r"^[\x21-\x7e]+$")
# greenq.shared.settings.HOSTNAME, plus underscores, which DNS allows and some internal names use.
CALLBACK_HOST = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)

AsyncResolver = Callable[[str, int], Awaitable[list[str]]]


class CallbackRefused(ValueError):
    """A callback URL the gateway will not post to; the message says why."""


@dataclass(frozen=True)
class CallbackTarget:
    scheme: str  # http or https
    host: str  # lower-case name or address literal, without brackets
    port: int
    request_target: str  # path and query, as sent on the request line
    host_header: str


def parse_callback_url(url: str) -> CallbackTarget:
    if not PRINTABLE_ASCII.match(url):
        raise CallbackRefused("use printable ASCII only: percent-encode the path and punycode the host name")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed or invalid [IPv6] host, say
        raise CallbackRefused(f"the URL cannot be parsed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise CallbackRefused("use an http:// or https:// URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackRefused("credentials in the URL are not supported; verify the signature instead")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise CallbackRefused("the URL has no host")
    _check_host(host, bracketed="[" in parts.netloc)
    try:
        explicit_port = parts.port
    except ValueError:
        raise CallbackRefused("the URL's port is not a number from 1 to 65535") from None
    if explicit_port == 0:
        raise CallbackRefused("the URL's port is not a number from 1 to 65535")
    port = explicit_port or (443 if parts.scheme == "https" else 80)
    named = f"[{host}]" if ":" in host else host
    path = parts.path or "/"
    return CallbackTarget(
        scheme=parts.scheme,
        host=host,
        port=port,
        request_target=f"{path}?{parts.query}" if parts.query else path,
        host_header=f"{named}:{explicit_port}" if explicit_port else named,
    )


def _check_host(host: str, bracketed: bool) -> None:
    """A host getaddrinfo can take: an IP literal, or a name the IDNA codec encodes (no empty or overlong label)."""
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise CallbackRefused(f"the URL's host [{host}] is not an IPv6 address") from None
        return
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    if not CALLBACK_HOST.match(host):
        raise CallbackRefused(
            f"the URL's host {host[:80]!r} is not a valid host name: labels of 1 to 63 letters, digits, hyphens "
            "(or underscores) separated by dots, 253 characters in all; punycode (xn--) an international name"
        )


def _embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo): routes to them must be checked too."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def classify(address: IPAddress) -> str | None:
    """Why an address is no place for a callback (None: a public unicast address)."""
    for inner in _embedded_ipv4(address):
        reason = classify(inner)
        if reason is not None:
            return f"{reason} (inside {address})"
    for network, name in _BY_SPECIFICITY:
        if address.version == network.version and address in network:
            return name
    # Whatever else this Python's tables know about (a block registered after this list was written, say).
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "site-local"
    if not address.is_global:
        return "non-global"
    return None


@dataclass(frozen=True)
class AllowList:
    """Networks and host names an operator lets callbacks reach although they are not public."""

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            networks_or_host = allow_entry(entry)
            if isinstance(networks_or_host, str):
                hosts.add(networks_or_host)
            else:
                networks.append(networks_or_host)
        return cls(tuple(networks), frozenset(hosts))

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


def allow_entry(entry: str) -> IPNetwork | str:
    """One allow-list entry: a CIDR (or bare address), or a host name; ValueError names a bad one."""
    text = entry.strip().lower().rstrip(".")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        pass
    if HOSTNAME.match(text):
        return text
    raise ValueError(f"{entry!r} is neither a CIDR (10.0.0.0/8, fd00::/8, 127.0.0.1) nor a host name")


def check_addresses(host: str, resolved: Sequence[str], allow: AllowList) -> list[IPAddress]:
    """The addresses `host` may be reached at; CallbackRefused if it resolves to none, or to any refused one."""
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
    if not addresses:
        raise CallbackRefused(f"{host} does not resolve to any address")
    if allow.allows_host(host):
        return addresses
    for address in addresses:
        if allow.allows_address(address):
            continue
        reason = classify(address)
        if reason is not None:
            shown = host if host == str(address) else f"{host} resolves to {address}, which"
            article = "an" if reason[0] in "aeiou" else "a"
            raise CallbackRefused(
                f"{shown} is {article} {reason} address; callbacks go to public addresses only "
                "(an operator can allow it with GREENQ_GATEWAY_CALLBACK_ALLOW)"
            )
    return addresses


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a literal resolves to itself); OSError if it does not resolve."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # the IDNA codec refused the name: it cannot be in DNS
        raise OSError(f"{host[:80]!r} is not a name DNS can hold ({exc})") from None
    return [str(info[4][0]) for info in infos]


async def check_url(url: str, allow: AllowList, resolver: AsyncResolver) -> CallbackTarget:
    """What the gateway runs at submit: a well-formed URL whose host resolves only to allowed addresses."""
    target = parse_callback_url(url)
    try:
        resolved = await resolver(target.host, target.port)
    except OSError as exc:  # TimeoutError too
        raise CallbackRefused(f"{target.host} does not resolve ({exc})") from None
    check_addresses(target.host, resolved, allow)
    return target
