"""Where callbacks may go: address classes, the operator's allow-list, URL parsing, re-checks at send time."""

from __future__ import annotations

import ipaddress

import pytest

from producers.gateway.addresses import (
    AllowList,
    CallbackRefused,
    RecentAnswers,
    check_addresses,
    check_url,
    classify,
    parse_callback_url,
)
from shared.settings import Settings

NOTHING_ALLOWED = AllowList()


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "unique-local"),
        ("fd00:ec2::254", "unique-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non-global"),
        ("198.18.0.1", "private"),  # benchmarking
    ],
)
def test_internal_addresses_are_classified(address: str, reason: str) -> None:
    assert classify(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a00:1", "2002:7f00:1::"])
def test_ipv4_inside_ipv6_is_checked_too(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert classify(ipaddress.ip_address(address)) is None


def test_the_allow_list_names_networks_and_hosts() -> None:
    allow = AllowList.parse(["127.0.0.1/32", "10.20.0.0/16", "fd00::/8", "Hooks.Internal."])
    assert check_addresses("127.0.0.1", ["127.0.0.1"], allow)
    assert check_addresses("svc", ["10.20.3.4"], allow)
    assert check_addresses("svc6", ["fd00::5"], allow)
    assert check_addresses("hooks.internal", ["192.168.7.7"], allow)  # a named host may resolve anywhere
    with pytest.raises(CallbackRefused, match="10.21.0.1, which is a private address"):
        check_addresses("other", ["10.21.0.1"], allow)
    with pytest.raises(ValueError, match="neither a CIDR"):
        AllowList.parse(["not a host!"])


def test_one_refused_address_among_several_refuses_the_name() -> None:
    with pytest.raises(CallbackRefused, match="shop.example resolves to 127.0.0.1, which is a loopback address"):
        check_addresses("shop.example", ["93.184.216.34", "127.0.0.1"], NOTHING_ALLOWED)
    with pytest.raises(CallbackRefused, match="does not resolve"):
        check_addresses("shop.example", [], NOTHING_ALLOWED)


def test_a_name_is_checked_again_at_send_time() -> None:
    """DNS rebinding: public when submitted, internal when sent. The second check is what refuses it."""
    answers = iter([["93.184.216.34"], ["169.254.169.254"]])
    assert check_addresses("rebind.example", next(answers), NOTHING_ALLOWED)
    with pytest.raises(CallbackRefused, match="link-local"):
        check_addresses("rebind.example", next(answers), NOTHING_ALLOWED)


def test_scoped_ipv6_answers_are_understood() -> None:
    with pytest.raises(CallbackRefused, match="link-local"):
        check_addresses("printer.local", ["fe80::1%eth0"], NOTHING_ALLOWED)


def test_callback_urls_are_parsed_for_a_pinned_request() -> None:
    target = parse_callback_url("https://Shop.Example:8443/hooks/greenq?x=1#frag")
    assert (target.scheme, target.host, target.port) == ("https", "shop.example", 8443)
    assert target.request_target == "/hooks/greenq?x=1" and target.host_header == "shop.example:8443"
    plain = parse_callback_url("http://[2606:4700::1]")
    assert (plain.host, plain.port, plain.request_target) == ("2606:4700::1", 80, "/")
    assert plain.host_header == "[2606:4700::1]"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://user:pw@shop.example/", "credentials"),
        ("http://shop.example/a b", "printable ASCII"),
        ("http://shop.example/\r\nX-Evil: 1", "printable ASCII"),
        ("http://shöp.example/", "printable ASCII"),
        ("ftp://shop.example/", "http"),
        ("http://shop.example:99999/", "port"),
        ("http:///path", "no host"),
    ],
)
def test_malformed_callback_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(CallbackRefused, match=problem):
        parse_callback_url(url)


def test_the_allow_list_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENQ_GATEWAY_CALLBACK_ALLOW", '["10.0.0.0/8", "hooks.internal"]')
    assert Settings().gateway_callback_allow == ["10.0.0.0/8", "hooks.internal"]
    monkeypatch.setenv("GREENQ_GATEWAY_CALLBACK_ALLOW", '["10.0.0.0/33"]')
    with pytest.raises(ValueError, match="neither a CIDR"):
        Settings()


def test_recent_answers_spare_a_batch_repeated_lookups() -> None:
    lookups: list[str] = []
    now = [0.0]

    def lookup(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["93.184.216.34"]

    resolver = RecentAnswers(ttl_s=10, lookup=lookup, clock=lambda: now[0])
    for _ in range(500):
        check_url("https://shop.example/hook", NOTHING_ALLOWED, resolver)
    now[0] = 11.0
    check_url("https://shop.example/hook", NOTHING_ALLOWED, resolver)
    assert lookups == ["shop.example", "shop.example"]
