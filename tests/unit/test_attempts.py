"""Attempt counting: only batches that took their worker down count, on a real redis-server, also when
Redis blips between a batch's start and its end (issue 20, finding 10)."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis

from greenq.shared.attempts import AttemptCounter
from greenq.shared.keys import ATTEMPTS_KEY_PREFIX
from tests.unit.redis_server import real_redis_fixture

real_redis = real_redis_fixture()


class Blipping:
    """A real client whose next pipelines fail: before reaching Redis (`lose_requests`), or after Redis
    applied them, the reply lost (`lose_replies`), as when a connection drops mid-call. Its pipelines are
    redis-py's own (only `execute` is wrapped), so registered scripts load in them as in production."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self.lose_requests = 0
        self.lose_replies = 0

    def pipeline(self, transaction: bool = True) -> Any:
        pipe = self._client.pipeline(transaction=transaction)
        execute = pipe.execute

        def blipping_execute(raise_on_error: bool = True) -> list[Any]:
            if self.lose_requests:
                self.lose_requests -= 1
                pipe.reset()
                raise redis.ConnectionError("blip: the request never reached Redis")
            replies: list[Any] = execute(raise_on_error)
            if self.lose_replies:
                self.lose_replies -= 1
                raise redis.ConnectionError("blip: Redis applied it, the reply was lost")
            return replies

        pipe.execute = blipping_execute  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def key(job_id: str) -> str:
    return f"{ATTEMPTS_KEY_PREFIX}{job_id}"


def test_attempts_count_only_batches_that_never_returned(real_redis: redis.Redis) -> None:
    attempts = AttemptCounter(real_redis, ttl_s=60)
    assert attempts.attempts("job-1") == 0
    attempts.record(["job-1", "job-2"])
    attempts.finished(["job-1", "job-2"])  # the batch returned: nobody is charged
    assert attempts.attempts("job-1") == 0
    attempts.record(["job-1"])  # the worker died during this batch ...
    AttemptCounter(real_redis, ttl_s=60).record(["job-1"])  # ... and its next worker during the next
    assert (attempts.attempts("job-1"), attempts.attempts("job-2")) == (2, 0)
    assert 0 < real_redis.ttl(key("job-1")) <= 60
    attempts.reset("job-1")
    assert attempts.attempts("job-1") == 0


def test_attempt_counts_expire(real_redis: redis.Redis) -> None:
    attempts = AttemptCounter(real_redis, ttl_s=60)
    attempts.record(["job-1"])
    real_redis.pexpire(key("job-1"), 1)  # as if 60 s had passed
    time.sleep(0.05)
    assert attempts.attempts("job-1") == 0


def test_closing_an_attempt_whose_count_expired_leaves_no_negative_count_without_a_ttl(
    real_redis: redis.Redis,
) -> None:
    """Old code: DECR of a lapsed key made -1 with no TTL, for ever."""
    attempts = AttemptCounter(real_redis, ttl_s=60)
    attempts.record(["job-1"])
    real_redis.delete(key("job-1"))  # its TTL ran out while the batch computed
    attempts.finished(["job-1"])
    assert attempts.attempts("job-1") == 0
    assert real_redis.ttl(key("job-1")) != -1, "a count with no TTL stays for ever"


def test_a_batch_that_returned_is_not_charged_when_its_close_was_lost_in_a_blip(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Old code: the DECR was lost, so a job whose batch returned counted as having killed its worker."""
    blipping = Blipping(real_redis)
    attempts = AttemptCounter(blipping, ttl_s=60)
    attempts.record(["job-1"])
    blipping.lose_requests = 10  # Redis unreachable while the batch ends
    with caplog.at_level(logging.WARNING, logger="greenq.shared.attempts"):
        attempts.finished(["job-1"])
    assert "could not close attempts" in caplog.text
    blipping.lose_requests = 0
    attempts.record(["job-2"])  # the next batch: Redis is back
    assert attempts.attempts("job-1") == 0, "charged for a batch that returned"
    assert attempts.attempts("job-2") == 1


def test_a_call_retried_after_a_lost_reply_charges_once(real_redis: redis.Redis) -> None:
    blipping = Blipping(real_redis)
    attempts = AttemptCounter(blipping, ttl_s=60)
    blipping.lose_replies = 1  # the open reached Redis, its reply did not come back: it is sent again
    attempts.record(["job-1"])
    assert attempts.attempts("job-1") == 1
    blipping.lose_replies = 1
    attempts.finished(["job-1"])
    assert attempts.attempts("job-1") == 0
    assert real_redis.exists(key("job-1")) == 0


def test_counting_without_redis_logs_and_lets_the_batch_go_on(
    real_redis: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    blipping = Blipping(real_redis)
    attempts = AttemptCounter(blipping, ttl_s=60)
    blipping.lose_requests = 100
    with caplog.at_level(logging.WARNING, logger="greenq.shared.attempts"):
        attempts.record(["job-1"])
        attempts.finished(["job-1"])
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "could not record attempts",
        "could not close attempts",
    ]
    blipping.lose_requests = 0
    assert attempts.attempts("job-1") == 0


def test_a_count_written_before_the_upgrade_is_read_and_kept(real_redis: redis.Redis) -> None:
    """Counts were plain integers before per-attempt tokens: a rolling upgrade keeps them."""
    real_redis.set(key("job-1"), 2, ex=60)
    real_redis.set(key("job-2"), -1)  # the old drift
    attempts = AttemptCounter(real_redis, ttl_s=60)
    assert (attempts.attempts("job-1"), attempts.attempts("job-2")) == (2, 0)
    attempts.record(["job-1", "job-2"])
    assert (attempts.attempts("job-1"), attempts.attempts("job-2")) == (3, 1)
    attempts.finished(["job-1", "job-2"])
    assert (attempts.attempts("job-1"), attempts.attempts("job-2")) == (2, 0)
    assert 0 < real_redis.ttl(key("job-1")) <= 60
