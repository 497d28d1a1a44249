"""greenq's Lua scripts: one folder, each file used, each loads, and each goes out as EVALSHA.

Issue 21, item 4: the scripts were inlined across eight modules and most went out as raw EVAL (the
transport's fetch on every 50 ms idle poll sent its whole text). Redis counts each command it runs in
`INFO commandstats`, so a test can tell an EVAL from an EVALSHA on a real redis-server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue

from shared import redis_transport
from tests.unit.redis_server import real_redis_fixture, server

real_redis = real_redis_fixture()
QUEUE = Queue("greenq.scripts", Exchange("greenq.scripts"), "greenq.scripts")


def calls(client: redis.Redis, command: str) -> int:
    """How many times the server has run `command` since it started (INFO commandstats)."""
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def connection(real_redis: redis.Redis) -> Iterator[Connection]:
    redis_transport.install()
    made = Connection(server().url, transport_options={"idle_poll_s": 0.05})
    try:
        yield made
    finally:
        made.release()


def drain_idle(connection: Connection, seconds: float) -> list[Any]:
    """Consume from an empty queue for `seconds`, as an idle worker does; returns what arrived."""
    got: list[Any] = []
    channel = connection.channel()
    channel.basic_consume(QUEUE.name, False, got.append, "scripts-consumer")
    QUEUE(channel).declare()
    try:
        connection.drain_events(timeout=seconds)
    except TimeoutError:
        pass
    return got


def test_the_transports_idle_poll_goes_out_as_evalsha(real_redis: redis.Redis, connection: Connection) -> None:
    evals, evalshas = calls(real_redis, "eval"), calls(real_redis, "evalsha")
    assert drain_idle(connection, 0.5) == []
    assert calls(real_redis, "eval") == evals, "the fetch went out as EVAL (its whole text, every poll)"
    assert calls(real_redis, "evalsha") >= evalshas + 3  # about ten polls in 0.5 s
