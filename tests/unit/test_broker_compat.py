"""Start-time checks: the kombu and Celery the transport is built for, and the Redis its scripts need."""

from __future__ import annotations

from typing import Any

import pytest
from kombu import Connection

from greenq.shared import broker_compat, redis_transport
from greenq.shared.broker_compat import UnsupportedDependency, library_problem, parse_version, redis_problem


def test_versions_parse_to_their_numeric_release() -> None:
    assert parse_version("5.7.0") == (5, 7, 0)
    assert parse_version("5.8.0rc1") == (5, 8, 0)
    assert parse_version("7.2.4-valkey") == (7, 2, 4)
    assert parse_version("") == ()


@pytest.mark.parametrize("found", ["5.7.0", "5.7.3", "5.7"])
def test_the_tested_kombu_range_passes(found: str) -> None:
    assert library_problem("kombu", found, broker_compat.SUPPORTED_KOMBU) is None


@pytest.mark.parametrize("found", ["5.5.4", "5.6.2", "5.8.0", "6.0.0", ""])
def test_a_kombu_outside_the_tested_range_is_named_with_the_range_needed(found: str) -> None:
    problem = library_problem("kombu", found, broker_compat.SUPPORTED_KOMBU)
    assert problem is not None
    assert "kombu>=5.7,<5.8" in problem and (found or "no version") in problem


def test_installing_the_transport_stops_at_once_on_an_unsupported_kombu(monkeypatch: pytest.MonkeyPatch) -> None:
    """`celery[redis]>=5.5` admitted kombu 5.5, which lacks `Producer.batch` and the internals the
    transport overrides: the process failed on its first message, not at start."""
    real = broker_compat.metadata.version
    monkeypatch.setattr(broker_compat.metadata, "version", lambda name: "5.5.4" if name == "kombu" else real(name))
    with pytest.raises(UnsupportedDependency, match=r"needs kombu>=5\.7,<5\.8 .* found kombu 5\.5\.4"):
        redis_transport.install()


def test_installing_the_transport_checks_celery_too(monkeypatch: pytest.MonkeyPatch) -> None:
    real = broker_compat.metadata.version
    monkeypatch.setattr(broker_compat.metadata, "version", lambda name: "5.8.1" if name == "celery" else real(name))
    with pytest.raises(UnsupportedDependency, match=r"found celery 5\.8\.1"):
        redis_transport.install()


def test_the_installed_libraries_are_in_the_tested_range() -> None:
    broker_compat.check_libraries()  # what pyproject.toml pins


@pytest.mark.parametrize("found", ["6.2.0", "7.0.15", "7.2.4"])
def test_a_recent_redis_passes(found: str) -> None:
    assert redis_problem(found) is None


@pytest.mark.parametrize("found", ["6.0.16", "5.0.7", "3.2.12", ""])
def test_an_old_redis_is_named_with_the_version_needed(found: str) -> None:
    problem = redis_problem(found)
    assert problem is not None and "Redis >= 6.2.0" in problem and (found or "not reported") in problem


class _OldServer:
    def info(self, section: str) -> dict[str, Any]:
        assert section == "server"
        return {"redis_version": "6.0.16"}


class _OldServerChannel:
    ResponseError = Exception

    class connection:  # noqa: N801 - the shape of kombu's channel.connection.client
        class client:  # noqa: N801
            hostname, port, virtual_host = "old-redis.example", 6379, "0"

    def conn_or_acquire(self) -> Any:
        from contextlib import nullcontext

        return nullcontext(_OldServer())


def test_the_first_connection_to_an_old_redis_fails_with_the_versions() -> None:
    with pytest.raises(UnsupportedDependency, match=r"Redis >= 6\.2\.0 .* found redis_version 6\.0\.16"):
        redis_transport.check_server_once(_OldServerChannel())  # type: ignore[arg-type]


def test_a_real_server_passes_the_check() -> None:
    from tests.unit.redis_server import server

    redis_transport.install()
    with Connection(server().url) as connection:
        connection.channel()  # checks the server's version on the first channel
