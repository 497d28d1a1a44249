"""The Celery edge of a worker: one task per job type, each a thin call into `JobHandler`.

Per message: a job whose final result is already stored is not computed again; a job
whose batch already started `max_attempts` times (its worker died each time) is
dead-lettered; a job attempted before runs alone; a bad body fails alone and is
dead-lettered; a job handed back on shutdown is requeued.

A succeeded job's record is the task's return value. A failed or expired job raises
`JobNotComputed` carrying its record, so Celery stores a FAILURE that Flower and
celery-exporter count, and clients still read the whole record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task, states
from celery.exceptions import Reject

from shared import claims
from shared.deadletter import DeadLetter, DeadLetterStore
from shared.errors import InvalidJob, JobNotComputed
from shared.jobs import JobType
from shared.queues import queue_name, task_name
from shared.results import JobResult, result_from_meta
from shared.settings import Settings
from workers import metrics
from workers.attempts import AttemptCounter
from workers.batcher import Requeue
from workers.handler import JobHandler


def register_job_tasks(
    app: Celery,
    handler: JobHandler,
    settings: Settings,
    attempts: AttemptCounter,
    on_finished: Callable[[JobResult], None] = metrics.record_result,
) -> None:
    """One task per job type; `on_finished` sees every final result this worker makes."""
    for job_type in JobType:
        _register(app, handler, settings, attempts, job_type, on_finished)


def _finish(result: JobResult) -> dict[str, Any]:
    if not result.status.is_success:
        raise JobNotComputed(result.to_json())
    return result.to_json()


def _register(
    app: Celery,
    handler: JobHandler,
    settings: Settings,
    attempts: AttemptCounter,
    job_type: JobType,
    on_finished: Callable[[JobResult], None],
) -> None:
    @app.task(name=task_name(job_type), bind=True, acks_late=True, typing=False)
    def run_job(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        job_id: str = task.request.id
        backend = task.app.backend
        stored = backend.get_task_meta(job_id, cache=False)
        if stored.get("status") in states.READY_STATES:
            return _finish(result_from_meta(job_id, stored))  # a redelivery of a finished job: no recompute

        if not claims.claim_for_worker(backend.client, job_id, settings.result_ttl_s):
            return _finish(handler.cancelled(job_type, job_id))  # cancelled before it reached us

        tried = attempts.attempts(job_id)

        def dead_letter(result: JobResult) -> None:
            letter = DeadLetter(
                reason=result.error or "",
                queue=queue_name(job_type),
                task=task.name,
                job_id=job_id,
                args=list(args),
                attempts=tried,
            )
            DeadLetterStore(backend.client).add(letter)

        if tried >= settings.max_attempts:
            result = handler.given_up(job_type, job_id, tried)
            dead_letter(result)
            on_finished(result)
            return _finish(result)

        # Producers send one positional argument, the envelope; anything else is malformed.
        body = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
        try:
            result = handler.handle(job_type, job_id, body, solo=tried > 0)
        except InvalidJob as exc:
            result = handler.invalid(job_type, job_id, exc)
            dead_letter(result)
        except Requeue:
            raise Reject("worker stopping", requeue=True) from None
        on_finished(result)
        return _finish(result)
