"""The worker's observers of its batches: attempts, metrics, the restart on a device fault, and the fault
tests' computation log. Each is a `BaseObserver` (greenq.workers.serving.observers), called by its dispatcher."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

from greenq.shared.attempts import AttemptCounter
from greenq.shared.keys import COMPUTATIONS_KEY
from greenq.workers.edge.metrics import WorkerMetrics
from greenq.workers.serving.observers import BaseObserver, BatchCost


class AttemptObserver(BaseObserver):
    """Opens each job's attempt when its batch starts and closes it when the batch returns (shared/attempts.py)."""

    def __init__(self, attempts: AttemptCounter) -> None:
        self._attempts = attempts

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self._attempts.record(job_ids)

    def after_batch(self, model: str, job_ids: Sequence[str]) -> None:
        self._attempts.finished(job_ids)


class ComputationLog(BaseObserver):
    """Fault tests only (GREENQ_CHAOS__LOG_COMPUTATIONS): push "<job id> <pid>" per computation, to count them."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    def before_batch(self, model: str, job_ids: Sequence[str]) -> None:
        while True:  # the count must be complete, also across a backend restart
            try:
                self._redis.rpush(COMPUTATIONS_KEY, *(f"{job_id} {os.getpid()}" for job_id in job_ids))
                return
            except (redis.RedisError, OSError):
                time.sleep(0.2)


class MetricsObserver(BaseObserver):
    """Batch sizes, out-of-memory errors and device faults, into the worker's metrics."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._metrics = metrics

    def after_batch_succeeded(self, model: str, job_ids: Sequence[str]) -> None:
        self._metrics.batch_size.labels(model).observe(len(job_ids))

    def after_batch_costed(self, cost: BatchCost) -> None:
        self._metrics.hold.labels(cost.job_type).observe(cost.hold_s)
        if cost.predicted_joules is not None and cost.joules is not None:
            self._metrics.energy_predicted.labels(cost.job_type).inc(cost.predicted_joules)
            self._metrics.energy_measured.labels(cost.job_type).inc(cost.joules)

    def on_oom(self, size_cap: int) -> None:
        self._metrics.out_of_memory.inc()

    def on_device_fault(self, exc: BaseException) -> None:
        self._metrics.device_faults.inc()


class RestartOnDeviceFault(BaseObserver):
    """Not ready at once, then Celery's warm shutdown (as the launcher would ask), whose task threads hand
    their jobs back; the worker then exits for the launcher to restart it."""

    def __init__(self, ready: threading.Event) -> None:
        self._ready = ready

    def on_device_fault(self, exc: BaseException) -> None:
        self._ready.clear()
        os.kill(os.getpid(), signal.SIGTERM)
