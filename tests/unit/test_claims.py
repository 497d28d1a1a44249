"""Claims: a worker starting a job against a storefront cancelling it, on a fake Redis."""

from __future__ import annotations

from shared import claims
from tests.unit.fake_redis import Clock, FakeRedis


def test_the_first_worker_claim_wins_and_a_redelivery_may_compute_again(fake: FakeRedis) -> None:
    assert claims.claim_for_worker(fake, "job-1", ttl_s=60)
    assert claims.claim_for_worker(fake, "job-1", ttl_s=60)  # the same job's next delivery
    assert claims.state(fake, "job-1") == claims.RECEIVED


def test_a_cancel_before_any_worker_stops_the_worker(fake: FakeRedis) -> None:
    assert claims.cancel(fake, "job-1", ttl_s=60)
    assert claims.cancel(fake, "job-1", ttl_s=60)  # cancelling twice is still cancelled
    assert not claims.claim_for_worker(fake, "job-1", ttl_s=60)
    assert claims.state(fake, "job-1") == claims.CANCELLED


def test_a_cancel_after_a_worker_started_is_refused(fake: FakeRedis) -> None:
    assert claims.claim_for_worker(fake, "job-1", ttl_s=60)
    assert not claims.cancel(fake, "job-1", ttl_s=60)
    assert claims.state(fake, "job-1") == claims.RECEIVED


def test_claims_are_per_job_and_lapse_with_their_ttl(fake: FakeRedis, clock: Clock) -> None:
    assert claims.cancel(fake, "job-1", ttl_s=60)
    assert claims.state(fake, "job-2") is None
    clock.now += 61
    assert claims.state(fake, "job-1") is None
    assert claims.claim_for_worker(fake, "job-1", ttl_s=60)
