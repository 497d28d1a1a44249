"""Idempotency keys when a batch fails part-way: a key names a job only once that job is enqueued."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from kombu.transport.redis import PublishBatch

from producers.client import JobSpec
from shared import errors
from shared.keys import IDEMPOTENCY_KEY_PREFIX
from shared.local_redis import LocalRedis, start_redis
from shared.results import JobStatus
from tests.integration.gateways import Gateway
from tests.integration.harness import Stack, free_port, stack

pytestmark = pytest.mark.chaos


def _keyed(tag: str, n: int) -> list[JobSpec]:
    return [JobSpec("reply", {"customer_message": f"{tag} question {i}"}, f"{tag}-{i}") for i in range(n)]


def _all_succeed(s: Stack, ids: list[str], timeout_s: float = 60) -> None:
    results = list(s.client.as_completed(ids, timeout_s=timeout_s))
    assert sorted(r.job_id for r in results) == sorted(set(ids))
    assert all(r.status is JobStatus.succeeded for r in results), [r.error for r in results]


def _claimed_keys(s: Stack) -> int:
    return len(s.redis.keys(f"{IDEMPOTENCY_KEY_PREFIX}*"))


@pytest.fixture
def own(tiny_model_dir: Path) -> Iterator[tuple[Stack, LocalRedis]]:
    """A stack on its own redis-server, so a fault injected there touches no other test."""
    server = start_redis(free_port())
    try:
        with stack(server.port, tiny_model_dir, url=server.url) as s:
            yield s, server
    finally:
        server.stop()


def test_a_conflict_on_one_job_leaves_the_other_keys_usable(fresh: Stack, tmp_path: Path) -> None:
    fresh.client.submit("reply", {"customer_message": "first use"}, idempotency_key="taken")
    batch = _keyed("conflict", 4)
    batch[2] = JobSpec("reply", {"customer_message": "a different payload"}, "taken")
    with pytest.raises(errors.GreenqError) as raised:
        fresh.client.submit_many(batch)

    good = [batch[i] for i in (0, 1, 3)]
    retried = fresh.client.submit_many(good)
    fresh.start_worker(tmp_path / "w.log")
    _all_succeed(fresh, retried)

    error = raised.value
    assert isinstance(error, errors.NotAllEnqueued) and isinstance(error, errors.IdempotencyConflict)
    assert error.enqueued == {0: retried[0], 1: retried[1], 3: retried[2]}
    assert set(error.failed) == {2} and isinstance(error.failed[2], errors.IdempotencyConflict)


def test_a_broker_failure_mid_batch_releases_the_keys_of_jobs_not_pushed(
    own: tuple[Stack, LocalRedis], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s, server = own
    broker = redis.Redis(port=server.port)
    flush = PublishBatch.flush

    def flush_then_refuse_pushes(batch: PublishBatch) -> None:
        had_messages = batch._buffered > 0  # kombu's count of buffered Redis commands
        flush(batch)
        if had_messages:  # the first real flush goes through; from then on the broker refuses LPUSH
            broker.execute_command("ACL", "SETUSER", "default", "-lpush")

    monkeypatch.setattr(PublishBatch, "flush", flush_then_refuse_pushes)
    monkeypatch.setattr("producers.client.PUBLISH_BATCH_SIZE", 4)
    jobs = _keyed("midway", 10)
    with pytest.raises(errors.BrokerUnavailable) as raised:
        s.client.submit_many(jobs)
    monkeypatch.undo()
    broker.execute_command("ACL", "SETUSER", "default", "+lpush")
    claimed_after_failure = _claimed_keys(s)

    retried = s.client.submit_many(jobs)
    assert len(set(retried)) == 10 and s.queued("reply") == 10  # the 4 already enqueued are not pushed again
    s.start_worker(tmp_path / "w.log")
    _all_succeed(s, retried)

    error = raised.value
    assert isinstance(error, errors.NotAllEnqueued)
    assert error.enqueued == {i: retried[i] for i in range(4)}
    assert set(error.failed) == set(range(4, 10))
    assert claimed_after_failure == len(error.enqueued)


def test_the_same_key_twice_in_one_batch_is_one_job(fresh: Stack) -> None:
    jobs = _keyed("twice", 2)
    ids = fresh.client.submit_many([jobs[0], jobs[1], jobs[0]])
    assert ids[0] == ids[2] != ids[1]
    assert fresh.queued("reply") == 2


CLAIM_THEN_HANG = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import celery
    import producers.idempotency

    producers.idempotency.PENDING_TTL_S = 3  # keeps the test short; the default is longer

    def hang(*args, **kwargs):
        Path(sys.argv[1]).touch()  # the key is claimed and the job not yet pushed
        time.sleep(600)

    celery.Celery.send_task = hang
    from producers.client import Client

    Client().submit("reply", {"customer_message": "crash"}, idempotency_key="crash-1")
    """
)


def test_a_producer_killed_between_claim_and_push_does_not_block_its_key(fresh: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "claimed"
    producer = fresh.spawn([sys.executable, "-c", CLAIM_THEN_HANG, str(marker)], tmp_path / "producer.log")
    fresh.wait_for(marker.exists, timeout_s=60, what="the producer to claim its key")
    fresh.kill(producer)

    job_id = fresh.client.submit("reply", {"customer_message": "crash"}, idempotency_key="crash-1")
    fresh.start_worker(tmp_path / "w.log")
    _all_succeed(fresh, [job_id])


def test_gateway_batch_reports_a_conflict_per_job_and_the_rest_run(fresh: Stack, tmp_path: Path) -> None:
    fresh.start_worker(tmp_path / "w.log", queues="reply")
    api = Gateway(fresh, tmp_path)
    taken = {"job": {"customer_message": "first use"}}
    assert api.http.post("/v1/jobs/reply", json=taken, headers={**api.auth(), "Idempotency-Key": "taken"}).is_success
    good = [{"type": "reply", "job": {"customer_message": f"batch {i}"}, "idempotency_key": f"b-{i}"} for i in (0, 2)]
    bad = {"type": "reply", "job": {"customer_message": "a different payload"}, "idempotency_key": "taken"}

    first = api.http.post("/v1/jobs:batch", json={"jobs": [good[0], bad, good[1]]}, headers=api.auth())
    again = api.http.post("/v1/jobs:batch", json={"jobs": good}, headers=api.auth())
    assert again.status_code == 202
    ids = [entry["id"] for entry in again.json()["jobs"]]
    for job_id in ids:
        view = api.http.get(f"/v1/jobs/{job_id}", params={"wait": 60}, headers=api.auth()).json()
        assert view["status"] == "succeeded", view

    assert first.status_code == 202, first.text
    entries = first.json()["jobs"]
    assert [entries[0]["id"], entries[2]["id"]] == ids
    assert entries[1]["id"] is None and entries[1]["error"]["code"] == "idempotency_conflict"
