"""Jobs waiting in the broker that this worker could take now: what a forming batch may wait for.

A thread reads each served queue's depth every `interval_s` (one pipelined LLEN per priority
list: cheap next to the fetch's own polling), and caps it by the worker's free task threads
(a job in Redis reaches this batcher only if a thread is free to bring it). The batcher reads
the last value without touching Redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from greenq.shared.job_types import JobType
from greenq.shared.queue_stats import read_depths

log = logging.getLogger(__name__)
INTERVAL_S = 0.05


class BacklogProbe:
    """
    >>> probe = BacklogProbe(client, ["reply"], free_slots=lambda: 8)
    >>> probe.start(); probe.takeable()  # {"reply": 3}
    """

    def __init__(
        self,
        client: Any,
        job_types: Sequence[JobType],
        free_slots: Callable[[], int],
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._client = client
        self._types = list(job_types)
        self._free_slots = free_slots
        self._interval_s = interval_s
        self._depths: dict[JobType, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="greenq-backlog", daemon=True)

    def start(self) -> BacklogProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def takeable(self) -> Mapping[JobType, int]:
        """Per type: queued jobs, at most as many as this worker has free task threads."""
        free = max(0, self._free_slots())
        return {t: min(depth, free) for t, depth in self._depths.items()}

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._depths = read_depths(self._client, self._types)
            except (redis.RedisError, OSError) as exc:  # no backlog known: batches close by their rule alone
                self._depths = {}
                log.debug("backlog probe: %s", exc)
