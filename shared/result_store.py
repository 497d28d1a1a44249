"""Final results, written once: the first writer wins, atomically, and is never replaced.

Celery's own store is a GET then a SET (two workers can both write, and a later `succeeded`
can replace a `failed`), and a store that fails is handled as the job's failure and acked.
Workers therefore store their record here themselves (`ignore_result=True`): `SET NX` plus the
PUBLISH Celery's result consumers listen for, in one script (`scripts/store_result_once.lua`), in
Celery's own format, so
`AsyncResult`, Flower and greenq's client read it as before. A storefront's cancel writes its
`cancelled` record the same way (`cancel`), so it never replaces a stored result either.
"""

from __future__ import annotations

from typing import Any

from celery import states

from greenq.shared import scripts, start_marks
from greenq.shared.errors import JobNotComputed
from greenq.shared.results import JobResult, result_from_meta


class ResultStore:
    def __init__(self, backend: Any, ttl_s: int) -> None:
        self._backend = backend
        self._ttl_s = ttl_s

    def get(self, job_id: str) -> JobResult | None:
        """The stored final result, or None."""
        meta = self._backend.get_task_meta(job_id, cache=False)
        if meta.get("status") not in states.READY_STATES:
            return None
        return result_from_meta(job_id, meta)

    def put_once(self, result: JobResult) -> tuple[JobResult, bool]:
        """Store `result` unless a final result exists; returns (the stored result, whether ours)."""
        key, encoded = self._encoded(result)
        client = self._backend.client  # read at each call: a test may swap the backend's client
        if scripts.register(client, "store_result_once")(keys=[key], args=[encoded, self._ttl_s], client=client):
            return result, True
        stored = self.get(result.job_id)  # None only if something other than a final state sits there
        return (stored or result), False

    def cancel(self, record: JobResult) -> bool:
        """Cancel the job and store `record` (its `cancelled` result) if no worker started it and no result is
        stored; True if it is cancelled now (or was before)."""
        key, encoded = self._encoded(record)
        return start_marks.cancel(self._backend.client, record.job_id, self._ttl_s, key, encoded)

    def _encoded(self, result: JobResult) -> tuple[str, bytes]:
        """The result's backend key and its record in Celery's format (a failure: `JobNotComputed` carrying it)."""
        record = result.to_json()
        if result.status.is_success:
            meta = self._backend._get_result_meta(record, states.SUCCESS, None, None)
        else:
            error = self._backend.prepare_exception(JobNotComputed(record))
            meta = self._backend._get_result_meta(error, states.FAILURE, None, None)
        meta["task_id"] = result.job_id
        return self._backend.get_key_for_task(result.job_id), self._backend.encode(meta)
