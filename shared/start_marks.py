"""Who gets a job first: a worker starting it, or a storefront cancelling it.

Both sides set the job's *start mark* (`greenq:claim:<job id>`: "received" or "cancelled") only
if it is absent; the first wins. A worker that finds "cancelled" does not compute the job; a cancel
that finds "received", or a stored result, is refused ("already started") and writes nothing.
"""

from __future__ import annotations

from typing import Any

from greenq.shared import scripts
from greenq.shared.keys import START_MARK_KEY_PREFIX

RECEIVED = "received"
CANCELLED = "cancelled"


def start_mark_key(job_id: str) -> str:
    return f"{START_MARK_KEY_PREFIX}{job_id}"


def mark_started(client: Any, job_id: str, ttl_s: int) -> bool:
    """True if the worker may compute the job: it set the start mark first, or a worker did on an earlier
    delivery of the job."""
    if client.set(start_mark_key(job_id), RECEIVED, nx=True, ex=ttl_s):
        return True
    value = client.get(start_mark_key(job_id))
    return value is None or value.decode() == RECEIVED


def cancel(client: Any, job_id: str, ttl_s: int, result_key: str, cancelled_result: bytes) -> bool:
    """True if the job was cancelled before any worker started it; then its cancelled result is stored.

    One script (`scripts/cancel_unstarted_job.lua`) decides and writes: a job whose start mark says a
    worker started it, or whose result is stored (its mark may have lapsed before its result), stays as
    it is. Callers go through `greenq.shared.result_store.ResultStore.cancel`, which encodes the result as
    Celery does."""
    cancel_unstarted = scripts.register(client, "cancel_unstarted_job")
    keys = [start_mark_key(job_id), result_key]
    return bool(cancel_unstarted(keys=keys, args=[CANCELLED, cancelled_result, ttl_s], client=client))


def state(client: Any, job_id: str) -> str | None:
    value = client.get(start_mark_key(job_id))
    return None if value is None else value.decode()
