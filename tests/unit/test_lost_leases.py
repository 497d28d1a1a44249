"""A job whose lease was lost while it waited for a batch is not computed (issue 20, finding 5), on a real
redis-server: the lease check as jobs enter a static or a continuous batch, and the warning that says what was
seen (a pause, renewals failing to reach Redis, or neither)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from greenq.shared import job_types
from greenq.shared.policies import BatchPolicy, GenerationSettings
from greenq.workers.edge.leases import JobLeases, lease_key, lost_cause, lost_reason
from greenq.workers.edge.metrics import WorkerMetrics
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.batcher import Batcher, LeaseLost
from greenq.workers.serving.observers import BaseObserver
from tests.fake_runtime import EchoRuntime
from tests.unit.fake_redis import Clock
from tests.unit.redis_server import FlakyClient, real_redis_fixture

real_redis = real_redis_fixture()
TTL_S = 30.0
POLICIES = {t: BatchPolicy(mode="fixed", max_batch_size=8, max_wait_s=0.05) for t in job_types.names()}


class Started(BaseObserver):
    def __init__(self) -> None:
        self.job_ids: list[str] = []

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self.job_ids += job_ids


def taken_over(client: redis.Redis, job_id: str) -> None:
    """Another worker took the job after this one's lease lapsed."""
    client.set(lease_key(job_id), "other@host:token", px=int(TTL_S * 1000))


def test_a_lease_renewed_lately_is_ours_without_asking_redis(real_redis: redis.Redis) -> None:
    clock = Clock()
    flaky = FlakyClient(real_redis)
    leases = JobLeases(flaky, TTL_S, owner="a@host", clock=clock)
    assert leases.acquire("job-1") is not None
    clock.now += TTL_S / 3
    flaky.fail_next(1000)  # Redis unreachable: no matter, confirmed 10 s ago
    assert leases.lost(["job-1", "never-taken"]) == set()


