"""Callbacks are indexed by readiness (producers/gateway/callbacks.py), on a real redis-server: a gateway reads
only callbacks it can act on, never the thousands whose jobs are deferred for days; a result's notification or
the sweep makes one due; a record that expires unsent is counted; a callback under an attempt outlives its result."""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter

from greenq.producers.gateway.callbacks import CallbackQueue
from greenq.shared.keys import CALLBACK_DUE_KEY, CALLBACK_JOB_KEY_PREFIX, OWNER_KEY_PREFIX
from tests.unit.redis_server import real_redis_fixture

real_redis = real_redis_fixture()
PREFIX = b"celery-task-meta-"


class Backend:
    """What CallbackQueue uses of Celery's Redis backend, on the same server (results as JSON meta)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def get_key_for_task(self, job_id: str) -> bytes:
        return PREFIX + job_id.encode()

    def mget(self, keys: list[bytes]) -> list[Any]:
        return list(self.client.mget(keys))

    def decode_result(self, raw: bytes) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(raw)
        return decoded

    def finish(self, job_id: str, ttl_s: int = 600) -> None:
        record = {"job_id": job_id, "job_type": "strategy", "status": "succeeded", "text": f"done {job_id}"}
        self.client.set(self.get_key_for_task(job_id), json.dumps({"status": "SUCCESS", "result": record}), ex=ttl_s)


def calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def start(queue: CallbackQueue, now: float) -> list[str]:
    return [c.job_id for c in queue.start_attempts(now, attempt_s=15, free={}, default_free=100, most=100)]


def test_callbacks_of_unfinished_jobs_are_not_read_again_and_again(real_redis: redis.Redis) -> None:
    backend = Backend(real_redis)
    queue = CallbackQueue(real_redis, backend, 86_400)
    for n in range(1000):
        queue.register(f"deferred-{n}", "https://shop.example/hook", "acme")
    now = time.time() + 1
    for _ in range(3):  # each is looked at once, when registered (its job may have finished already)
        assert start(queue, now) == []
        now += 1
    real_redis.config_resetstat()
    for _ in range(20):  # 20 polls over 20 s, as a gateway makes every 0.2 s
        assert start(queue, now) == []
        now += 1
    read = calls(real_redis, "hgetall") + calls(real_redis, "mget")
    print(f"records and results read by 20 polls with 1000 callbacks waiting: {read}")
    assert read == 0


def test_a_result_notification_or_the_sweep_makes_a_waiting_callback_due(real_redis: redis.Redis) -> None:
    backend = Backend(real_redis)
    queue = CallbackQueue(real_redis, backend, 86_400, sweep_s=30)
    queue.register("a", "https://shop.example/a", "acme")
    queue.register("b", "https://shop.example/b", "acme")
    now = time.time() + 1
    assert start(queue, now) == []  # both wait for their jobs
    backend.finish("a")
    backend.finish("b")
    assert queue.wake(["a", "unrelated"], now) == 1
    sent = queue.start_attempts(now + 0.1, attempt_s=15, free={}, default_free=100, most=100)
    assert [c.job_id for c in sent] == ["a"]
    queue.delivered(sent[0])
    assert start(queue, now + 10) == []  # b's notification was missed: nothing reads it before its sweep
    assert start(queue, now + 31) == ["b"]


def test_a_callback_registered_after_its_job_finished_is_sent(real_redis: redis.Redis) -> None:
    backend = Backend(real_redis)
    queue = CallbackQueue(real_redis, backend, 86_400)
    backend.finish("fast")  # its notification came before the callback was registered
    queue.register("fast", "https://shop.example/fast", "acme")
    assert start(queue, time.time() + 0.1) == ["fast"]


def test_a_record_that_expires_before_its_job_finishes_is_logged_and_counted(real_redis: redis.Redis) -> None:
    backend = Backend(real_redis)
    outcomes = Counter("callbacks", "by outcome", ["outcome"], registry=CollectorRegistry())
    queue = CallbackQueue(real_redis, backend, 1, sweep_s=1, outcomes=outcomes)
    queue.register("never", "https://shop.example/never", "acme")
    assert start(queue, time.time()) == []
    time.sleep(1.5)  # its record's TTL (1 s) runs out in Redis' own clock
    assert start(queue, time.time() + 2) == []
    assert outcomes.labels("expired")._value.get() == 1
    assert real_redis.zcard(CALLBACK_DUE_KEY) == 0


def test_a_callback_under_an_attempt_keeps_its_result_after_the_result_expires(real_redis: redis.Redis) -> None:
    backend = Backend(real_redis)
    queue = CallbackQueue(real_redis, backend, 60)
    queue.register("j", "https://shop.example/j", "acme")
    backend.finish("j", ttl_s=60)
    first = queue.start_attempts(time.time(), attempt_s=15, free={}, default_free=4, most=4)
    assert [c.attempt for c in first] == [1]
    queue.failed(first[0], retry_at=time.time())
    real_redis.delete(backend.get_key_for_task("j"))  # the result's TTL ran out between attempts
    second = queue.start_attempts(time.time() + 0.1, attempt_s=15, free={}, default_free=4, most=4)
    assert [(c.attempt, c.result["text"]) for c in second] == [(2, "done j")]
    assert int(real_redis.ttl("greenq:callbacks:job:j")) >= 60


def test_a_callback_another_gateway_started_meanwhile_keeps_its_attempt_deadline(real_redis: redis.Redis) -> None:
    """Gateway A reads the callback due and its job unfinished; before A parks it, the result is stored and
    gateway B starts an attempt (a 15 s deadline). A must leave B's deadline alone, or the callback would go
    out twice."""
    backend = Backend(real_redis)
    queue = CallbackQueue(real_redis, backend, 86_400)
    queue.register("raced", "https://shop.example/raced", "acme")
    now = time.time() + 1
    b_started: list[str] = []

    class RacedBackend(Backend):
        def mget(self, keys: list[bytes]) -> list[Any]:
            backend.finish("raced")  # between A's read of the result (none) and A's park, B starts an attempt
            b_started.extend(start(CallbackQueue(real_redis, backend, 86_400), now))
            return [None for _ in keys]

    started_by_a = start(CallbackQueue(real_redis, RacedBackend(real_redis), 86_400), now)
    score = real_redis.zscore(CALLBACK_DUE_KEY, "raced")
    print(
        "A started:", started_by_a, "B started:", b_started, "due score - now:", None if score is None else score - now
    )
    assert started_by_a == [] and b_started == ["raced"]
    assert score is not None and score >= now + 15  # B's attempt deadline stands


def test_the_sweep_keeps_a_pending_jobs_callback_and_owner_record_but_not_an_ownerless_ones(
    real_redis: redis.Redis,
) -> None:
    """Review finding 6: a job with no result whose owner record lives is pending however long it queues."""
    queue = CallbackQueue(real_redis, Backend(real_redis), 60, sweep_s=1)
    for job_id in ("queued", "lost"):
        queue.register(job_id, f"https://shop.example/{job_id}", "acme")
    real_redis.set(f"{OWNER_KEY_PREFIX}queued", "acme", px=1500)
    now = time.time()
    assert start(queue, now) == []  # both wait for their results
    for job_id in ("queued", "lost"):
        real_redis.pexpire(f"{CALLBACK_JOB_KEY_PREFIX}{job_id}", 1500)  # as if the result TTL had nearly run out
    assert queue.sweep(now + 2) == []
    time.sleep(2)
    assert real_redis.ttl(f"{CALLBACK_JOB_KEY_PREFIX}queued") > 30 and real_redis.ttl(f"{OWNER_KEY_PREFIX}queued") > 30
    assert real_redis.exists(f"{CALLBACK_JOB_KEY_PREFIX}lost") == 0
    assert queue.sweep(now + 4) == ["lost"]
