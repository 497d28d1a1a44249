"""Where callbacks may go: address classes, the operator's allow-list, URL parsing, re-checks at send time."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenq.producers.gateway.addresses import (
    AllowList,
    CallbackRefused,
    check_addresses,
    check_url,
    classify,
    parse_callback_url,
    resolve,
)
from greenq.shared.settings import Settings

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
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("198.18.0.1", "benchmarking"),
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
        ("https://0..0", "not a valid host name"),  # the IDNA codec refuses empty labels
        ("https://a..b/", "not a valid host name"),
        ("https://.shop.example/", "not a valid host name"),
        (f"https://{'a' * 64}.example/", "not a valid host name"),  # labels are at most 63 characters
        (f"https://{'a.' * 127}example/", "not a valid host name"),  # names at most 253
        ("https://shop%2Eexample/", "not a valid host name"),
        ("http://[::1/", "cannot be parsed"),
        ("http://[zz]/", "cannot be parsed"),
        ("http://[v1.x]/", "not an IPv6 address"),
        ("http://[127.0.0.1]/", "cannot be parsed"),
    ],
)
def test_malformed_callback_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(CallbackRefused, match=problem):
        parse_callback_url(url)


@pytest.mark.parametrize("host", ["shop.example", "xn--shp-sna.example", "a_b.shop.example", f"{'a' * 63}.example"])
def test_unusual_but_valid_host_names_pass(host: str) -> None:
    assert parse_callback_url(f"https://{host}/hook").host == host


URL_CHARACTERS = st.sampled_from([*"ab0-_.:[]%/@?#", "xn--", "a" * 63, "\u00e9", " "])


@given(
    st.sampled_from(["http://", "https://"]),
    st.lists(URL_CHARACTERS, max_size=12).map("".join),
    st.lists(URL_CHARACTERS, max_size=6).map("".join),
)
def test_any_url_is_accepted_or_refused_never_an_error(scheme: str, host: str, rest: str) -> None:
    """Whatever the host, the check answers CallbackRefused or a target getaddrinfo can take (no UnicodeError)."""

    async def resolver(name: str, port: int) -> list[str]:
        name.encode("idna")  # what getaddrinfo does first with a str host: the codec the 500 came from
        return ["93.184.216.34"]

    try:
        target = asyncio.run(check_url(f"{scheme}{host}{rest}", NOTHING_ALLOWED, resolver))
    except CallbackRefused:
        return
    assert 0 < len(target.host) <= 253 and target.host_header.isascii()


def test_a_name_the_idna_codec_refuses_does_not_resolve() -> None:
    with pytest.raises(OSError, match="not a name"):
        resolve("0..0", 443)


def test_the_allow_list_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENQ_GATEWAY_CALLBACK_ALLOW", '["10.0.0.0/8", "hooks.internal"]')
    assert Settings().gateway_callback_allow == ["10.0.0.0/8", "hooks.internal"]
    monkeypatch.setenv("GREENQ_GATEWAY_CALLBACK_ALLOW", '["10.0.0.0/33"]')
    with pytest.raises(ValueError, match="neither a CIDR"):
        Settings()
