"""A job as its owner sees it: deferred, queued, running or its result; and cancelling it. Blocking: run in a thread."""

from __future__ import annotations

import time

from greenq.producers.gateway.admission import throttle
from greenq.producers.gateway.errors import ApiError
from greenq.producers.gateway.schemas import JobView
from greenq.producers.gateway.state import GatewayState
from greenq.producers.gateway.tenants import Tenant
from greenq.shared import start_marks
from greenq.shared.keys import OWNER_KEY_PREFIX
from greenq.shared.result_store import ResultStore
from greenq.shared.results import JobResult, JobStatus, is_final, result_from_meta


def owned(state: GatewayState, who: Tenant, job_id: str) -> None:
    """404 unless `who` submitted `job_id` and its record lives (another tenant's job is not found either)."""
    owner = state.store.get(f"{OWNER_KEY_PREFIX}{job_id}")
    if owner is None or owner != who.name.encode():
        raise ApiError(
            404,
            "not_found",
            f"no job {job_id} (or its result expired: results are kept {state.settings.result_ttl_s} s after a job "
            "ends)",
        )


def look_up(state: GatewayState, who: Tenant, job_id: str) -> JobView:
    """The owner's request for its job: counted against its rate limit."""
    throttle(state, who)
    owned(state, who, job_id)
    current = view(state, job_id)
    if current.result is not None:  # in case this job's notification was missed (finished.py)
        state.owners.expire_with_results([job_id])
    return current


def view(state: GatewayState, job_id: str) -> JobView:
    meta = state.backend.get_task_meta(job_id, cache=False)
    if is_final(meta):
        result = result_from_meta(job_id, meta)
        return JobView(id=job_id, status=result.status.value, result=result)
    started = start_marks.state(state.store, job_id) == start_marks.RECEIVED
    if not started:
        waiting = state.deferred.status(job_id)
        if waiting is not None and not waiting.releasing:
            return JobView(
                id=job_id, status="deferred", run_by=waiting.run_by, planned_start_at=waiting.planned_start_s
            )
    return JobView(id=job_id, status="running" if started else "queued")


def cancel(state: GatewayState, who: Tenant, job_id: str) -> JobView:
    """Cancel a job no worker has started (write-once, as a worker's result); 409 once one has."""
    throttle(state, who)
    owned(state, who, job_id)
    record = JobResult(
        job_id=job_id,
        job_type=None,
        status=JobStatus.cancelled,
        error="cancelled before a worker started it",
        finished_at=time.time(),
    )
    if not ResultStore(state.backend, state.settings.result_ttl_s).cancel(record):
        current = view(state, job_id)
        raise ApiError(409, "already_started", f"job {job_id} is {current.status}; it can no longer be cancelled")
    state.deferred.withdraw(job_id)  # if it was waiting for the scheduler; released or not, no worker will run it
    return JobView(id=job_id, status=JobStatus.cancelled.value, result=record)
