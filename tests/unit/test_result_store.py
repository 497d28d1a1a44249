"""Final results stored once, in Celery's result-backend format, on a fake Redis behind Celery's backend."""

from __future__ import annotations

import pytest
from celery import Celery

from greenq.shared.celery_app import make_celery
from greenq.shared.result_store import ResultStore
from greenq.shared.results import JobResult, JobStatus
from greenq.shared.settings import Settings
from tests.unit.fake_redis import FakeRedis


@pytest.fixture
def app(fake: FakeRedis) -> Celery:
    app = make_celery(Settings(broker_url="redis://127.0.0.1:1/0"))  # port 1: nothing real is ever reached
    app.backend.client = fake
    return app


def result(status: JobStatus, text: str = "") -> JobResult:
    return JobResult(job_id="job-1", job_type="reply", status=status, text=text, error=None if text else "broke")


def test_the_first_writer_wins_and_is_never_replaced(app: Celery, fake: FakeRedis) -> None:
    store = ResultStore(app.backend, ttl_s=60)
    assert store.get("job-1") is None
    failed = result(JobStatus.failed)
    assert store.put_once(failed) == (failed, True)
    stored, ours = store.put_once(result(JobStatus.succeeded, "late"))
    assert not ours and stored.status is JobStatus.failed and stored.error == "broke"
    assert len(fake.published) == 1
    assert 59 < fake.ttl(app.backend.get_key_for_task("job-1")) <= 60


def test_records_are_celerys_success_and_failure(app: Celery) -> None:
    store = ResultStore(app.backend, ttl_s=60)
    store.put_once(result(JobStatus.succeeded, "hello"))
    meta = app.backend.get_task_meta("job-1", cache=False)
    assert meta["status"] == "SUCCESS" and meta["result"]["text"] == "hello"
    expired = JobResult(job_id="job-2", job_type="reply", status=JobStatus.expired, error="deadline passed")
    store.put_once(expired)
    assert app.backend.get_task_meta("job-2", cache=False)["status"] == "FAILURE"  # Flower counts it
    assert store.get("job-2") == expired  # the full record comes back out of the failure
