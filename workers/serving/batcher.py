"""The micro-batcher: one thread that turns waiting jobs into `generate` calls.

Celery task threads `submit` a job and block on the returned future; the batcher thread
forms batches with `workers.serving.batching` (closing them by the fixed rule or the adaptive
policy of `workers.serving.adaptive`, which learns each batch size's cost here) and runs them
on the job's model. A batch that
raises is split in halves and retried until the failing job stands alone, so one bad
job never fails the jobs that would have succeeded without it. A batch that raises a
device fault (`workers.serving.breaker`) trips the breaker instead: every job held goes back to
the queue and the observers' `on_device_fault` tells the worker to restart. Observers
(`workers.serving.observers`) see each batch's named moments.

>>> batcher = Batcher({"m": runtime}, settings.batch, observers=[MetricsObserver(metrics)])
>>> batcher.start()
>>> outcome = batcher.submit("job-1", "reply", "m", request, priority=8).result()
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence, Set
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from shared.errors import GreenqError
from shared.job_types import JobType
from shared.policies import BatchPolicy
from workers.energy.accountant import EnergyAccountant, EnergyShare
from workers.runtime import Generation, GenerationRequest, ModelRuntime, TextHook
from workers.serving.adaptive import Forming, plan
from workers.serving.arrival_rate import ArrivalRate
from workers.serving.batching import (
    Closing,
    ClosingRule,
    PendingJob,
    fixed_closing,
    next_wakeup,
    select_batch,
    split_expired,
)
from workers.serving.breaker import is_device_fault
from workers.serving.cost_model import BatchCostModel
from workers.serving.observers import BatchCost, BatchObserver

log = logging.getLogger(__name__)


EXPECT_TTL_S = 10.0  # an announced job that has not arrived by then is no longer waited for


class JobExpiredInBatcher(GreenqError):
    """The job's deadline passed before a batch took it."""


class Requeue(GreenqError):
    """The worker is shutting down before this job's batch started, or its device failed: give the job back."""


class LeaseLost(GreenqError):
    """The job's lease was lost before its batch started (this worker was paused, or cut off from Redis, for
    longer than the lease): another worker may be computing it, so it is not computed here."""


LeaseCheck = Callable[[Sequence[str]], Set[str]]  # of these job ids, those whose lease this worker lost


def is_out_of_memory(exc: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA or otherwise) or Python's MemoryError, without importing torch."""
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


@dataclass(frozen=True)
class BatchOutcome:
    generation: Generation
    batch_size: int
    started_at: float
    finished_at: float
    energy: EnergyShare | None = None
    first_text_at: float | None = None  # when its first text was decoded (None: it generated none)


@dataclass
class _Item:
    job_id: str
    job: PendingJob
    model: str
    request: GenerationRequest
    future: Future[BatchOutcome]


