"""The Celery edge (workers/edge/tasks.py) run in-process: Celery's `apply`, a real redis-server behind the result
backend (its Lua scripts and atomicity are the point), the fake runtime behind a real batcher. No broker, no
worker process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from celery import Celery

from greenq.shared import job_types, start_marks
from greenq.shared.attempts import AttemptCounter
from greenq.shared.celery_app import make_celery
from greenq.shared.deadletter import DeadLetterStore
from greenq.shared.envelope import Envelope
from greenq.shared.queues import queue_name, task_name
from greenq.shared.result_store import ResultStore
from greenq.shared.results import JobResult, JobStatus
from greenq.shared.settings import Settings
from greenq.workers.edge import tasks
from greenq.workers.edge.handler import JobHandler, WorkerIdentity
from greenq.workers.edge.leases import JobLeases
from greenq.workers.edge.tasks import TaskContext, register_job_tasks
from greenq.workers.serving.batcher import Batcher
from tests.fake_runtime import EchoRuntime
from tests.unit.redis_server import FlakyClient, real_redis_fixture

# Port 1 refuses at once: the broker is never reached (the result backend's client is replaced).
SETTINGS = Settings(broker_url="redis://127.0.0.1:1/0", model="echo", max_prompt_tokens=4096, max_attempts=3)
real_redis = real_redis_fixture()


@dataclass
class Worker:
    """One worker's task edge, wired as workers/edge/process.py wires it."""

    app: Celery
    redis: FlakyClient
    runtime: EchoRuntime
    batcher: Batcher
    context: TaskContext
    finished: list[JobResult] = field(default_factory=list)

    def run(self, job_id: str, *args: Any, job_type: str = "reply") -> Any:
        """Run the job's task as a worker thread would; returns Celery's EagerResult."""
        return self.app.tasks[task_name(job_type)].apply(args=args, task_id=job_id)

    def stored(self, job_id: str) -> JobResult | None:
        return ResultStore(self.app.backend, SETTINGS.result_ttl_s).get(job_id)


@contextmanager
def task_edge(client: Any) -> Iterator[Worker]:
    app = make_celery(SETTINGS)
    app.backend.client = client  # the result backend's redis-py client: the one client the task edge uses
    runtime = EchoRuntime()
    leases = JobLeases(client, ttl_s=30, owner="test@host")
    batcher = Batcher({"echo": runtime}, SETTINGS.batch, lease_check=leases.lost)
    batcher.start()
    finished: list[JobResult] = []
    context = TaskContext(
        handler=JobHandler(SETTINGS, {"echo": runtime}, batcher, WorkerIdentity("test@host", "cpu")),
        settings=SETTINGS,
        attempts=AttemptCounter(client, SETTINGS.result_ttl_s),
        leases=leases,
        on_finished=finished.append,
        stopping=threading.Event(),
    )
    register_job_tasks(app, context)
    try:
        yield Worker(app, client, runtime, batcher, context, finished)
    finally:
        batcher.stop(timeout_s=5)


@pytest.fixture
def worker(real_redis: redis.Redis) -> Iterator[Worker]:
    """The task edge on a real redis-server (wrapped so a test can make its next commands fail)."""
    with task_edge(FlakyClient(real_redis)) as edge:
        yield edge


def envelope(job_id: str, job_type: str = "reply") -> dict[str, Any]:
    return Envelope(
        job_id=job_id,
        job_type=job_type,
        payload=dict(job_types.get(job_type).samples[0]),
        submitted_at=time.time(),
        priority=5,
    ).encode()


def test_every_job_type_has_a_task_on_its_queue(worker: Worker) -> None:
    for job_type in job_types.names():
        task = worker.app.tasks[task_name(job_type)]
        assert task.acks_late and task.ignore_result
        assert worker.app.amqp.router.route({}, task.name)["queue"].name == queue_name(job_type)


def test_a_job_is_computed_stored_once_and_reported(worker: Worker) -> None:
    listener = worker.redis.pubsub()
    listener.subscribe(worker.app.backend.get_key_for_task("job-1"))
    assert listener.get_message(timeout=5) is not None  # subscribed
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.successful()
    assert outcome.result["status"] == "succeeded"
    stored = worker.stored("job-1")
    assert stored is not None and stored.status is JobStatus.succeeded
    assert worker.finished == [stored]
    heard = listener.get_message(timeout=5)  # Celery's result consumers hear of it
    assert heard is not None and heard["type"] == "message"
    listener.close()
    assert start_marks.state(worker.redis, "job-1") == start_marks.RECEIVED
    assert worker.context.leases.holder("job-1") is None  # released
    assert worker.runtime.batches == [1]


def test_a_redelivered_finished_job_is_not_computed_again(worker: Worker) -> None:
    first = worker.run("job-1", envelope("job-1"))
    again = worker.run("job-1", envelope("job-1"))
    assert again.result == first.result
    assert worker.runtime.batches == [1]
    assert len(worker.finished) == 1  # reported once, by the run that stored it


def test_a_job_cancelled_before_any_worker_started_it_ends_cancelled(worker: Worker) -> None:
    record = JobResult(job_id="job-1", job_type=None, status=JobStatus.cancelled, error="cancelled by its tenant")
    assert ResultStore(worker.app.backend, SETTINGS.result_ttl_s).cancel(record)
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.failed()  # JobNotComputed, carrying the record, so Flower counts it
    stored = worker.stored("job-1")
    assert stored is not None and stored.status is JobStatus.cancelled
    worker.redis.set(
        start_marks.start_mark_key("job-2"), start_marks.CANCELLED
    )  # its claim alone says so: no result yet
    assert worker.run("job-2", envelope("job-2")).failed()
    stored = worker.stored("job-2")
    assert stored is not None and stored.status is JobStatus.cancelled
    assert worker.runtime.batches == []


