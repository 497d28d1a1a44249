"""How many deferred jobs the fleet can start per hour: a setting, or measured from the workers.

Measured: each worker's adaptive batcher learns seconds per batch size (`greenq pool status`); its best
jobs/s over the deferrable job types it serves is what it can do flat out. The fleet's sum, times
GREENQ_SCHEDULER_CAPACITY_SHARE, is what deferred work may take, leaving the rest for interactive jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

REFRESH_S = 60.0


def worker_jobs_per_s(status: Mapping[str, Any], job_types: set[str]) -> float:
    """One worker's best measured jobs/s over the given job types (0 when it has measured none)."""
    best = 0.0
    for job_type, state in (status.get("adaptive") or {}).items():
        if job_type not in job_types:
            continue
        for size, cost in (state.get("learned_cost_by_size") or {}).items():
            seconds = float(cost.get("seconds") or 0)
            if seconds > 0:
                best = max(best, int(size) / seconds)
    return best


def fleet_jobs_per_hour(statuses: Mapping[str, Mapping[str, Any]], job_types: set[str]) -> float:
    return 3600.0 * sum(worker_jobs_per_s(s, job_types) for s in statuses.values() if "error" not in s)


class Capacity:
    """Deferred jobs per hour: the setting if positive, else the measured fleet (refreshed every minute).

    None when nothing is set or measured: the plan is then not capacity-bound.
    """

    def __init__(
        self,
        jobs_per_hour: float,
        share: float,
        job_types: set[str],
        read_statuses: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._set = jobs_per_hour
        self._share = share
        self._job_types = job_types
        self._read = read_statuses
        self._clock = clock
        self._measured: float | None = None
        self._read_at = -float("inf")

    def jobs_per_hour(self) -> float | None:
        if self._set > 0:
            return self._set
        if self._read is None:
            return None
        if self._clock() - self._read_at >= REFRESH_S:
            self._read_at = self._clock()
            try:
                measured = fleet_jobs_per_hour(self._read(), self._job_types)
            except Exception as exc:  # no answer from the workers: keep the last figure
                log.warning("could not read the workers' throughput: %s", exc)
            else:
                self._measured = measured * self._share if measured > 0 else None
        return self._measured
