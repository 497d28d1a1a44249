"""Guarantees under production faults, each reproduced with real Redis servers, real worker
processes and real kills (issue "Guarantees II"). Each test failed on the code before its fix."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from greenq.shared import start_marks
from greenq.shared.errors import BrokerUnavailable
from greenq.shared.keys import COMPUTATIONS_KEY
from greenq.shared.local_redis import LocalRedis
from greenq.shared.result_store import ResultStore
from greenq.shared.results import JobResult, JobStatus
from tests.integration.gateways import Gateway
from tests.integration.harness import Stack, free_port, replies, stack

pytestmark = pytest.mark.chaos


def _jobs_batched(s: Stack, port: int) -> float:
    """How many job computations a worker has run (the sum of its batch-size histogram)."""
    match = re.search(r"^greenq_batch_size_sum\{[^}]*\} (\S+)$", s.metrics_text(port), flags=re.M)
    return float(match[1]) if match else 0.0


def test_a_job_popped_by_a_worker_that_dies_before_reading_it_is_not_lost(
    fast_redelivery: Stack, tmp_path: Path
) -> None:
    """Finding 1: a message that Redis handed to a consumer which never read it must come back.

    An idle worker waits for messages; it is frozen (SIGSTOP) so that Redis hands the next
    message to a process that cannot read it, then killed (SIGKILL). With a fetch that pops
    the message before recording it anywhere, the job is gone for good.
    """
    s = fast_redelivery
    doomed = s.start_worker(tmp_path / "a.log", node="a@test")
    time.sleep(1.0)  # idle: waiting for work
    os.killpg(doomed.pid, signal.SIGSTOP)
    ids = s.client.submit_many(replies(3, "frozen"))
    time.sleep(1.0)
    s.kill(doomed)
    s.start_worker(tmp_path / "b.log", node="b@test")
    results = s.results(ids, timeout_s=60)
    assert all(r.status is JobStatus.succeeded and r.worker == "b@test" for r in results.values())


def test_a_result_backend_outage_fails_no_job_and_loses_none(
    own_redis: LocalRedis, redis_port: int, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Finding 2: broker and backend on different servers; the backend is down while a batch computes."""
    env = {
        "GREENQ_RESULT_BACKEND_URL": own_redis.url,
        "GREENQ_CHAOS__BATCH_DELAY_S": "2",
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": "1",
        "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": "8",
    }
    with stack(redis_port, tiny_model_dir, env) as s:
        port = free_port()
        s.start_worker(tmp_path / "w.log", metrics_port=port)
        ids = s.client.submit_many(replies(16, "outage"))
        s.wait_for(lambda: "greenq_current_batch_size 8.0" in s.metrics_text(port), what="the first batch")
        own_redis.halt()
        time.sleep(6)
        own_redis.start()
        deadline = time.monotonic() + 120
        while True:
            try:
                results = s.results(ids, timeout_s=max(1.0, deadline - time.monotonic()))
                break
            except BrokerUnavailable:  # the client's own connection is still reconnecting
                assert time.monotonic() < deadline
                time.sleep(0.5)
        failed = [r.error for r in results.values() if r.status is not JobStatus.succeeded]
        assert not failed, failed


def test_a_job_outliving_the_visibility_timeout_is_computed_once(fast_redelivery: Stack, tmp_path: Path) -> None:
    """Finding 4: a job that computes for longer than the visibility timeout is not computed twice."""
    s = fast_redelivery  # visibility timeout 8 s
    env = {"GREENQ_CHAOS__BATCH_DELAY_S": "12", "GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.5"}
    port = free_port()
    s.start_worker(tmp_path / "a.log", node="a@test", metrics_port=port, env=env)
    ids = s.client.submit_many(replies(3, "slow"))
    results = s.results(ids, timeout_s=120)
    assert all(r.status is JobStatus.succeeded for r in results.values())
    time.sleep(14)  # a copy redelivered after 8 s would have been computed by now
    assert _jobs_batched(s, port) == 3


