"""`greenq dlq` with the broker and the result backend on two redis-servers.

Workers dead-letter refused jobs and task messages on the result backend; the transport dead-letters
list items it cannot read on the broker. With one server for both that is one store; split, `greenq dlq`
read only the backend's, and the transport's dead letters were invisible.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from greenq.shared.deadletter import DeadLetterStore
from greenq.shared.local_redis import LocalRedis, free_port, start_redis
from greenq.shared.queues import queue_name
from tests.integration.harness import stack


@pytest.fixture
def two_servers() -> Iterator[tuple[LocalRedis, LocalRedis]]:
    broker, backend = start_redis(free_port()), start_redis(free_port())
    try:
        yield broker, backend
    finally:
        broker.stop()
        backend.stop()


def test_dlq_shows_the_dead_letters_of_both_servers_within_the_bounds(
    two_servers: tuple[LocalRedis, LocalRedis], tiny_model_dir: Path, tmp_path: Path
) -> None:
    broker_server, backend_server = two_servers
    env = {"GREENQ_RESULT_BACKEND_URL": backend_server.url, "GREENQ_DEAD_LETTERS__MAX_RECORDS": "2"}
    with stack(broker_server.port, tiny_model_dir, env, url=broker_server.url) as s:
        s.start_worker(tmp_path / "w.log")
        broker = redis.Redis.from_url(broker_server.url)
        queue = queue_name("reply")
        for i in range(4):  # read by the transport on the broker: dead-lettered there, two kept
            broker.lpush(queue, f"not json {i}".encode())
        unknown = s.client.app.send_task("greenq.jobs.poem", args=[{}], queue=queue).id  # on the backend
        s.wait_for(lambda: DeadLetterStore(broker).dropped() == 2, what="the transport's dead letters")
        s.wait_for(lambda: len(DeadLetterStore(s.redis).list()) == 1, what="the worker's dead letter")

        listed = s.cli("dlq", "list")
        assert listed.returncode == 0, listed.stderr
        assert "unknown task 'greenq.jobs.poem'" in listed.stdout and unknown in listed.stdout
        assert listed.stdout.count("undecodable message") == 2, listed.stdout
        assert "2 older dead letters were dropped" in listed.stderr

        [from_broker, _] = DeadLetterStore(broker).list()
        shown = s.cli("dlq", "show", from_broker.id)  # found on the broker
        assert shown.returncode == 0 and from_broker.raw and from_broker.raw in shown.stdout
        assert "purged 3 dead letters" in s.cli("dlq", "purge").stdout
        assert DeadLetterStore(broker).list() == [] and DeadLetterStore(s.redis).list() == []
        broker.close()
