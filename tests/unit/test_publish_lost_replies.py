"""A producer's publish when a reply is lost: after its idempotency claim, or after the broker took the
jobs. One real redis-server is broker and result backend; no worker runs, the test reads the queue."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu.exceptions import BatchPublishError, OperationalError
from kombu.transport.redis import PublishBatch

from greenq.producers import client as client_module
from greenq.producers.client import Client, JobSpec
from greenq.shared import errors
from greenq.shared.keys import IDEMPOTENCY_KEY_PREFIX
from greenq.shared.queues import queue_name, redis_priority_lists
from greenq.shared.settings import Settings
from tests.unit.redis_server import real_redis_fixture, server

real_redis = real_redis_fixture()
PAYLOAD = {"customer_message": "Where is my parcel?"}


@pytest.fixture
def client(real_redis: redis.Redis) -> Iterator[Client]:
    producer = Client(Settings(broker_url=server().url))
    try:
        yield producer
    finally:
        producer.close()


def _queued_ids(real_redis: redis.Redis) -> list[str]:
    """The job (task) id of every message on the reply queue."""
    return [
        json.loads(raw)["headers"]["id"]
        for name in redis_priority_lists(queue_name("reply"))
        for raw in real_redis.lrange(name, 0, -1)
    ]


def _keyed(n: int) -> list[JobSpec]:
    return [JobSpec("reply", {"customer_message": f"question {i}"}, f"lost-{i}") for i in range(n)]


def test_a_batch_whose_flush_lost_its_reply_is_retried_as_the_same_jobs(
    client: Client, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    flush = PublishBatch.flush

    def flush_then_drop_the_connection(batch: PublishBatch) -> None:
        flush(batch)  # the broker has the jobs; its reply never comes back
        raise BatchPublishError("Redis publish batch failed; delivery is uncertain") from redis.ConnectionError(
            "Connection closed by server."
        )

    monkeypatch.setattr(PublishBatch, "flush", flush_then_drop_the_connection)
    jobs = _keyed(3)
    with pytest.raises(errors.BrokerUnavailable):
        client.submit_many(jobs)
    monkeypatch.undo()

    started = time.monotonic()
    retried = client.submit_many(jobs)
    waited_s = time.monotonic() - started
    queued = _queued_ids(real_redis)
    assert len(queued) == 6  # pushed twice: the worker runs a job id once
    assert sorted(set(queued)) == sorted(retried), "the retry got new job ids: each job would run twice"
    assert waited_s < 10, f"the retry waited {waited_s:.1f} s for the failed flush's claims"
    assert client.submit_many(jobs) == retried  # the keys now name those jobs


def test_a_single_submit_whose_push_lost_its_reply_is_retried_as_the_same_job(
    client: Client, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_job = client_module.send_job

    def send_then_drop_the_connection(*args: Any, **kwargs: Any) -> None:
        send_job(*args, **kwargs)
        raise OperationalError("Connection closed by server.")

    monkeypatch.setattr(client_module, "send_job", send_then_drop_the_connection)
    with pytest.raises(errors.BrokerUnavailable):
        client.submit("reply", PAYLOAD, idempotency_key="single")
    monkeypatch.undo()

    job_id = client.submit("reply", PAYLOAD, idempotency_key="single")
    assert _queued_ids(real_redis) == [job_id, job_id], "the retry got a new job id: the job would run twice"
    assert client.submit("reply", PAYLOAD, idempotency_key="single") == job_id


def test_keys_of_jobs_never_handed_to_the_broker_are_released(
    client: Client, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = client_module.IdempotencyStore.reserve
    calls = []

    def refuse_the_third(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        if len(calls) == 3:
            raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'")
        return claim(self, *args, **kwargs)

    monkeypatch.setattr(client_module.IdempotencyStore, "reserve", refuse_the_third)
    jobs = _keyed(4)
    with pytest.raises(errors.NotAllEnqueued) as raised:
        client.submit_many(jobs)  # jobs 0 and 1 were buffered, not sent, when job 2's claim failed
    monkeypatch.undo()
    assert raised.value.enqueued == {}
    assert real_redis.keys(f"{IDEMPOTENCY_KEY_PREFIX}*") == []
    assert _queued_ids(real_redis) == []
    retried = client.submit_many(jobs)
    assert sorted(_queued_ids(real_redis)) == sorted(retried) and len(set(retried)) == 4


class LosesReplies(redis.Redis):
    """A real client whose next `lose` script calls run on the server, then raise as if the connection
    dropped before the reply came back."""

    lose = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = super().execute_command(*args, **options)
        if self.lose and str(args[0]).upper() in ("EVALSHA", "EVAL"):
            self.lose -= 1
            raise redis.ConnectionError("Connection closed by server.")
        return reply


def test_a_lost_reply_to_the_claim_does_not_stall_the_submit(
    client: Client, real_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = LosesReplies.from_url(server().url)
    backend.lose = 1  # the claim script: the submit's first script call
    monkeypatch.setattr(client_module, "redis_client", lambda *args, **kwargs: backend)
    started = time.monotonic()
    job_id = client.submit("reply", PAYLOAD, idempotency_key="lost-claim-reply")
    waited_s = time.monotonic() - started
    assert waited_s < 10, f"the submit waited {waited_s:.1f} s for its own claim"
    assert _queued_ids(real_redis) == [job_id]
    assert client.submit("reply", PAYLOAD, idempotency_key="lost-claim-reply") == job_id
    backend.close()
