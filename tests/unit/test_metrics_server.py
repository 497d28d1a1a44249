"""The worker's /metrics server binds the address the operator chose (GREENQ_METRICS_HOST)."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from greenq.shared.local_redis import free_port
from greenq.shared.settings import Settings
from greenq.workers.edge.metrics import serve


def _other_address() -> str | None:
    """An address of this host other than loopback, to show a loopback-only server does not answer there."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: nothing is sent; it only picks the outbound interface
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def port() -> Iterator[int]:
    yield free_port()


def test_the_default_is_every_interface_for_a_scraper_in_another_container_or_pod() -> None:
    assert str(Settings().metrics_host) == "0.0.0.0"


def test_a_loopback_host_serves_on_loopback_only(port: int) -> None:
    server = serve(port, CollectorRegistry(), lambda: True, host=Settings(metrics_host="127.0.0.1").metrics_host)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.read() == b"ok\n"
        other = _other_address()
        if other is not None:
            with socket.socket() as s, pytest.raises(OSError):
                s.settimeout(2)
                s.connect((other, port))
    finally:
        server.shutdown()
        server.server_close()


def test_an_ipv6_host_is_served(port: int) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = serve(port, CollectorRegistry(), lambda: False, host=Settings(metrics_host="::1").metrics_host)
    except OSError as exc:  # a container without an IPv6 loopback
        pytest.skip(f"cannot bind ::1: {exc}")
    try:
        with urllib.request.urlopen(f"http://[::1]:{port}/ready", timeout=5) as response:
            raise AssertionError(f"not ready must be 503, got {response.status}")
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
    finally:
        server.shutdown()
        server.server_close()


def test_a_host_that_is_not_an_address_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="metrics_host"):
        Settings(metrics_host="metrics.example")
