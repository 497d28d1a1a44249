"""Fault tests: real Redis, real worker processes, real kills. Every job ends with exactly one
final result and none is lost."""

from __future__ import annotations

import json
import pickle
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from greenq.producers.client import Client, JobSpec
from greenq.shared.deadletter import DeadLetter, DeadLetterStore
from greenq.shared.queues import queue_name, task_name
from greenq.shared.results import JobStatus
from tests.integration.harness import Stack, free_port, replies

REPLY = {"customer_message": "Where is my order?"}

pytestmark = pytest.mark.chaos


def test_kill9_with_buffered_jobs_then_a_second_worker_completes_them(fast_redelivery: Stack, tmp_path: Path) -> None:
    s = fast_redelivery
    holder = s.start_worker(tmp_path / "a.log", node="a@test", env={"GREENQ_BATCH__REPLY__MAX_WAIT_S": "4.5"})
    ids = s.client.submit_many(replies(5, "buffered"))
    s.wait_for(lambda: s.unacked() == 5, what="worker A to reserve the jobs")
    s.kill(holder)  # the five jobs sat in A's batcher, waiting for the batch to fill
    s.start_worker(tmp_path / "b.log", node="b@test")
    results = s.results(ids)
    assert all(r.status is JobStatus.succeeded and r.worker == "b@test" for r in results.values())


def test_kill9_during_a_batch_then_a_second_worker_completes_it(fast_redelivery: Stack, tmp_path: Path) -> None:
    s = fast_redelivery
    port = free_port()
    # A 1 s max wait makes the six jobs one batch however the messages trickle in.
    env = {"GREENQ_CHAOS__BATCH_DELAY_S": "2.5", "GREENQ_BATCH__REPLY__MAX_WAIT_S": "1"}
    busy = s.start_worker(tmp_path / "a.log", node="a@test", metrics_port=port, env=env)
    ids = s.client.submit_many(replies(6, "computing"))
    s.wait_for(lambda: "greenq_current_batch_size 6.0" in s.metrics_text(port), what="the batch to start")
    s.kill(busy)
    s.start_worker(tmp_path / "b.log", node="b@test")
    results = s.results(ids)
    assert all(r.status is JobStatus.succeeded and r.worker == "b@test" for r in results.values())


