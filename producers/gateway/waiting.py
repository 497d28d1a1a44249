"""Long-polls wait here without holding a thread: one task polls every waited-on job in one MGET."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from greenq.shared.results import is_final

log = logging.getLogger(__name__)
POLL_S = 0.1


class ResultWaiter:
    """`await waiter.wait(job_id, 20)` returns True as soon as the job's result is stored, False after 20 s.

    Lives on the server's event loop; the polling task runs only while someone waits.
    """

    def __init__(self, backend: Any, poll_s: float = POLL_S) -> None:
        self._backend = backend
        self._poll_s = poll_s
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def wait(self, job_id: str, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(job_id, []).append(future)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._poll())
        try:
            await asyncio.wait_for(future, timeout_s)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            futures = self._waiting.get(job_id, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(job_id, None)

    async def _poll(self) -> None:
        while self._waiting:
            await asyncio.sleep(self._poll_s)
            job_ids = list(self._waiting)
            if not job_ids:
                return
            try:
                done = await asyncio.to_thread(finished_among, self._backend, job_ids)
            except Exception:  # Redis away: keep waiting; the request's own deadline still ends it
                log.warning("long-poll check failed", exc_info=True)
                continue
            for job_id in done:
                for future in self._waiting.get(job_id, []):
                    if not future.done():
                        future.set_result(None)


def finished_among(backend: Any, job_ids: Sequence[str]) -> set[str]:
    """The jobs, of these, whose final result is stored: one MGET for all of them."""
    if not job_ids:
        return set()
    raws = backend.mget([backend.get_key_for_task(j) for j in job_ids])
    return {j for j, raw in zip(job_ids, raws, strict=True) if raw is not None and is_final(backend.decode_result(raw))}