def test_a_job_that_took_its_worker_down_too_often_is_given_up_and_dead_lettered(worker: Worker) -> None:
    for _ in range(SETTINGS.max_attempts):  # each batch start whose worker then died: a process of its own each
        AttemptCounter(worker.redis, SETTINGS.result_ttl_s).record(["job-1"])
    body = envelope("job-1")
    worker.run("job-1", body)
    stored = worker.stored("job-1")
    assert stored is not None and stored.status is JobStatus.failed
    assert stored.error is not None and stored.error.startswith("gave up after 3 attempts")
    [letter] = DeadLetterStore(worker.redis).list()
    assert (letter.job_id, letter.attempts, letter.queue) == ("job-1", 3, queue_name("reply"))
    assert letter.retryable and letter.args == [body]  # `greenq dlq retry` can send it again
    assert worker.runtime.batches == []


def test_a_job_attempted_before_runs_alone(worker: Worker) -> None:
    worker.context.attempts.record(["job-1"])
    assert worker.run("job-1", envelope("job-1")).successful()
    assert worker.runtime.batches == [1]


@pytest.mark.parametrize("args", [({"not": "an envelope"},), (), (1, 2)])
def test_a_malformed_message_fails_alone_and_is_dead_lettered(worker: Worker, args: tuple[Any, ...]) -> None:
    worker.run("job-1", *args)
    stored = worker.stored("job-1")
    assert stored is not None and stored.status is JobStatus.failed
    assert stored.error is not None and stored.error.startswith("invalid job")
    [letter] = DeadLetterStore(worker.redis).list()
    assert letter.job_id == "job-1" and letter.task == task_name("reply")


def test_an_unexpected_error_fails_the_job_with_its_reason(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(text: str) -> list[int]:
        raise ValueError("tokenizer bug")

    monkeypatch.setattr(worker.runtime, "encode", broken)
    worker.run("job-1", envelope("job-1"))
    stored = worker.stored("job-1")
    assert stored is not None and stored.status is JobStatus.failed
    assert stored.error == "internal error: ValueError('tokenizer bug')"


def test_a_job_another_live_worker_computes_gets_that_workers_result(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "HOLDER_POLL_S", 0.01)
    other = JobLeases(worker.redis, ttl_s=30, owner="other@host")
    token = other.acquire("job-1")
    assert token is not None
    theirs = JobResult(job_id="job-1", job_type="reply", status=JobStatus.succeeded, text="from the other worker")
    their_store = ResultStore(worker.app.backend, SETTINGS.result_ttl_s)  # app.backend is per thread: take it here

    def other_worker_finishes() -> None:
        time.sleep(0.05)
        their_store.put_once(theirs)
        other.release("job-1", token)

    threading.Thread(target=other_worker_finishes).start()
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.result["text"] == "from the other worker"
    assert worker.runtime.batches == [] and worker.finished == []


def test_a_job_another_live_worker_holds_goes_back_to_the_queue_when_stopping(worker: Worker) -> None:
    assert JobLeases(worker.redis, ttl_s=30, owner="other@host").acquire("job-1") is not None
    worker.context.stopping.set()
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.state == "REJECTED"  # Reject(requeue=True): the message goes back, not acked
    assert worker.stored("job-1") is None and worker.runtime.batches == []


def test_a_job_the_stopping_batcher_cannot_take_goes_back_to_the_queue(worker: Worker) -> None:
    worker.batcher.stop(timeout_s=5)
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.state == "REJECTED"
    assert worker.stored("job-1") is None
    assert worker.context.leases.holder("job-1") is None  # released for whoever gets it next


def test_redis_trouble_is_retried_not_the_jobs_failure(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "RETRY_FIRST_S", 0.001)
    worker.redis.fail_next(3)
    assert worker.run("job-1", envelope("job-1")).successful()
    stored = worker.stored("job-1")
    assert stored is not None and stored.status is JobStatus.succeeded


def test_redis_trouble_while_stopping_hands_the_job_back(worker: Worker) -> None:
    worker.context.stopping.set()
    worker.redis.fail_next(1)
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.state == "REJECTED"
    assert worker.stored("job-1") is None


def test_a_copy_that_wins_the_lease_after_the_holder_finished_does_not_compute_again(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20, finding 4: the copy read "no result", then the holder stored its result and released its
    lease, then the copy took the (now free) lease. It must look at the stored result again, not compute."""
    other = JobLeases(worker.redis, ttl_s=30, owner="other@host")
    token = other.acquire("job-1")
    assert token is not None
    theirs = JobResult(job_id="job-1", job_type="reply", status=JobStatus.succeeded, text="from the other worker")
    their_store = ResultStore(worker.app.backend, SETTINGS.result_ttl_s)
    take_lease = worker.context.leases.acquire
    calls = 0

    def holder_finishes_then_take_lease(job_id: str) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:  # exactly in the window: after the copy's read, before its lease
            their_store.put_once(theirs)
            other.release("job-1", token)
        return take_lease(job_id)

    monkeypatch.setattr(worker.context.leases, "acquire", holder_finishes_then_take_lease)
    outcome = worker.run("job-1", envelope("job-1"))
    assert outcome.result["text"] == "from the other worker"
    assert worker.runtime.batches == [], "the copy computed a job whose result was stored"
    assert worker.finished == []
    assert worker.context.leases.holder("job-1") is None  # the copy let go of the lease it took
