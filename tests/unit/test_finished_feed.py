"""The gateway hears results as they are stored and makes owner records expire with them
(producers/gateway/finished.py), on a real redis-server."""

from __future__ import annotations

import threading
import time

import redis

from greenq.producers.gateway.finished import FinishedFeed, OwnerRecords
from tests.unit.redis_server import real_redis_fixture

real_redis = real_redis_fixture()
PREFIX = "celery-task-meta-"


class Backend:
    def get_key_for_task(self, job_id: str) -> bytes:
        return f"{PREFIX}{job_id}".encode()


def publish_until_heard(client: redis.Redis, heard: list[str], event: threading.Event, job_id: str) -> bool:
    """Publish a result notification (as the store-once script does) until the feed hears it, for 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        client.publish(f"{PREFIX}{job_id}", b"{}")
        if event.wait(0.2) and job_id in heard:
            return True
    return False


def test_the_feed_hears_each_stored_result_and_subscribes_again_after_losing_its_connection(
    real_redis: redis.Redis,
) -> None:
    heard: list[str] = []
    event = threading.Event()

    def on_finished(job_ids: list[str]) -> None:
        heard.extend(job_ids)
        event.set()

    feed = FinishedFeed(real_redis, PREFIX, on_finished)
    feed.start()
    try:
        assert feed.subscribed.wait(10)
        assert publish_until_heard(real_redis, heard, event, "job-1")
        real_redis.client_kill_filter(_type="pubsub")  # as a Redis restart or a network cut would
        event.clear()
        assert publish_until_heard(real_redis, heard, event, "job-2"), "the feed did not subscribe again"
    finally:
        feed.stop()
    assert "job-1" in heard and "job-2" in heard


def test_an_owner_record_expires_with_its_jobs_result_and_never_later(real_redis: redis.Redis) -> None:
    owners = OwnerRecords(real_redis, Backend())
    real_redis.set("greenq:owner:deferred", "acme", ex=4 * 3600)  # kept until its run_by
    real_redis.set(f"{PREFIX}deferred", "{}", ex=60)  # it ran early; its result lives 60 s
    real_redis.set("greenq:owner:short", "acme", ex=30)  # already goes before its result
    real_redis.set(f"{PREFIX}short", "{}", ex=60)
    real_redis.set("greenq:owner:unfinished", "acme", ex=4 * 3600)  # no result yet
    owners.expire_with_results(["deferred", "short", "unfinished", "unknown"])
    assert 55_000 <= real_redis.pttl("greenq:owner:deferred") <= 59_000
    assert real_redis.ttl("greenq:owner:short") <= 30
    assert real_redis.ttl("greenq:owner:unfinished") > 3600
    assert not real_redis.exists("greenq:owner:unknown")
