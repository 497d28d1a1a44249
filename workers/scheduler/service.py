"""The scheduler's loop: each tick, plan the waiting jobs against the forecast and release those due now.

Several instances may run: each plans on its own, and the Lua moves in shared/deferral.py make sure a
job is claimed by one of them and a slot's releases stay within the plan. Jobs are claimed a chunk at a
time (TAKE_CHUNK_JOBS, so no script holds Redis for a whole backlog) under a lease, and published in
batches of PUBLISH_BATCH_JOBS, each with its id as the task id and confirmed once its batch is out.
Before each batch the lease is renewed: a chunk is not taken back from a live scheduler however long it
takes, and jobs whose lease was lost all the same (a scheduler paused past it) are left to the one that
took them. An instance killed between publishing a batch and confirming it leaves that batch under a
lease that another instance takes back and publishes again (at least once, at most one batch twice).
Before publishing, a job a worker has already received or finished is only confirmed, and workers
compute a job id once (workers/edge/tasks.py), so that second publish cannot run a job twice.

>>> scheduler = Scheduler(settings, DeferredStore(redis), source, publish, Capacity(...), metrics)
>>> scheduler.tick()   # every GREENQ_SCHEDULER_TICK_S
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from greenq.shared import job_types
from greenq.shared.deferral import TAKE_CHUNK_JOBS, DeferredJob, DeferredStore, ReleaseHold
from greenq.shared.envelope import Envelope
from greenq.shared.settings import Settings
from greenq.workers.energy.carbon import IntensitySource
from greenq.workers.scheduler.capacity import Capacity
from greenq.workers.scheduler.demand import AROUND_S, DAY_S, expected_arrivals, median_window
from greenq.workers.scheduler.metrics import SchedulerMetrics
from greenq.workers.scheduler.planner import Plan, Slot, plan_ahead, slots_from_forecast

log = logging.getLogger(__name__)

UNBOUNDED_JOBS_PER_SLOT = 1 << 30  # no capacity set or measured
# One pipelined broker round trip a batch. The lease is renewed before each, so a batch must take far less
# than the shortest lease (1 s): 100 messages are a few milliseconds on Redis, and a lost lease costs at
# most one batch sent twice.
PUBLISH_BATCH_JOBS = 100


@dataclass(frozen=True)
class Release:
    job: DeferredJob
    reason: str  # planned | deadline | no_forecast


@dataclass
class TickReport:
    now: float
    plan: Plan | None = None  # None: no forecast, or nothing waiting
    forecast_ok: bool | None = None  # None: nothing waited, so no forecast was asked for
    released: list[Release] = field(default_factory=list)
    recovered: int = 0
    lease_lost: int = 0  # jobs claimed but left unpublished: their lease was lost to another scheduler


def with_capacity(slots: list[Slot], jobs_per_slot: float, slot_s: float, used_in_first: int) -> list[Slot]:
    """Whole jobs per slot that average `jobs_per_slot` exactly (0.5 a slot: 1 every other slot, by slot number)."""
    out = []
    for index, slot in enumerate(slots):
        number = round(slot.start_s / slot_s)
        jobs = math.floor((number + 1) * jobs_per_slot) - math.floor(number * jobs_per_slot)
        out.append(replace(slot, capacity_jobs=max(0, jobs - (used_in_first if index == 0 else 0))))
    return out


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: DeferredStore,
        source: IntensitySource,
        publish: Callable[[Sequence[Envelope]], set[str]],
        capacity: Capacity,
        metrics: SchedulerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`publish` puts released envelopes on their queues and returns the ids it skipped as already taken."""
        self._settings = settings
        self._store = store
        self._source = source
        self._publish = publish
        self._capacity = capacity
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._demand_cache: dict[float, dict[int, int]] = {}
        self._demand_read = -1.0

    def tick(self, now: float | None = None) -> TickReport:
        now = self._clock() if now is None else now
        started = self._monotonic()
        report = TickReport(now, recovered=self._store.recover(now))
        self._read_intensity(now)
        deadlines = self._store.release_deadlines()
        slot_s = self._settings.scheduler_slot_s
        slot_start_s = math.floor(now / slot_s) * slot_s
        used = self._store.released_in_slot(slot_start_s)
        reason = "planned"
        if deadlines:
            report.plan = self._plan(now, deadlines, used)
            report.forecast_ok = report.plan is not None
            if report.plan is None:
                reason = "no_forecast"
                allowance = used + len(deadlines)  # deadlines hold: with no forecast, nothing waits
            else:
                allowance = used + report.plan.release_now
                starts = [slot.start_s for slot in report.plan.slots]
                self._store.save_plan(now, starts, report.plan.counts)
            released = self._release_all(report, started, slot_start_s, allowance)
            report.released = [Release(j, "deadline" if j.release_by <= now else reason) for j in released]
        self._record(report)
        return report

    def _release_all(
        self, report: TickReport, started: float, slot_start_s: float, allowance: int
    ) -> list[DeferredJob]:
        """Claim and publish a chunk at a time until the allowance is used or nothing is left to release."""
        released: list[DeferredJob] = []
        while True:
            # A long release runs past the tick's `now`: leases count from the time they are taken.
            at = report.now + (self._monotonic() - started)
            lease = self._store.take_due(at, slot_start_s, allowance, self._settings.scheduler_release_lease_s)
            if lease.jobs:
                released += self._release(report, started, lease)
            if len(lease.jobs) < TAKE_CHUNK_JOBS:
                return released

    def _plan(self, now: float, deadlines: list[float], used: int) -> Plan | None:
        slot_s = self._settings.scheduler_slot_s
        jobs_per_hour = self._capacity.jobs_per_hour()
        if self._metrics is not None:
            self._metrics.capacity.set(jobs_per_hour or 0)
        forecast = getattr(self._source, "forecast", None)
        if forecast is None:
            return None
        ahead = jobs_per_hour is not None and self._settings.scheduler_plan_ahead  # room for later arrivals
        demand = self._demand(now) if ahead else {}
        window = median_window(demand) or 0  # the plan reaches that far past the last deadline, for later arrivals
        last_deadline = max(deadlines[-1], now)
        try:
            points = forecast(now, last_deadline + (window + 1) * slot_s)
        except Exception as exc:  # a failing forecast must not hold jobs: release them
            log.warning("no carbon-intensity forecast (%s): releasing every waiting job", exc)
            return None
        slots = slots_from_forecast(points, now, slot_s, UNBOUNDED_JOBS_PER_SLOT, used)
        if not slots:
            return None
        if jobs_per_hour is not None:
            slots = with_capacity(slots, jobs_per_hour * slot_s / 3600, slot_s, used)
        competing_slots = min(len(slots), math.floor((last_deadline - slots[0].start_s) / slot_s) + 1)
        expected = expected_arrivals(demand, now, slot_s, competing_slots) if ahead else []
        return plan_ahead(deadlines, slots, expected)  # with nothing expected: `plan`

    def _demand(self, now: float) -> dict[float, dict[int, int]]:
        """Jobs deferred per slot over the last day and the hour before it; read again once per slot."""
        slot_s = self._settings.scheduler_slot_s
        current_s = math.floor(now / slot_s) * slot_s
        if self._demand_read != current_s:
            self._demand_cache = self._store.arrivals(current_s, DAY_S + 2 * AROUND_S, slot_s)
            self._demand_read = current_s
        return self._demand_cache

    def _release(self, report: TickReport, started: float, lease: ReleaseHold) -> list[DeferredJob]:
        """Publish one claimed chunk in batches, renewing its lease before each; returns the jobs published."""
        if self._settings.chaos.release_delay_s:  # fault tests: a window to kill this scheduler mid-release
            time.sleep(self._settings.chaos.release_delay_s)
        lease_s = self._settings.scheduler_release_lease_s
        pending, published = list(lease.jobs), []
        while pending:
            elapsed_s = self._monotonic() - started
            held = self._store.extend_hold(
                lease.token, [job.job_id for job in pending], report.now + elapsed_s + lease_s
            )
            if len(held) < len(pending):
                lost = len(pending) - len(held)
                report.lease_lost += lost
                log.warning(
                    "lost the release lease on %d jobs after %.1f s of this tick (another scheduler took them back "
                    "after GREENQ_SCHEDULER_RELEASE_LEASE_S=%.0f s: this one was paused or slow); not publishing them",
                    lost,
                    elapsed_s,
                    lease_s,
                )
                pending = [job for job in pending if job.job_id in held]
            batch, pending = pending[:PUBLISH_BATCH_JOBS], pending[PUBLISH_BATCH_JOBS:]
            if not batch:
                break
            skipped = self._publish([job.released(report.now) for job in batch])
            self._store.confirm(lease.token, [job.job_id for job in batch])
            published += batch
            if skipped:
                log.info("%d released jobs were already with a worker; not published again", len(skipped))
        return published

    def _read_intensity(self, now: float) -> None:
        try:
            self._store.publish_carbon_now(self._source.grams_per_kwh(now), now, self._source.name)
        except Exception as exc:
            log.warning("could not read the grid intensity: %s", exc)

    def _record(self, report: TickReport) -> None:
        if self._metrics is None:
            return
        m = self._metrics
        if report.forecast_ok is not None:
            m.forecast_available.set(1 if report.forecast_ok else 0)
        if report.plan is not None and report.plan.jobs:
            m.planned_intensity.set(report.plan.mean_g_per_kwh)
        if report.lease_lost:
            m.lease_lost.inc(report.lease_lost)
        for release in report.released:
            job_type = release.job.envelope.job_type
            m.released.labels(job_type, release.reason).inc()
            m.lateness.labels(job_type).observe(max(0.0, report.now - release.job.release_by))
            run_by = release.job.envelope.run_by
            if run_by is not None and report.now > run_by:
                m.late.labels(job_type).inc()
        waiting = self._store.waiting_by_type()
        for job_type in job_types.names():
            m.deferred.labels(job_type).set(waiting.get(job_type, 0))
