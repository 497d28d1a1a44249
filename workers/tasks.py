"""The Celery edge of a worker: one task per job type, each a thin call into `JobHandler`.

A succeeded job's record is the task's return value. A failed or expired job raises
`JobNotComputed` carrying its record, so Celery stores a FAILURE that Flower and
celery-exporter count, and clients still read the whole record.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from shared.errors import JobNotComputed
from shared.jobs import JobType
from shared.queues import task_name
from workers import metrics
from workers.handler import JobHandler


def register_job_tasks(app: Celery, handler: JobHandler) -> None:
    for job_type in JobType:
        _register(app, handler, job_type)


def _register(app: Celery, handler: JobHandler, job_type: JobType) -> None:
    @app.task(name=task_name(job_type), bind=True, acks_late=True, typing=False)
    def run_job(task: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # Producers send one positional argument, the envelope; anything else is malformed
        # and is reported through the handler like any other bad input.
        body = args[0] if len(args) == 1 and not kwargs else {"args": list(args), "kwargs": kwargs}
        result = handler.handle(job_type, task.request.id, body)
        metrics.record_result(result)
        if not result.status.is_success:
            raise JobNotComputed(result.to_json())
        return result.to_json()