def test_sigterm_finishes_the_batch_and_hands_back_the_rest(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    port = free_port()
    env = {
        "GREENQ_CHAOS__BATCH_DELAY_S": "2",
        "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": "4",
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": "1",
    }  # batches close full, not on a 20 ms timer
    first = s.start_worker(tmp_path / "a.log", node="a@test", metrics_port=port, env=env)
    ids = s.client.submit_many(replies(12, "sigterm"))
    s.wait_for(lambda: "greenq_current_batch_size 4.0" in s.metrics_text(port), what="a batch to start")
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert time.monotonic() - stopped_at < 10  # one batch (2 s), not all three
    s.start_worker(tmp_path / "b.log", node="b@test")
    results = s.results(ids)
    assert all(r.status is JobStatus.succeeded for r in results.values())
    by_a = [r for r in results.values() if r.worker == "a@test"]
    assert 1 <= len(by_a) <= 8 and len(by_a) % 4 == 0  # only batches that had started
    assert any(r.worker == "b@test" for r in results.values())


def test_poison_job_is_dead_lettered_after_max_attempts(fast_redelivery: Stack, tmp_path: Path) -> None:
    s = fast_redelivery
    env = {"GREENQ_CHAOS__CRASH_MARKER": "POISON-PILL", "GREENQ_MAX_ATTEMPTS": "2"}
    log = tmp_path / "launcher.log"
    s.spawn([sys.executable, "-m", "greenq.workers.commands.cli", "worker", "--devices", "cpu"], log, env=env)
    poison = s.client.submit("reply", {"customer_message": "POISON-PILL please"})
    innocent = s.client.submit_many(replies(5, "innocent"))
    results = s.results([poison, *innocent], timeout_s=240)
    assert all(results[i].status is JobStatus.succeeded for i in innocent), [results[i].error for i in innocent]
    assert results[poison].status is JobStatus.failed
    assert "gave up after 2 attempts" in (results[poison].error or "")
    letters = [d for d in DeadLetterStore(s.redis).list() if d.job_id == poison]
    assert len(letters) == 1 and letters[0].retryable and letters[0].attempts == 2
    assert "SIGKILL" in log.read_text() or "exited with -9" in log.read_text()


def test_out_of_memory_splits_and_lowers_the_batch_size(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    port = free_port()
    env = {
        "GREENQ_CHAOS__OOM_ABOVE_BATCH_SIZE": "2",
        "GREENQ_CHAOS__FAIL_MARKER": "FAIL-ALONE",
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.5",
    }
    s.start_worker(tmp_path / "w.log", metrics_port=port, env=env)
    specs = replies(7, "oom") + [JobSpec("reply", {"customer_message": "FAIL-ALONE"})]
    ids = s.client.submit_many(specs)
    results = s.results(ids)
    failed = [r for r in results.values() if r.status is JobStatus.failed]
    assert len(failed) == 1 and "injected failure" in (failed[0].error or "")
    assert sum(r.status is JobStatus.succeeded for r in results.values()) == 7
    assert all(r.batch_size <= 2 for r in results.values())
    later = s.results(s.client.submit_many(replies(6, "after")))
    assert all(r.status is JobStatus.succeeded and r.batch_size <= 2 for r in later.values())
    text = s.metrics_text(port)
    assert "greenq_batch_size_cap 2.0" in text
    ooms = re.search(r"^greenq_out_of_memory_total (\S+)$", text, flags=re.M)
    assert ooms is not None and float(ooms[1]) >= 1


def test_one_idempotency_key_from_many_producers_is_one_job(fresh: Stack, tmp_path: Path) -> None:
    ids: list[str] = []
    clients = [Client(fresh.settings) for _ in range(6)]
    barrier = threading.Barrier(len(clients))

    def produce(client: Client) -> None:
        barrier.wait()
        ids.append(client.submit("reply", REPLY, idempotency_key="ticket-42"))

    threads = [threading.Thread(target=produce, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and fresh.queued("reply") == 1
    fresh.start_worker(tmp_path / "w.log")
    assert fresh.client.result(ids[0], timeout_s=60).status is JobStatus.succeeded
    for c in clients:
        c.close()


def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    s.start_worker(tmp_path / "w.log")
    queue = queue_name("reply")
    app = s.client.app
    s.redis.lpush(queue, b"\xff\xfe not json")
    unknown = app.send_task("greenq.jobs.poem", args=[{}], queue=queue).id
    wrong = app.send_task(task_name("reply"), args=[{"job_id": "x", "job_type": "reply"}], queue=queue).id
    huge_payload = {"customer_message": "x" * 70_000}  # over GREENQ_MAX_PAYLOAD_BYTES
    envelope = s.client.prepare(JobSpec("reply", REPLY)).model_copy(update={"payload": huge_payload}).encode()
    huge = app.send_task(task_name("reply"), args=[envelope], queue=queue).id
    with app.producer_or_acquire() as producer:  # pickle: refused by accept_content
        producer.publish(
            pickle.dumps({"evil": True}),
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            routing_key=queue,
            exchange=queue,
            headers={"task": task_name("reply"), "id": "pickled-1"},
        )
    good = s.client.submit("reply", REPLY)
    assert s.client.result(good, timeout_s=60).status is JobStatus.succeeded
    for bad in (wrong, huge):
        result = s.client.result(bad, timeout_s=60)
        assert result.status is JobStatus.failed and "invalid job" in (result.error or "")
    assert "payload" in (s.client.result(huge).error or "") and "limit" in (s.client.result(huge).error or "")
    s.wait_for(lambda: len(DeadLetterStore(s.redis).list()) >= 5, what="five dead letters")
    reasons = {d.job_id or d.raw or "": d.reason for d in DeadLetterStore(s.redis).list()}
    assert "unknown task 'greenq.jobs.poem'" in reasons[unknown]
    assert "envelope." in reasons[wrong]
    assert "limit" in reasons[huge]
    assert "Refusing to deserialize untrusted content of type pickle" in reasons["pickled-1"]
    assert any(r.startswith("undecodable message: ") for r in reasons.values())  # the non-JSON list item


def test_dlq_cli_lists_shows_retries_and_purges(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    s.start_worker(tmp_path / "w.log")
    envelope = s.client.prepare(JobSpec("reply", REPLY)).model_copy(update={"job_id": "retry-me"}).encode()
    store = DeadLetterStore(s.redis)
    letter_id = store.add(
        DeadLetter(
            reason="crashed twice",
            queue=queue_name("reply"),
            task=task_name("reply"),
            job_id="retry-me",
            args=[envelope],
        )
    )
    store.add(DeadLetter(reason="undecodable", raw="garbage"))

    listing = s.cli("dlq", "list")
    assert listing.returncode == 0 and letter_id in listing.stdout and "crashed twice" in listing.stdout
    shown = s.cli("dlq", "show", letter_id)
    assert json.loads(shown.stdout)["job_id"] == "retry-me"
    assert s.cli("dlq", "retry", letter_id).returncode == 0
    assert s.client.result("retry-me", timeout_s=60).status is JobStatus.succeeded
    assert store.get(letter_id) is None
    assert s.cli("dlq", "purge").stdout.strip().startswith("purged 1")


def test_expired_job_is_counted_in_metrics(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    late = s.client.submit("strategy", {"period": "Q1", "metrics": {}}, deadline_s=0.3)
    time.sleep(0.6)
    port = free_port()
    s.start_worker(tmp_path / "w.log", metrics_port=port)
    assert s.client.result(late, timeout_s=60).status is JobStatus.expired
    assert 'greenq_jobs_total{job_type="strategy",status="expired"} 1.0' in s.metrics_text(port)