def test_a_lease_another_worker_took_is_lost(real_redis: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    told: list[tuple[int, str]] = []
    leases = JobLeases(real_redis, TTL_S, owner="a@host", clock=clock, on_lost=lambda n, cause: told.append((n, cause)))
    assert leases.acquire("job-1") is not None and leases.acquire("job-2") is not None
    real_redis.delete(lease_key("job-1"))  # it lapsed while this process was stopped ...
    taken_over(real_redis, "job-1")  # ... and another worker took it
    clock.now += 45  # this process resumes: 45 s without its renewer running
    with caplog.at_level(logging.WARNING, logger="greenq.workers.edge.leases"):
        assert leases.lost(["job-1", "job-2"]) == {"job-1"}
        assert leases.lost(["job-1"]) == {"job-1"}  # known now, without asking again
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("lost the lease on 1 jobs: the lease renewer had not run for 45.0 s")
    assert "paused" in warning and "Redis unreachable" not in warning
    assert told == [(1, "paused")]  # the worker's greenq_job_leases_lost_total{cause="paused"}
    assert real_redis.pttl(lease_key("job-2")) > (TTL_S - 1) * 1000  # still ours: renewed on the way


def test_while_redis_is_unreachable_only_a_lease_confirmed_recently_counts_as_held(real_redis: redis.Redis) -> None:
    clock = Clock()
    flaky = FlakyClient(real_redis)
    leases = JobLeases(flaky, TTL_S, owner="a@host", clock=clock)
    assert leases.acquire("job-1") is not None
    clock.now += TTL_S * 0.6
    flaky.fail_next(1000)
    assert leases.lost(["job-1"]) == set()  # its key lives 30 s from its last confirmation: 12 s left
    clock.now += TTL_S * 0.2
    assert leases.lost(["job-1"]) == {"job-1"}  # 6 s left at most: another worker may hold it soon


def test_the_metric_counts_lost_leases_by_cause() -> None:
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.initialise_labels()
    assert metrics.registry.get_sample_value("greenq_job_leases_lost_total", {"cause": "paused"}) == 0
    metrics.leases_lost.labels(lost_cause(ttl_s=30, renewer_gap_s=40, failing_for_s=None)).inc(3)
    assert metrics.registry.get_sample_value("greenq_job_leases_lost_total", {"cause": "paused"}) == 3
    assert lost_cause(ttl_s=30, renewer_gap_s=10, failing_for_s=35) == "redis_unreachable"
    assert lost_cause(ttl_s=30, renewer_gap_s=10, failing_for_s=None) == "lapsed"


def test_the_warning_says_what_was_seen() -> None:
    paused = lost_reason(ttl_s=30, renewer_gap_s=95.0, failing_for_s=None, interval_s=10)
    assert paused.startswith("the lease renewer had not run for 95.0 s") and "paused" in paused
    failing = lost_reason(ttl_s=30, renewer_gap_s=10.0, failing_for_s=40.0, interval_s=10)
    assert failing == "renewals had failed to reach Redis for 40.0 s (the lease is 30 s)"
    neither = lost_reason(ttl_s=30, renewer_gap_s=10.0, failing_for_s=None, interval_s=10)
    assert neither.startswith("renewals ran every 10.0 s and went through")


def request(text: str) -> GenerationRequest:
    return GenerationRequest(tuple(ord(c) for c in text), 4, GenerationSettings(max_new_tokens=4))


def test_a_buffered_job_whose_lease_was_lost_leaves_its_static_batch_uncomputed(real_redis: redis.Redis) -> None:
    clock = Clock()
    leases = JobLeases(real_redis, TTL_S, owner="a@host", clock=clock)
    started = Started()
    runtime = EchoRuntime()
    batcher = Batcher({"echo": runtime}, POLICIES, observers=[started], lease_check=leases.lost)
    for job_id in ("kept", "lost"):
        assert leases.acquire(job_id) is not None
    real_redis.delete(lease_key("lost"))
    taken_over(real_redis, "lost")
    clock.now += 45  # paused past the lease with both jobs buffered
    futures = {job_id: batcher.submit(job_id, "reply", "echo", request(job_id), 5) for job_id in ("kept", "lost")}
    batcher.start()
    try:
        assert futures["kept"].result(timeout=30).generation.text
        with pytest.raises(LeaseLost):
            futures["lost"].result(timeout=30)
    finally:
        batcher.stop(timeout_s=10)
    assert started.job_ids == ["kept"]  # never charged an attempt, never computed
    assert runtime.batches == [1]


def test_a_job_whose_lease_was_lost_does_not_join_a_continuous_batch(
    real_redis: redis.Redis, tiny_model_dir: Path
) -> None:
    clock = Clock()
    leases = JobLeases(real_redis, TTL_S, owner="a@host", clock=clock)
    started = Started()
    runtime = HFRuntime(str(tiny_model_dir), device="cpu", dtype="float32")
    batcher = Batcher({"m": runtime}, POLICIES, mode="continuous", observers=[started], lease_check=leases.lost)
    for job_id in ("kept", "lost"):
        assert leases.acquire(job_id) is not None
    real_redis.delete(lease_key("lost"))
    taken_over(real_redis, "lost")
    clock.now += 45
    settings = GenerationSettings(max_new_tokens=4, min_new_tokens=1)
    futures = {
        job_id: batcher.submit(
            job_id, "reply", "m", GenerationRequest(tuple(runtime.encode(job_id)), 4, settings), priority=5
        )
        for job_id in ("kept", "lost")
    }
    batcher.start()
    try:
        assert batcher.wait_ready(60) and batcher.mode == "continuous"
        assert futures["kept"].result(timeout=60).generation.generated_tokens >= 1
        with pytest.raises(LeaseLost):
            futures["lost"].result(timeout=60)
    finally:
        batcher.stop(timeout_s=30)
    assert started.job_ids == ["kept"]
