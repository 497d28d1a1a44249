"""The Celery edge of a worker: one task per job type, each a thin call into `JobHandler`.

Per message, in order:
1. a job whose final result is already stored is not computed again;
2. a job another live worker is computing (it holds the job's lease) is not computed here:
   this copy waits for that worker's result, or for its lease to lapse; a copy that takes the
   lease reads the stored result once more, as the holder may have stored it and let go just then;
3. a job cancelled before any worker started it ends `cancelled`;
4. a job whose batch already started `max_attempts` times (its worker died each time) is
   dead-lettered; a job attempted before runs alone;
5. the job is computed; a bad body fails alone and is dead-lettered; a job handed back on
   shutdown is requeued; a job whose lease was lost while it waited for a batch is not computed
   here: its task goes back to step 1, as a copy;
6. the final record is stored once (first writer wins) and only then is the message acked.

Redis trouble (broker, backend) is never a job's failure: every call to Redis here is
retried with back-off until it goes through, and while the worker stops, the job is handed
back to the queue instead. A succeeded job's record is the task's return value; a failed or
expired one raises `JobNotComputed` (declared in `throws`, so Celery logs one line) after
it was stored, so Flower and celery-exporter count it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from celery import Celery, Task
from celery.exceptions import Reject
from kombu.exceptions import OperationalError

from greenq.shared import job_types, start_marks
from greenq.shared.attempts import AttemptCounter
from greenq.shared.celery_app import register_task
from greenq.shared.deadletter import DeadLetter, DeadLetterStore
from greenq.shared.errors import InvalidJob, JobNotComputed
from greenq.shared.job_types import JobType
from greenq.shared.queues import queue_name, task_name
from greenq.shared.redact import redact_text
from greenq.shared.result_store import ResultStore
from greenq.shared.results import JobResult
from greenq.shared.settings import Settings
from greenq.workers.edge.handler import JobHandler
from greenq.workers.edge.leases import JobLeases
from greenq.workers.serving.batcher import LeaseLost, Requeue

log = logging.getLogger(__name__)
INFRA_ERRORS = (redis.RedisError, OperationalError, OSError)
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 10.0
HOLDER_POLL_S = 0.5
T = TypeVar("T")


@dataclass
class TaskContext:
    """What the job tasks share with the rest of the worker."""

    handler: JobHandler
    settings: Settings
    attempts: AttemptCounter
    leases: JobLeases
    on_finished: Callable[[JobResult], None]
    stopping: threading.Event  # set when the worker starts its warm shutdown


def register_job_tasks(app: Celery, context: TaskContext) -> None:
    """One task per registered job type; `context.on_finished` sees every final result this worker stores."""
    for job_type in job_types.names():
        _register(app, context, job_type)


def retry_infra(call: Callable[[], T], what: str, stopping: threading.Event) -> T:
    """`call()` until Redis lets it through; hand the job back if the worker stops meanwhile."""
    delay_s = RETRY_FIRST_S
    while True:
        try:
            return call()
        except INFRA_ERRORS as exc:
            if stopping.is_set():
                raise Reject(f"worker stopping while Redis is unreachable ({what})", requeue=True) from None
            log.warning("%s: %s; retrying in %.1f s", what, redact_text(str(exc)), delay_s)
            time.sleep(delay_s)
            delay_s = min(RETRY_MAX_S, delay_s * 2)


def _finish(result: JobResult) -> dict[str, Any]:
    if not result.status.is_success:
        raise JobNotComputed(result.to_json())
    return result.to_json()


def _register(app: Celery, context: TaskContext, job_type: JobType) -> None:
    @register_task(
        app,
        name=task_name(job_type),
        bind=True,
        acks_late=True,
        typing=False,
        ignore_result=True,  # stored by ResultStore, once; see shared/result_store.py
        throws=(JobNotComputed,),
        shared=False,  # it closes over this worker's context: not for every app the process makes later
    )
    def run_job(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        job_id: str = task.request.id
        store = ResultStore(task.app.backend, context.settings.result_ttl_s)

        def infra(call: Callable[[], T], what: str) -> T:
            return retry_infra(call, f"job {job_id}: {what}", context.stopping)

        try:
            return _run(task, context, job_type, job_id, store, infra, args, kwargs)
        finally:  # announced when received (Batcher.expect); if it never reached the batcher, stop waiting
            context.handler.unexpect(job_id)


def _run(
    task: Task,
    context: TaskContext,
    job_type: JobType,
    job_id: str,
    store: ResultStore,
    infra: Callable[[Callable[[], Any], str], Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> dict[str, Any]:
    """One message: its stored result, or its lease and computation; the record is stored once."""
    while True:
        token, stored = _lease_or_result(context, job_id, store, infra)
        if stored is not None:
            return _finish(stored)  # a redelivery of a finished job, or a copy whose holder finished: no recompute
        assert token is not None
        try:
            outcome = _compute_and_store(task, context, job_type, job_id, store, infra, args, kwargs)
        finally:
            _release(context, job_id, token)
        if outcome is not None:
            break
        # Its lease was lost while it waited for a batch (this worker was paused or cut off): another worker
        # may be computing it. Wait for that result like any copy, keeping the message here: giving it back
        # would add a copy to the queue, and if nobody holds the lease, this worker takes it again at once.
        log.info("job %s: its lease was lost before its batch started; waiting for whoever holds it", job_id)
    final, ours = outcome
    if ours:
        context.on_finished(final)
    return _finish(final)


def _compute_and_store(
    task: Task,
    context: TaskContext,
    job_type: JobType,
    job_id: str,
    store: ResultStore,
    infra: Callable[[Callable[[], Any], str], Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[JobResult, bool] | None:
    """(the stored record, whether this call stored it); None if the job's lease was lost before its batch."""
    try:
        result = _compute(task, context, job_type, job_id, args, kwargs, infra)
    except LeaseLost:
        return None
    stored: tuple[JobResult, bool] = infra(lambda: store.put_once(result), "storing its result")
    return stored


