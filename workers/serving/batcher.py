"""The micro-batcher: one thread that turns waiting jobs into model calls, by the loop the mode asks for.

Celery task threads `submit` a job and block on the returned future. The batch thread loads the
runtimes, chooses its loop (`greenq.workers.serving.probe`: `static`, `continuous`, or `auto`) and serves:
the static loop (`greenq.workers.serving.static`) runs one `generate` per batch, the continuous loop
(`greenq.workers.serving.continuous`) one decoding step per iteration. Both stand on one core
(`greenq.workers.serving.core`): the waiting queue, admission by `greenq.workers.serving.batching`, the size cap,
energy metering, failure triage, the breaker and the observers' dispatcher.

In continuous mode nothing is held open, so the adaptive policy does not apply: a job type whose
policy is adaptive runs by the fixed rule there (logged once at start, and shown by `policies()` and
`adaptive_state()`), and `set_policy` refuses `mode="adaptive"` (`PolicyRefused`).

>>> batcher = Batcher({"m": runtime}, settings.batch, observers=[MetricsObserver(metrics)], mode="static")
>>> batcher.start()
>>> outcome = batcher.submit("job-1", "reply", "m", request, priority=8).result()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from greenq.shared.errors import GreenqError
from greenq.shared.job_types import JobType
from greenq.shared.policies import BatchPolicy
from greenq.workers.energy.accountant import EnergyAccountant
from greenq.workers.model.types import GenerationRequest, ModelRuntime
from greenq.workers.serving.closing import Backlog, ClosingPolicy
from greenq.workers.serving.continuous import ContinuousLoop
from greenq.workers.serving.core import Loop, ServingCore
from greenq.workers.serving.metering import Metering
from greenq.workers.serving.observers import BatchObserver, Observers
from greenq.workers.serving.outcomes import BatchOutcome, JobExpiredInBatcher, LeaseCheck, LeaseLost, Requeue
from greenq.workers.serving.probe import LoopMode, RuntimeMode, choose_mode
from greenq.workers.serving.size_cap import SizeCap
from greenq.workers.serving.static import StaticLoop

log = logging.getLogger(__name__)
__all__ = ["BatchOutcome", "Batcher", "JobExpiredInBatcher", "LeaseLost", "PolicyRefused", "Requeue"]


class PolicyRefused(GreenqError):
    """A batch policy this worker cannot apply (adaptive in continuous mode)."""


class Batcher:
    def __init__(
        self,
        runtimes: Mapping[str, ModelRuntime],
        policies: Mapping[JobType, BatchPolicy],
        clock: Callable[[], float] = time.time,
        energy: EnergyAccountant | None = None,
        oom_backoff_s: float = 60.0,
        observers: Sequence[BatchObserver] = (),
        objectives_s: Mapping[JobType, float] | None = None,
        backlog: Backlog | None = None,
        lease_check: LeaseCheck | None = None,
        mode: RuntimeMode = "static",
        on_observer_error: Callable[[str, str], None] | None = None,
    ) -> None:
        """`objectives_s`: each type's p95 objective (the adaptive policy's budget); `backlog`: jobs
        of each type waiting in the broker that this worker could take now (cheap: called per decision);
        `lease_check`: asked as waiting jobs enter a batch (`JobLeases.lost`): those lost leave with `LeaseLost`;
        `on_observer_error(observer, moment)`: an observer raised (it is logged; the batch goes on)."""
        self._core = ServingCore(
            runtimes,
            policies,
            clock,
            Metering(energy),
            Observers(observers, on_observer_error),
            ClosingPolicy(objectives_s, backlog),
            SizeCap(clock, oom_backoff_s),
            lease_check,
        )
        self.requested_mode: RuntimeMode = mode
        # What runs, once ready. While an auto worker loads, static (the probe decides; a continuous
        # choice then turns adaptive policies fixed, so one set meanwhile is not lost, only converted).
        self.mode: LoopMode = "continuous" if mode == "continuous" else "static"
        self._thread = threading.Thread(target=self._run, name="greenq-batcher", daemon=True)
        self._load: Callable[[], Mapping[str, ModelRuntime]] | None = None
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None

    def start(self, load: Callable[[], Mapping[str, ModelRuntime]] | None = None) -> None:
        """Start the batch thread; with `load`, the thread first builds the runtimes itself.

        Loading, warm-up and generation then all happen on this one thread: torch's OpenMP
        pool is per thread, and a second pool left in the main thread by loading made every
        batch about 15% slower on a 2-core machine (measured; see ops/bench/RESULTS.md).
        """
        self._load = load
        self._thread.start()

    def wait_ready(self, timeout_s: float | None = None) -> Mapping[str, ModelRuntime]:
        """The runtimes, once loaded and the loop chosen; re-raises the loading error."""
        self._loaded.wait(timeout_s)
        if self._load_error is not None:
            raise self._load_error
        return self._core.runtimes

    def stop(self, timeout_s: float | None = None) -> None:
        """Finish the batch in progress and every waiting job, then stop."""
        self._core.queue.stop()
        self._thread.join(timeout_s)

    def drain(self) -> int:
        """Take no new jobs and hand back every job not yet in a batch (`Requeue`); returns how many.

        The batch in progress, if any, finishes normally."""
        return self._core.queue.drain()

    def wake(self) -> None:
        """Look at the waiting jobs again now (a test's clock moved)."""
        self._core.queue.notify()

    @property
    def device_fault(self) -> BaseException | None:
        """The device fault that tripped the breaker, if one did; this batcher then runs nothing more."""
        return self._core.device_fault

    @property
    def current_batch_size(self) -> int:
        return self._core.current_batch_size

    def policies(self) -> dict[JobType, BatchPolicy]:
        return self._core.policies()

    def set_policy(self, job_type: JobType, policy: BatchPolicy) -> None:
        """Change a job type's batch policy at runtime; waiting jobs see it at once. Raises `PolicyRefused`."""
        if policy.mode == "adaptive" and self.mode == "continuous":
            raise PolicyRefused(
                "mode: adaptive does not apply in continuous batching (a job joins the running batch at the "
                "next step; nothing is held open): use mode fixed, or run the worker with GREENQ_RUNTIME_MODE=static"
            )
        self._core.set_policy(job_type, policy)

    def size_cap(self) -> int | None:
        """The lowered max batch size in force after an out-of-memory error, if any."""
        return self._core.size_cap.current()

    def expect(self, job_id: str, job_type: JobType) -> None:
        """The worker received the job (`WaitingQueue.expect`); called from Celery's `task_received`."""
        self._core.queue.expect(job_id, job_type)

    def unexpect(self, job_id: str) -> None:
        self._core.queue.unexpect(job_id)

    def submit(
        self,
        job_id: str,
        job_type: JobType,
        model: str,
        request: GenerationRequest,
        priority: int,
        deadline_at: float | None = None,
        solo: bool = False,
        submitted_at: float | None = None,
    ) -> Future[BatchOutcome]:
        return self._core.queue.submit(job_id, job_type, model, request, priority, deadline_at, solo, submitted_at)

    def pending_count(self) -> int:
        return len(self._core.queue)

    def arrivals_per_s(self, job_type: JobType) -> float:
        return self._core.closing.arrivals_per_s(job_type, self._core.clock())

    def adaptive_state(self) -> dict[str, Any]:
        """Per job type: what the adaptive policy observed, learned and last chose (`greenq pool status`)."""
        return self._core.closing.state(self._core.policies(), self._core.clock())

    def _run(self) -> None:
        core = self._core
        try:
            if self._load is not None:
                core.runtimes = self._load()
            self.mode = choose_mode(self.requested_mode, core.runtimes)
            if self.mode == "continuous":
                self._fix_adaptive()
        except BaseException as exc:
            self._load_error = exc
            return
        finally:
            self._loaded.set()
        loop: Loop = ContinuousLoop(core) if self.mode == "continuous" else StaticLoop(core)
        try:
            loop.serve()
        except BaseException as exc:  # a bug in a loop: never leave a task thread waiting on a dead batcher
            log.exception("the %s loop failed", self.mode)
            core.trip(exc, loop.held(), cause=f"the {self.mode} loop failed")
            raise

    def _fix_adaptive(self) -> None:
        """Continuous mode: each adaptive policy runs by the fixed rule (see the module's docstring)."""
        adaptive = sorted(t for t, p in self._core.policies().items() if p.mode == "adaptive")
        for job_type in adaptive:
            self._core.set_policy(job_type, self._core.policies()[job_type].model_copy(update={"mode": "fixed"}))
        if adaptive:
            log.info(
                "continuous batching: %s run by the fixed rule (the adaptive policy holds batches open; "
                "continuous batching holds none)",
                ", ".join(adaptive),
            )
