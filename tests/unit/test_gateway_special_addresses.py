"""Callbacks never go to an address in IANA's special-purpose registries, nor to one Python's ipaddress calls
private, reserved or not global: checked block by block, and on a seeded sample of the whole address space."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest

from greenq.producers.gateway.addresses import SPECIAL_PURPOSE, IPAddress, classify

SEED = 20261204


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("fec0::1", "site-local"),  # deprecated (RFC 3879), still routed inside some sites
        ("feff:ffff::1", "site-local"),
        ("192.0.0.8", "IETF protocol assignment"),  # 192.0.0.0/24: Python 3.11 calls 192.0.0.8 global
        ("192.0.0.9", "IETF protocol assignment"),  # PCP anycast: an anycast service, not a webhook
        ("192.0.0.10", "IETF protocol assignment"),  # TURN anycast
        ("192.0.0.255", "IETF protocol assignment"),
        ("192.31.196.1", "AS112"),
        ("192.175.48.1", "AS112"),
        ("192.52.193.1", "AMT"),
        ("192.88.99.1", "6to4 relay anycast"),
        ("3fff::1", "documentation"),  # RFC 9637, newer than Python 3.11's tables
        ("5f00::1", "SRv6 SID"),
        ("64:ff9b:1::1", "local-use NAT64"),
        ("100::1", "discard-only"),
        ("2001:db8::1", "documentation"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "broadcast"),
        ("0.1.2.3", "this-network"),
        ("2001:20::1", "IETF protocol assignment"),  # ORCHIDv2: identifiers, not locators
    ],
)
def test_special_purpose_addresses_are_refused(address: str, reason: str) -> None:
    assert classify(ipaddress.ip_address(address)) == reason


def _ends(network: Any) -> list[IPAddress]:
    return [network.network_address, network.broadcast_address, network.network_address + network.num_addresses // 2]


@pytest.mark.parametrize(("network", "name"), SPECIAL_PURPOSE, ids=lambda x: str(x))
def test_every_registered_block_is_refused_end_to_end(network: Any, name: str) -> None:
    for address in _ends(network):
        assert classify(address) is not None, address


def _python_blocks() -> list[Any]:
    """The networks Python's own ipaddress tables name private, reserved, link-local, site-local, ..."""
    found: list[Any] = []
    for constants in (ipaddress._IPv4Constants, ipaddress._IPv6Constants):  # type: ignore[attr-defined]
        for name, value in vars(constants).items():
            if name.startswith("_") and name.endswith(("_network", "_networks")) and name != "_public_network":
                found.extend(value if isinstance(value, list) else [value])
    return found


@pytest.mark.parametrize("network", _python_blocks(), ids=str)
def test_every_block_pythons_tables_name_is_refused(network: Any) -> None:
    for address in _ends(network):
        assert classify(address) is not None, address


def _sample(rng: random.Random, n: int) -> list[IPAddress]:
    addresses: list[IPAddress] = [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(n)]
    addresses += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(n)]
    # Plus addresses near every special block, where random ones seldom land.
    for network, _ in SPECIAL_PURPOSE:
        base = int(network.network_address)
        addresses += [type(network.network_address)(base + rng.randrange(network.num_addresses)) for _ in range(20)]
    return addresses


def test_nothing_python_calls_non_global_passes() -> None:
    for address in _sample(random.Random(SEED), 20_000):
        flags = (address.is_private, address.is_reserved, address.is_multicast, address.is_link_local)
        flags += (address.is_loopback, address.is_unspecified, not address.is_global)
        if isinstance(address, ipaddress.IPv6Address):
            flags += (address.is_site_local,)
        if any(flags):
            assert classify(address) is not None, address


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "1.1.1.1", "8.8.8.8", "192.0.1.1", "192.1.0.1", "2606:4700:4700::1111", "2a00:1450:4001::1"],
)
def test_public_addresses_still_pass(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is None