def _lease_or_result(
    context: TaskContext, job_id: str, store: ResultStore, infra: Callable[[Callable[[], Any], str], Any]
) -> tuple[str | None, JobResult | None]:
    """(this worker's lease token, None) once it may compute the job; (None, the result) once one is stored.

    While another live worker holds the lease, wait for its result or for its lease to lapse."""
    waiting = False
    while True:
        stored = infra(lambda: store.get(job_id), "reading its stored result")
        if stored is not None:
            return None, stored
        token = infra(lambda: context.leases.acquire(job_id), "taking its lease")
        if token is not None:
            # The holder may have stored its result and released between that read and this lease: look again,
            # or this copy computes a finished job.
            stored = infra(lambda: store.get(job_id), "reading its stored result")
            if stored is None:
                return token, None
            _release(context, job_id, token)
            return None, stored
        if not waiting:
            waiting = True
            context.handler.unexpect(job_id)  # another worker computes it: batches here need not wait
        if context.stopping.is_set():
            raise Reject("worker stopping while another worker computes this job", requeue=True)
        time.sleep(HOLDER_POLL_S)


def _release(context: TaskContext, job_id: str, token: str) -> None:
    try:
        context.leases.release(job_id, token)
    except INFRA_ERRORS:
        pass  # it lapses by itself


def _compute(
    task: Task,
    context: TaskContext,
    job_type: JobType,
    job_id: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    infra: Callable[[Callable[[], Any], str], Any],
) -> JobResult:
    """The job's final record (not yet stored). Raises Reject to hand the job back."""
    handler, settings = context.handler, context.settings
    client = task.app.backend.client
    if not infra(lambda: start_marks.mark_started(client, job_id, settings.result_ttl_s), "claiming it"):
        return handler.cancelled(job_type, job_id)  # cancelled before it reached us

    tried: int = infra(lambda: context.attempts.attempts(job_id), "reading its attempts")

    def dead_letter(result: JobResult) -> None:
        letter = DeadLetter(
            reason=result.error or "",
            queue=queue_name(job_type),
            task=task.name,
            job_id=job_id,
            args=list(args),
            attempts=tried,
        )
        infra(lambda: DeadLetterStore(client, settings.dead_letters).add(letter), "dead-lettering it")

    if tried >= settings.max_attempts:
        result = handler.given_up(job_type, job_id, tried)
        dead_letter(result)
        return result

    # Producers send one positional argument, the envelope; anything else is malformed.
    body = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
    try:
        return handler.handle(job_type, job_id, body, solo=tried > 0)
    except InvalidJob as exc:
        result = handler.invalid(job_type, job_id, exc)
        dead_letter(result)
        return result
    except LeaseLost:
        raise
    except Requeue:
        raise Reject("worker stopping", requeue=True) from None
    except INFRA_ERRORS as exc:  # not the job's fault: hand it back rather than ack it without a result
        raise Reject(f"infrastructure error: {redact_text(str(exc))}", requeue=True) from None
    except Exception as exc:  # a bug: fail this job with a stored reason rather than ack it with none
        log.exception("job %s: unexpected error", job_id)
        return handler.crashed(job_type, job_id, exc)