def test_a_broker_connection_loss_does_not_compute_held_jobs_twice(
    own_redis: LocalRedis, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Finding 4: kombu restores every delivered message when the consumer's connection drops,
    while the task threads still compute them; a second worker must not compute them again."""
    slow = {"GREENQ_CHAOS__BATCH_DELAY_S": "15"}
    with stack(own_redis.port, tiny_model_dir, {"GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.5"}, url=own_redis.url) as s:
        ports = [free_port(), free_port()]
        s.start_worker(tmp_path / "a.log", node="a@test", metrics_port=ports[0], env=slow)
        ids = s.client.submit_many(replies(4, "held"))
        s.wait_for(lambda: "greenq_current_batch_size 4.0" in s.metrics_text(ports[0]), what="the batch to start")
        s.start_worker(tmp_path / "b.log", node="b@test", metrics_port=ports[1])
        s.redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        results = s.results(ids, timeout_s=120)
        assert all(r.status is JobStatus.succeeded for r in results.values())
        time.sleep(5)  # a duplicate would have finished by now
        assert sum(_jobs_batched(s, p) for p in ports) == 4


def _computations(s: Stack) -> list[tuple[str, int]]:
    """Every computation the workers logged (GREENQ_CHAOS__LOG_COMPUTATIONS): (job id, pid), in order."""
    pairs = (entry.decode().split() for entry in s.redis.lrange(COMPUTATIONS_KEY, 0, -1))
    return [(job_id, int(pid)) for job_id, pid in pairs]


def test_a_worker_resumed_after_a_pause_does_not_compute_the_buffered_jobs_it_lost(
    fast_redelivery: Stack, tmp_path: Path
) -> None:
    """Issue 20, finding 5: a worker frozen (SIGSTOP) past its lease while jobs wait in its batcher loses
    their leases, and another worker computes them; resumed (SIGCONT), it must not compute them again.

    Worker a batches 2 at a time with a slow batch; it is frozen while its first batch computes and 4 more
    jobs wait in its batcher. Worker b computes all 6 (the 4 at least). The 2 in a's running batch may be
    computed by both (write-once keeps one result); the 4 buffered ones must be computed once, by b."""
    s = fast_redelivery  # consumer lease (and job lease) 3 s
    logged = {"GREENQ_CHAOS__LOG_COMPUTATIONS": "true", "GREENQ_BATCH__REPLY__MODE": "fixed"}
    slow = {
        **logged,
        "GREENQ_CHAOS__BATCH_DELAY_S": "6",  # long enough that a busy machine still freezes a mid-batch
        "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": "2",
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.3",
    }
    log_a = tmp_path / "a.log"
    a_port = free_port()
    a = s.start_worker(log_a, node="a@test", metrics_port=a_port, env=slow)
    ids = s.client.submit_many(replies(6, "paused"))
    s.wait_for(lambda: "greenq_current_batch_size 2.0" in s.metrics_text(a_port), what="a's first batch")
    s.wait_for(lambda: len(_computations(s)) == 2, what="a's first batch logged")
    time.sleep(1.0)  # the other 4 reach a's batcher (6 task threads) and wait there
    os.killpg(a.pid, signal.SIGSTOP)
    running = {job_id for job_id, _ in _computations(s)}
    try:
        s.start_worker(tmp_path / "b.log", node="b@test", env=logged)
        results = s.results(ids, timeout_s=90)  # b computes all 6 once a's heartbeats and leases lapse
        assert all(r.status is JobStatus.succeeded for r in results.values())
        assert all(r.worker == "b@test" for job_id, r in results.items() if job_id not in running)
    finally:
        os.killpg(a.pid, signal.SIGCONT)
    s.wait_for(lambda: "lost the lease" in log_a.read_text(), timeout_s=30, what="a to notice its lost leases")
    time.sleep(10)  # a's running batch finishes (6 s) and its buffered jobs would have formed batches by now
    by_job: dict[str, list[int]] = {job_id: [] for job_id in ids}
    for job_id, pid in _computations(s):
        by_job[job_id].append(pid)
    again = {job_id: pids for job_id, pids in by_job.items() if job_id not in running and pids.count(a.pid)}
    assert not again, f"a computed buffered jobs whose lease it had lost: {again}\n{log_a.read_text()[-3000:]}"
    assert all(len(pids) == 1 for job_id, pids in by_job.items() if job_id not in running), by_job
    assert "was paused" in log_a.read_text()  # the warning says what was seen, not "Redis unreachable"
    lost = re.search(r'^greenq_job_leases_lost_total\{cause="paused"\} (\S+)$', s.metrics_text(a_port), flags=re.M)
    assert lost is not None and float(lost[1]) >= 4


def test_a_cancel_leaves_a_stored_final_result_alone(fresh: Stack, tmp_path: Path) -> None:
    """Issue 20, finding 10: cancel decided on the claim key alone and wrote with Celery's GET-then-SET, so a
    job whose result was stored (expired here) after its claim lapsed became `cancelled`. Write-once applies
    to cancel too: the result stays, and the cancel is refused."""
    s = fresh
    gateway = Gateway(s, tmp_path)
    job = {"period": "Q1", "metrics": {}}
    job_id = gateway.http.post("/v1/jobs/strategy", json={"job": job}, headers=gateway.auth()).json()["id"]
    expired = JobResult(job_id=job_id, job_type="strategy", status=JobStatus.expired, error="deadline passed")
    store = ResultStore(s.client.app.backend, s.settings.result_ttl_s)
    assert store.put_once(expired) == (expired, True)  # as the worker that found it past its deadline stored it
    s.redis.delete(start_marks.start_mark_key(job_id))  # its claim, set when that worker started, lapsed first
    refused = gateway.http.delete(f"/v1/jobs/{job_id}", headers=gateway.auth())
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "already_started"
    assert store.get(job_id) == expired
    assert gateway.http.get(f"/v1/jobs/{job_id}", headers=gateway.auth()).json()["status"] == "expired"
    queued = gateway.http.post("/v1/jobs/strategy", json={"job": job}, headers=gateway.auth()).json()["id"]
    cancelled = gateway.http.delete(f"/v1/jobs/{queued}", headers=gateway.auth())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = gateway.http.delete(f"/v1/jobs/{queued}", headers=gateway.auth())
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # cancelling twice is still cancelled
    stored = store.get(queued)
    assert stored is not None and stored.status is JobStatus.cancelled