@dataclass(frozen=True)
class _Closed:
    """A batch as it closed: its jobs, how long it was held, and the energy predicted for it."""

    items: list[_Item]
    hold_s: float
    predicted_joules: float | None


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
        backlog: Callable[[], Mapping[JobType, int]] | None = None,
        lease_check: LeaseCheck | None = None,
    ) -> None:
        """`objectives_s`: each type's p95 objective (the adaptive policy's budget); `backlog`: jobs
        of each type waiting in the broker that this worker could take now (cheap: called per decision);
        `lease_check`: asked as waiting jobs enter a batch (`JobLeases.lost`): those lost leave with `LeaseLost`."""
        self._lease_check = lease_check
        self._observers = tuple(observers)
        self._objectives_s = dict(objectives_s or {})
        self._backlog = backlog or dict
        self._expecting: dict[str, tuple[JobType, float]] = {}  # job id → its type, since when
        self._costs: defaultdict[JobType, BatchCostModel] = defaultdict(BatchCostModel)
        self._arrivals: defaultdict[JobType, ArrivalRate] = defaultdict(ArrivalRate)
        self._last_plan: dict[JobType, Closing] = {}
        self._device_fault: BaseException | None = None
        self._runtimes = runtimes
        self._energy = energy
        self._oom_backoff_s = oom_backoff_s
        self._oom_cap: int | None = None  # a lowered max batch size after an out-of-memory error
        self._oom_until = 0.0
        self._policies = dict(policies)
        self._clock = clock
        self._pending: dict[int, _Item] = {}
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="greenq-batcher", daemon=True)
        self._load: Callable[[], Mapping[str, ModelRuntime]] | None = None
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        self.current_batch_size = 0

    def start(self, load: Callable[[], Mapping[str, ModelRuntime]] | None = None) -> None:
        """Start the batch thread; with `load`, the thread first builds the runtimes itself.

        Loading, warm-up and generation then all happen on this one thread: torch's OpenMP
        pool is per thread, and a second pool left in the main thread by loading made every
        batch about 15% slower on a 2-core machine (measured; see ops/bench/RESULTS.md).
        """
        self._load = load
        self._thread.start()

    def wait_ready(self, timeout_s: float | None = None) -> Mapping[str, ModelRuntime]:
        """The runtimes, once loaded; re-raises the loading error."""
        self._loaded.wait(timeout_s)
        if self._load_error is not None:
            raise self._load_error
        return self._runtimes

    def stop(self, timeout_s: float | None = None) -> None:
        """Finish the batch in progress and every waiting job, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def drain(self) -> int:
        """Take no new jobs and hand back every job not yet in a batch (`Requeue`); returns how many.

        The batch in progress, if any, finishes normally.
        """
        with self._cond:
            self._stopping = True
            waiting = list(self._pending.values())
            self._pending.clear()
            self._cond.notify_all()
        for item in waiting:
            item.future.set_exception(Requeue("the worker is stopping; the job goes back to the queue"))
        return len(waiting)

    @property
    def device_fault(self) -> BaseException | None:
        """The device fault that tripped the breaker, if one did; this batcher then runs nothing more."""
        return self._device_fault

    def _trip(self, exc: BaseException, items: list[_Item]) -> None:
        """The device is sick: take no more jobs, hand back this batch and every waiting job, tell the worker."""
        self._device_fault = exc
        for observer in self._observers:  # first: whoever waits on a handed-back job sees the trip
            observer.on_device_fault(exc)
        waiting = self.drain()
        self._hand_back(items)
        log.error(
            "device fault in a batch of %d (%s): %d jobs handed back to the queue; this worker must restart",
            len(items),
            exc,
            len(items) + waiting,
        )

    @staticmethod
    def _hand_back(items: list[_Item]) -> None:
        for item in items:
            item.future.set_exception(Requeue("the device failed; the job goes back to the queue"))

    def policies(self) -> dict[JobType, BatchPolicy]:
        with self._cond:
            return dict(self._policies)

    def set_policy(self, job_type: JobType, policy: BatchPolicy) -> None:
        """Change a job type's batch policy at runtime; waiting jobs see it at once."""
        with self._cond:
            self._policies[job_type] = policy
            self._cond.notify_all()

    def size_cap(self) -> int | None:
        """The lowered max batch size in force after an out-of-memory error, if any."""
        with self._cond:
            if self._oom_cap is not None and self._clock() >= self._oom_until:
                self._oom_cap = None
            return self._oom_cap

    def _policies_now(self) -> dict[JobType, BatchPolicy]:
        cap = self.size_cap()
        if cap is None:
            return self.policies()
        return {
            t: p.model_copy(update={"max_batch_size": min(p.max_batch_size, cap)}) for t, p in self.policies().items()
        }

    def _lower_cap(self, failed_size: int, cap: int | None = None) -> None:
        """After an out-of-memory error at `failed_size`: at most `cap` (default: half of it) for a while."""
        cap = max(1, failed_size // 2 if cap is None else cap)
        with self._cond:
            self._oom_cap = min(cap, self._oom_cap or cap)
            self._oom_until = self._clock() + self._oom_backoff_s
        log.warning(
            "out of memory at batch size %d: max batch size lowered to %d for %.0f s",
            failed_size,
            self._oom_cap,
            self._oom_backoff_s,
        )
        for observer in self._observers:
            observer.on_oom(self._oom_cap)

    def expect(self, job_id: str, job_type: JobType) -> None:
        """This worker has received the job (its message is reserved here) and is bringing it to the batcher:
        a forming batch that could take it waits for it. Ends at `submit`, at `unexpect`, or after
        `EXPECT_TTL_S`. Called from Celery's `task_received`, before a task thread even starts."""
        with self._cond:
            self._expecting[job_id] = (job_type, self._clock())

    def unexpect(self, job_id: str) -> None:
        """The job will not reach this batcher after all (it was finished elsewhere, or failed early)."""
        with self._cond:
            if self._expecting.pop(job_id, None) is not None:
                self._cond.notify_all()

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
        future: Future[BatchOutcome] = Future()
        with self._cond:
            self._expecting.pop(job_id, None)
            if self._stopping:
                raise Requeue("the worker is stopping; the job goes back to the queue")
            now = self._clock()
            self._arrivals[job_type].observe(now)
            job = PendingJob(
                seq=next(self._seq),
                job_type=job_type,
                batch_key=(model, request.settings.batch_key()),
                priority=priority,
                arrived_at=now,
                prompt_tokens=len(request.prompt_ids),
                max_new_tokens=request.max_new_tokens,
                deadline_at=deadline_at,
                solo=solo,
                submitted_at=submitted_at,
            )
            self._pending[job.seq] = _Item(job_id, job, model, request, future)
            self._cond.notify_all()
        return future

    def pending_count(self) -> int:
        with self._cond:
            return len(self._pending)

    def arrivals_per_s(self, job_type: JobType) -> float:
        with self._cond:
            return self._arrivals[job_type].per_s(self._clock())

    def adaptive_state(self) -> dict[str, Any]:
        """Per job type: what the adaptive policy observed, learned and last chose (`greenq pool status`)."""
        with self._cond:
            now = self._clock()
            return {
                job_type: {
                    "mode": policy.mode,
                    "objective_s": self._objectives_s.get(job_type),
                    "arrivals_per_s": round(self._arrivals[job_type].per_s(now), 3),
                    "last_target_size": getattr(self._last_plan.get(job_type), "target_size", None),
                    "learned_cost_by_size": self._costs[job_type].snapshot(),
                }
                for job_type, policy in self._policies.items()
            }

    def _closing_rule(self, policies: Mapping[JobType, BatchPolicy], now: float) -> ClosingRule:
        """How each forming batch closes now: the fixed rule, or the adaptive plan once it has measurements."""
        backlog = self._backlog()
        expecting = Counter(t for t, since in self._expecting.values() if now - since < EXPECT_TTL_S)

        def rule(members: Sequence[PendingJob]) -> Closing:
            types = {job.job_type for job in members}
            incoming = sum(expecting[t] + backlog.get(t, 0) for t in types)
            if all(policies[t].mode == "adaptive" and t in self._objectives_s for t in types):
                closing = plan(self._forming(members, types, policies, incoming, now), self._costs[members[0].job_type])
                if closing is not None:
                    self._last_plan[members[0].job_type] = closing
                    return closing
            return fixed_closing(members, policies, incoming, now)

        return rule

    def _forming(
        self,
        members: Sequence[PendingJob],
        types: set[JobType],
        policies: Mapping[JobType, BatchPolicy],
        incoming: int,
        now: float,
    ) -> Forming:
        cap = min(policies[t].max_batch_size for t in types)
        return Forming(
            size=min(len(members), cap),
            cap=cap,
            first_arrived_at=min(job.arrived_at for job in members),
            oldest_submitted_at=min(
                job.arrived_at if job.submitted_at is None else job.submitted_at for job in members
            ),
            objective_s=min(self._objectives_s[t] for t in types),
            max_hold_s=min(policies[t].max_hold_s for t in types),
            arrivals_per_s=sum(self._arrivals[t].per_s(now) for t in types),
            incoming=incoming,
            now=now,
            deadline_at=min((job.deadline_at for job in members if job.deadline_at is not None), default=None),
        )

    def _next_batch(self) -> _Closed | None:
        """Block until a batch is ready; None once stopping with nothing left."""
        while True:
            policies = self._policies_now()
            with self._cond:
                now = self._clock()
                jobs = [item.job for item in self._pending.values()]
                alive, expired = split_expired(jobs, now)
                for job in expired:
                    self._pending.pop(job.seq).future.set_exception(
                        JobExpiredInBatcher("the deadline passed while the job waited for a batch")
                    )
                rule = self._closing_rule(policies, now)
                # Stopping: flush what is left at once rather than waiting out the max wait.
                selection = select_batch(alive, policies, math.inf if self._stopping else now, rule)
                if selection is not None:
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "batch of %d closes (full: %s); %d more waiting; on their way: %d received, backlog %s",
                            len(selection.jobs),
                            selection.full,
                            len(alive) - len(selection.jobs),
                            len(self._expecting),
                            dict(self._backlog()),
                        )
                    return self._closed([self._pending.pop(job.seq) for job in selection.jobs], policies, now)
                if self._stopping:
                    return None
                wake = next_wakeup(alive, policies, rule)
                if self._oom_cap is not None:
                    wake = min(wake or self._oom_until, self._oom_until)
                self._cond.wait(timeout=None if wake is None else max(0.0, wake - now))

    def _closed(self, items: list[_Item], policies: Mapping[JobType, BatchPolicy], now: float) -> _Closed:
        types = {item.job.job_type for item in items}
        predicted = None
        if all(policies[t].mode == "adaptive" and t in self._objectives_s for t in types):
            cost = self._costs[items[0].job.job_type].predict(len(items))
            predicted = None if cost is None else cost.joules
        return _Closed(items, now - min(item.job.arrived_at for item in items), predicted)

    def _loop(self) -> None:
        try:
            if self._load is not None:
                self._runtimes = self._load()
            self._prepare()
        except BaseException as exc:
            self._load_error = exc
            return
        finally:
            self._loaded.set()
        self._serve()

    def _prepare(self) -> None:
        """On the batch thread, once the runtimes are loaded and before `wait_ready` returns (see subclasses)."""

    def _serve(self) -> None:
        """Run batches until stopped (static batching: each batch runs to its end before the next starts)."""
        while (closed := self._next_batch()) is not None:
            items = self._still_leased(closed.items)
            if not items:
                continue
            closed = replace(closed, items=items)
            try:
                self._run_isolated(closed.items, closed)
            except BaseException as exc:  # never leave a task thread waiting on a dead batcher
                for item in closed.items:
                    if not item.future.done():
                        item.future.set_exception(exc)
                log.exception("batcher error")

    def _still_leased(self, items: list[_Item]) -> list[_Item]:
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

    def _run_isolated(self, items: list[_Item], closed: _Closed | None = None) -> None:
        """Run a batch; on an exception, bisect so only jobs that fail on their own fail.

        `closed` is the batch as it closed (its hold and prediction); halves after a failure have none."""
        if self._device_fault is not None:  # tripped while running the other half of this batch
            self._hand_back(items)
            return
        started = self._clock()
        self.current_batch_size = len(items)
        meter_start = _metering(self._energy.batch_started) if self._energy else None
        model = items[0].model
        job_ids = [item.job_id for item in items]
        try:
            for observer in self._observers:
                observer.before_batch(model, job_ids)
            runtime = self._runtimes[model]
            device_failed = False
            first_text_at: dict[str, float] = {}
            try:
                generations = runtime.generate(
                    [item.request for item in items], on_text=self._text_hook(model, job_ids, first_text_at)
                )
            except Exception as exc:
                device_failed = is_device_fault(exc)
                raise
            finally:
                # A device fault takes the worker down with this batch, as a crash would: its attempts stay
                # counted, so a job that breaks devices runs alone next time and is given up on in the end.
                if not device_failed:
                    for observer in self._observers:
                        observer.after_batch(model, job_ids)
            if len(generations) != len(items):
                raise RuntimeError(f"runtime returned {len(generations)} outputs for {len(items)} inputs")
        except Exception as exc:
            if self._energy is not None and meter_start is not None:
                energy = self._energy
                _metering(lambda: energy.batch_finished(meter_start, None))  # spent, but on no job's receipt
            if is_device_fault(exc):
                self._trip(exc, items)
                return
            if len(items) == 1:
                log.warning("job failed on its own: %s", exc)
                items[0].future.set_exception(exc)
                return
            if is_out_of_memory(exc):
                self._lower_cap(len(items))
            log.warning("batch of %d failed (%s); retrying in halves", len(items), exc)
            half = len(items) // 2
            self._run_isolated(items[:half])
            self._run_isolated(items[half:])
            return
        finally:
            self.current_batch_size = 0
        finished = self._clock()
        shares: list[EnergyShare | None] = [None] * len(items)
        if self._energy is not None and meter_start is not None:
            pairs = zip(items, generations, strict=True)
            tokens = [len(item.request.prompt_ids) + g.generated_tokens for item, g in pairs]
            energy = self._energy
            shares = list(_metering(lambda: energy.batch_finished(meter_start, tokens)) or shares)
        self._learn(items, closed, finished - started, shares)
        for observer in self._observers:
            observer.after_batch_succeeded(model, job_ids)
        for item, generation, share in zip(items, generations, shares, strict=True):
            first = first_text_at.get(item.job_id)
            item.future.set_result(BatchOutcome(generation, len(items), started, finished, share, first))

    def _text_hook(self, model: str, job_ids: list[str], first_text_at: dict[str, float]) -> TextHook:
        """The runtime's per-step hook: each row's new text, by job id, to the observers; notes first text times."""

        def on_text(texts: list[str]) -> None:
            now = self._clock()
            new = {job_id: text for job_id, text in zip(job_ids, texts, strict=True) if text}
            for job_id in new:
                first_text_at.setdefault(job_id, now)
            for observer in self._observers:
                observer.on_text(model, new)

        return on_text

    def _learn(
        self, items: list[_Item], closed: _Closed | None, seconds: float, shares: Sequence[EnergyShare | None]
    ) -> None:
        """Teach the batch's cost to the model of its most urgent job's type, and tell the observers."""
        joules = None if any(s is None for s in shares) else sum(s.energy_j for s in shares if s is not None)
        job_type = items[0].job.job_type
        # Without an energy meter, time stands in for energy (a device at steady power).
        learned = joules if joules is not None else (None if self._energy is not None else seconds)
        if learned is not None:
            with self._cond:
                self._costs[job_type].observe(len(items), seconds, learned)
        cost = BatchCost(
            job_type=job_type,
            size=len(items),
            hold_s=closed.hold_s if closed else 0.0,
            seconds=seconds,
            joules=joules,
            predicted_joules=closed.predicted_joules if closed else None,
        )
        for observer in self._observers:
            observer.after_batch_costed(cost)


T = TypeVar("T")


def _metering(call: Callable[[], T]) -> T | None:
    """Energy accounting is not the job's work: a meter that fails costs the receipt, never the job."""
    try:
        return call()
    except Exception:
        log.exception("energy meter failed; this batch gets no energy receipt")
        return None
