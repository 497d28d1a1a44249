"""Attempt counting: only batches that took their worker down count, on a fake Redis."""

from __future__ import annotations

import logging

import pytest

from shared.attempts import AttemptCounter
from tests.unit.fake_redis import Clock, FakeRedis


def test_attempts_count_only_batches_that_never_returned(fake: FakeRedis) -> None:
    attempts = AttemptCounter(fake, ttl_s=60)
    assert attempts.attempts("job-1") == 0
    attempts.record(["job-1", "job-2"])
    attempts.finished(["job-1", "job-2"])  # the batch returned: nobody is charged
    assert attempts.attempts("job-1") == 0
    attempts.record(["job-1"])  # the worker died during this batch ...
    attempts.record(["job-1"])  # ... and during the next
    assert (attempts.attempts("job-1"), attempts.attempts("job-2")) == (2, 0)
    attempts.reset("job-1")
    assert attempts.attempts("job-1") == 0


def test_attempt_counts_expire(fake: FakeRedis, clock: Clock) -> None:
    attempts = AttemptCounter(fake, ttl_s=60)
    attempts.record(["job-1"])
    clock.now += 61
    assert attempts.attempts("job-1") == 0


def test_counting_without_redis_logs_and_lets_the_batch_go_on(
    fake: FakeRedis, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = AttemptCounter(fake, ttl_s=60)
    fake.fail_next(2)
    with caplog.at_level(logging.WARNING, logger="shared.attempts"):
        attempts.record(["job-1"])
        attempts.finished(["job-1"])
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "could not record attempts",
        "could not close attempts",
    ]
    assert attempts.attempts("job-1") == 0
