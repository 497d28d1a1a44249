"""Job leases: at most one live computation per job, on a fake Redis (its Lua scripts by meaning)."""

from __future__ import annotations

import time

import pytest

from greenq.workers.edge.leases import JobLeases, lease_key
from tests.unit.fake_redis import Clock, FakeRedis


def test_one_holder_at_a_time_and_release_frees_the_job(fake: FakeRedis) -> None:
    mine, theirs = JobLeases(fake, ttl_s=30, owner="a@host"), JobLeases(fake, ttl_s=30, owner="b@host")
    token = mine.acquire("job-1")
    assert token is not None and token.startswith("a@host:")
    assert theirs.acquire("job-1") is None
    assert mine.holder("job-1") == token
    mine.release("job-1", token)
    assert mine.holder("job-1") is None
    assert theirs.acquire("job-1") is not None


def test_a_stale_token_does_not_release_the_next_holders_lease(fake: FakeRedis, clock: Clock) -> None:
    old, new = JobLeases(fake, ttl_s=30, owner="a@host"), JobLeases(fake, ttl_s=30, owner="b@host")
    stale = old.acquire("job-1")
    assert stale is not None
    clock.now += 31  # the first holder died: its lease lapses
    fresh = new.acquire("job-1")
    assert fresh is not None
    old.release("job-1", stale)
    assert new.holder("job-1") == fresh


def test_the_renew_thread_keeps_a_held_lease_alive(fake: FakeRedis, clock: Clock) -> None:
    leases = JobLeases(fake, ttl_s=0.3).start()  # renews every 0.1 s (real time)
    try:
        token = leases.acquire("job-1")
        assert token is not None
        clock.now += 0.2
        deadline = time.monotonic() + 5
        while fake.ttl(lease_key("job-1")) < 0.25:  # wait for a renewal: 0.3 s from the clock's now
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.01)
        clock.now += 0.2  # 0.4 s after acquiring: alive only thanks to the renewal
        assert leases.holder("job-1") == token
    finally:
        leases.stop()


def test_the_fake_refuses_a_script_it_does_not_know(fake: FakeRedis) -> None:
    with pytest.raises(NotImplementedError, match="no implementation of the script"):
        fake.eval("return redis.call('FLUSHALL')", 0)
