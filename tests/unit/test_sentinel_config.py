"""sentinel:// URLs reach every Redis client greenq builds, with the master name from one setting (no network)."""

from __future__ import annotations

from pathlib import Path

import kombu.transport
import pytest
from kombu import Connection
from kombu.transport import TRANSPORT_ALIASES
from redis.sentinel import SentinelConnectionPool

from greenq.shared import redis_transport
from greenq.shared.celery_app import make_celery
from greenq.shared.redact import redact_url
from greenq.shared.redis_client import redis_client, sentinel_params
from greenq.shared.result_backend import PollingRedisBackend, PollingSentinelBackend, polling_backend_url
from greenq.shared.settings import Settings

URL = "sentinel://:pw@10.0.0.1:26380/2;sentinel://10.0.0.2"


def test_sentinel_params_take_every_host_and_the_first_urls_credentials() -> None:
    hosts, master = sentinel_params(URL)
    assert hosts == [("10.0.0.1", 26380), ("10.0.0.2", 26379)]
    assert master == {"db": 2, "password": "pw"}
    assert sentinel_params("sentinel://u:p%40ss@h:1")[1] == {"db": 0, "password": "p@ss", "username": "u"}


def test_redis_client_asks_the_sentinels_for_the_named_master() -> None:
    client = redis_client(URL, sentinel_master="orders")
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.is_master and pool.service_name == "orders"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    sentinels = pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in sentinels
    ] == [
        ("10.0.0.1", 26380),
        ("10.0.0.2", 26379),
    ]


def test_celery_gets_the_master_name_and_producers_poll_a_sentinel_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENQ_BROKER_URL", URL)
    monkeypatch.setenv("GREENQ_SENTINEL_MASTER", "orders")
    settings = Settings()
    app = make_celery(settings, producer=True)
    assert app.conf.broker_transport_options["master_name"] == "orders"
    assert app.conf.result_backend_transport_options["master_name"] == "orders"
    assert isinstance(app.backend, PollingSentinelBackend)
    assert type(make_celery(settings).backend).__name__ == "SentinelBackend"
    assert polling_backend_url("redis://h/0").startswith(f"{PollingRedisBackend.__module__}.PollingRedisBackend+")
    assert polling_backend_url("amqp://h//") == "amqp://h//"


def test_workers_route_sentinel_urls_to_the_reliable_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    for scheme in ("redis", "rediss", "sentinel"):
        monkeypatch.setitem(TRANSPORT_ALIASES, scheme, TRANSPORT_ALIASES[scheme])  # restored after the test
    monkeypatch.setattr(kombu.transport, "_transport_cache", dict(kombu.transport._transport_cache))
    Connection(URL, transport_options={"master_name": "orders"}).transport  # noqa: B018 - kombu caches its class
    redis_transport.install()
    transport = Connection(URL, transport_options={"master_name": "orders"}).transport
    assert isinstance(transport, redis_transport.SentinelTransport)
    channel = transport.Channel
    assert issubclass(channel, redis_transport.Channel) and channel.QoS is redis_transport.QoS
    assert {"master_name", "consumer_lease_s", "idle_poll_s"} <= set(channel.from_transport_options)


def test_passwords_in_every_sentinel_url_are_masked() -> None:
    assert redact_url("sentinel://:a@h1:1/0;sentinel://u:b@h2:2/0") == "sentinel://:***@h1:1/0;sentinel://u:***@h2:2/0"


def test_tls_ca_file_with_sentinel_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GREENQ_RESULT_BACKEND_URL", URL)
    monkeypatch.setenv("GREENQ_TLS_CA_FILE", str(tmp_path / "ca.crt"))
    with pytest.raises(ValueError, match="TLS to Sentinel"):
        Settings()
