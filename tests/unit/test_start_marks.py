"""Claims: a worker starting a job against a storefront cancelling it, on a real redis-server (the cancel
script decides and writes in one step; issue 20, finding 10: write-once applies to cancel too)."""

from __future__ import annotations

import time

import pytest
import redis
from celery import Celery

from greenq.shared import start_marks
from greenq.shared.celery_app import make_celery
from greenq.shared.result_store import ResultStore
from greenq.shared.results import JobResult, JobStatus
from greenq.shared.settings import Settings
from tests.unit.redis_server import real_redis_fixture

real_redis = real_redis_fixture()


@pytest.fixture
def app(real_redis: redis.Redis) -> Celery:
    app = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"))  # port 1: the broker is never reached
    app.backend.client = real_redis
    return app


def cancelled(job_id: str = "job-1") -> JobResult:
    return JobResult(job_id=job_id, job_type=None, status=JobStatus.cancelled, error="cancelled before a worker")


def test_the_first_worker_claim_wins_and_a_redelivery_may_compute_again(real_redis: redis.Redis) -> None:
    assert start_marks.mark_started(real_redis, "job-1", ttl_s=60)
    assert start_marks.mark_started(real_redis, "job-1", ttl_s=60)  # the same job's next delivery
    assert start_marks.state(real_redis, "job-1") == start_marks.RECEIVED


def test_a_cancel_before_any_worker_stops_the_worker_and_stores_its_result(app: Celery) -> None:
    store = ResultStore(app.backend, ttl_s=60)
    assert store.cancel(cancelled())
    assert store.cancel(cancelled())  # cancelling twice is still cancelled
    assert not start_marks.mark_started(app.backend.client, "job-1", ttl_s=60)
    assert start_marks.state(app.backend.client, "job-1") == start_marks.CANCELLED
    stored = store.get("job-1")
    assert stored is not None and stored.status is JobStatus.cancelled
    assert app.backend.get_task_meta("job-1", cache=False)["status"] == "FAILURE"  # Flower counts it
    assert 0 < app.backend.client.ttl(app.backend.get_key_for_task("job-1")) <= 60


def test_a_cancel_after_a_worker_started_is_refused_and_writes_nothing(app: Celery) -> None:
    assert start_marks.mark_started(app.backend.client, "job-1", ttl_s=60)
    store = ResultStore(app.backend, ttl_s=60)
    assert not store.cancel(cancelled())
    assert start_marks.state(app.backend.client, "job-1") == start_marks.RECEIVED
    assert store.get("job-1") is None


@pytest.mark.parametrize("status", [JobStatus.failed, JobStatus.expired, JobStatus.succeeded])
def test_a_stored_result_stays_when_its_claim_lapsed_first(app: Celery, status: JobStatus) -> None:
    """Old code: the claim key alone decided, and Celery's GET-then-SET replaced a failed or expired result."""
    store = ResultStore(app.backend, ttl_s=60)
    final = JobResult(job_id="job-1", job_type="reply", status=status, error=None if status.is_success else "broke")
    assert store.put_once(final) == (final, True)
    assert start_marks.state(app.backend.client, "job-1") is None  # the claim lapsed (or the result came another way)
    assert not store.cancel(cancelled())
    assert store.get("job-1") == final
    assert start_marks.state(app.backend.client, "job-1") is None  # nothing written


def test_a_worker_that_finds_the_job_cancelled_cannot_replace_its_result(app: Celery) -> None:
    store = ResultStore(app.backend, ttl_s=60)
    assert store.cancel(cancelled())
    late = JobResult(job_id="job-1", job_type="reply", status=JobStatus.succeeded, text="too late")
    stored, ours = store.put_once(late)
    assert not ours and stored.status is JobStatus.cancelled


def test_claims_are_per_job_and_lapse_with_their_ttl(app: Celery) -> None:
    store = ResultStore(app.backend, ttl_s=1)
    assert store.cancel(cancelled())
    assert start_marks.state(app.backend.client, "job-2") is None
    time.sleep(1.2)
    assert start_marks.state(app.backend.client, "job-1") is None
    assert start_marks.mark_started(app.backend.client, "job-1", ttl_s=60)
