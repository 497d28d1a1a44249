"""`greenq dlq` reads each database once (issue 20 review, finding 10): the broker and the result backend
may be written differently and still be one database (`redis://h:6379` and `redis://h:6379/0`)."""

from __future__ import annotations

import pytest
import redis

from greenq.producers.deadletters import database_of, dead_letter_stores, run_dlq
from greenq.shared.deadletter import DeadLetter, DeadLetterStore
from greenq.shared.settings import Settings
from tests.unit.redis_server import real_redis_fixture, server

real_redis = real_redis_fixture()


def test_one_database_written_two_ways_is_listed_once(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    port = server().port
    settings = Settings(broker_url=f"redis://127.0.0.1:{port}", result_backend_url=f"redis://127.0.0.1:{port}/0")
    letter_id = DeadLetterStore(real_redis, settings.dead_letters).add(DeadLetter("unknown task", job_id="job-1"))
    assert len(dead_letter_stores(settings)) == 1
    assert run_dlq(settings, "list", None) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(listed) == 1 and listed[0].startswith(letter_id)


def test_a_database_is_named_by_host_port_and_number() -> None:
    same = {"redis://h:6379", "redis://h:6379/0", "redis://:secret@H:6379/0", "redis://h/0", "redis://h?db=0"}
    assert {database_of(url) for url in same} == {("h", 6379, 0)}
    assert database_of("redis://h:6379/1") != database_of("redis://h:6379/0")
    assert database_of("redis://h:6380/0") != database_of("redis://h:6379/0")
    assert database_of("rediss://h:6379/2") == ("h", 6379, 2)
    assert database_of("unix:///run/redis.sock") == database_of("unix:///run/redis.sock?db=0")
    assert database_of("unix:///run/redis.sock?db=3") != database_of("unix:///run/redis.sock")
    sentinel = "sentinel://s1:26379;sentinel://s2:26379/0"  # sentinels name no database: its text is its name
    assert database_of(sentinel) == sentinel


def test_two_databases_are_two_stores() -> None:
    settings = Settings(broker_url="redis://127.0.0.1:1/0", result_backend_url="redis://127.0.0.1:1/1")
    assert len(dead_letter_stores(settings)) == 2  # clients only: nothing is reached
