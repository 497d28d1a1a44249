"""What both serving loops stand on: the waiting queue, the policies and their cap, energy metering, the
observers, the breaker and the lease check at batch entry.

A loop (`greenq.workers.serving.static`, `greenq.workers.serving.continuous`) decides with the pure functions of
`greenq.workers.serving.batching` and applies their effects through this core; neither loop reaches into
the other. The `Batcher` (`greenq.workers.serving.batcher`) builds the core and the loop the mode asks for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from greenq.shared.job_types import JobType
from greenq.shared.policies import BatchPolicy
from greenq.workers.model.types import ModelRuntime
from greenq.workers.serving.batching import capped
from greenq.workers.serving.closing import ClosingPolicy
from greenq.workers.serving.metering import Metering
from greenq.workers.serving.observers import Observers
from greenq.workers.serving.outcomes import LeaseCheck, LeaseLost, Requeue
from greenq.workers.serving.queue import Waiting, WaitingQueue
from greenq.workers.serving.size_cap import SizeCap

log = logging.getLogger(__name__)


class ServingCore:
    def __init__(
        self,
        runtimes: Mapping[str, ModelRuntime],
        policies: Mapping[JobType, BatchPolicy],
        clock: Callable[[], float],
        metering: Metering,
        observers: Observers,
        closing: ClosingPolicy,
        size_cap: SizeCap,
        lease_check: LeaseCheck | None = None,
    ) -> None:
        self.runtimes = runtimes
        self.clock = clock
        self.metering = metering
        self.observers = observers
        self.closing = closing
        self.size_cap = size_cap
        self.queue = WaitingQueue(clock, closing.observe_arrival)
        self._policies = dict(policies)
        self._policies_lock = threading.Lock()
        self._lease_check = lease_check
        self.device_fault: BaseException | None = None  # set once: then nothing more runs here
        self.current_batch_size = 0  # rows in the model call in progress (the loops keep it)

    def policies(self) -> dict[JobType, BatchPolicy]:
        with self._policies_lock:
            return dict(self._policies)

    def set_policy(self, job_type: JobType, policy: BatchPolicy) -> None:
        """Change a job type's batch policy; waiting jobs see it at once."""
        with self._policies_lock:
            self._policies[job_type] = policy
        self.queue.notify()

    def policies_now(self) -> dict[JobType, BatchPolicy]:
        """The policies as admission applies them now: each size capped while an out-of-memory cap holds."""
        return capped(self.policies(), self.size_cap.current())

    def lower_cap(self, failed_size: int, cap: int | None = None) -> None:
        """Out of memory at `failed_size`: lower the size cap for a while and tell the observers."""
        self.observers.on_oom(self.size_cap.lower(failed_size, cap))

    def still_leased(self, items: list[Waiting]) -> list[Waiting]:
        """The waiting jobs entering a batch whose lease this worker still holds; the others leave with
        `LeaseLost` (checked here, not only when they were buffered: a worker paused past its lease may
        have buffered jobs that another worker has computed since)."""
        if self._lease_check is None or not items:
            return items
        lost = self._lease_check([item.job_id for item in items])
        if not lost:
            return items
        log.warning("%d jobs leave a forming batch: their lease was lost while they waited", len(lost))
        for item in items:
            if item.job_id in lost:
                item.future.set_exception(LeaseLost("the job's lease was lost before its batch started"))
        return [item for item in items if item.job_id not in lost]

    def trip(self, exc: BaseException, items: Sequence[Waiting], cause: str = "device fault") -> None:
        """The device (or the loop itself) failed: take no more jobs, hand back these jobs and every waiting
        one, tell the worker (it restarts)."""
        self.device_fault = exc
        self.observers.on_device_fault(exc)  # first: whoever waits on a handed-back job sees the trip
        waiting = self.queue.drain()
        hand_back(items)
        log.error(
            "%s holding %d jobs (%s): %d jobs handed back to the queue; this worker must restart",
            cause,
            len(items),
            exc,
            len(items) + waiting,
        )


class Loop(Protocol):
    """What the batcher runs on its thread: the static or the continuous loop, siblings over one core."""

    def serve(self) -> None:
        """Run jobs from the core's queue until it is stopping and nothing is left."""

    def held(self) -> list[Waiting]:
        """The jobs this loop has taken from the queue and not yet resolved (handed back if it fails)."""


def hand_back(items: Sequence[Waiting]) -> None:
    """These jobs go back to the broker's queue (the device failed under them)."""
    for item in items:
        if not item.future.done():
            item.future.set_exception(Requeue("the device failed; the job goes back to the queue"))
