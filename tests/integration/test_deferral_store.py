"""Deferred jobs on a real Redis: the scheduler's tick plans, claims and releases them once, within capacity.

The scheduler runs in this process on a test clock (no worker needed): what is checked is what lands
on the Celery queues and what stays in the deferred store.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from greenq.shared import job_types
from greenq.shared.deferral import DeferredStore
from greenq.shared.envelope import Envelope
from greenq.shared.queues import queue_name, redis_priority_lists
from greenq.workers.scheduler.capacity import Capacity
from greenq.workers.scheduler.service import Scheduler
from tests.integration.harness import Stack, stack

DESCRIPTION = dict(job_types.get("description").samples[0])
SLOT_S = 60.0


@dataclass(frozen=True)
class Point:
    start_s: float
    end_s: float
    g_per_kwh: float


class TableForecast:
    """A forecast from a list of per-slot values starting at `origin_s` (the test's clean and dirty hours)."""

    name = "table"

    def __init__(self, origin_s: float, values: Sequence[float], fail: bool = False) -> None:
        self.points = [Point(origin_s + i * SLOT_S, origin_s + (i + 1) * SLOT_S, v) for i, v in enumerate(values)]
        self.fail = fail

    def grams_per_kwh(self, at: float) -> float:
        return next((p.g_per_kwh for p in self.points if p.start_s <= at < p.end_s), self.points[-1].g_per_kwh)

    def forecast(self, start_s: float, end_s: float) -> list[Point]:
        if self.fail:
            raise RuntimeError("forecast service down")
        return [p for p in self.points if p.end_s > start_s and p.start_s < end_s]


@pytest.fixture
def deferral(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    env = {"GREENQ_SCHEDULER_SLOT_S": str(SLOT_S), "GREENQ_LATENCY_OBJECTIVE_S__DESCRIPTION": "60"}
    with stack(redis_port, tiny_model_dir, env) as s:
        yield s


def queued_envelopes(s: Stack, job_type: str = "description") -> list[Envelope]:
    """The envelope of every message on the type's queue (all priority lists), in no particular order."""
    envelopes = []
    for name in redis_priority_lists(queue_name(job_type)):
        for raw in s.redis.lrange(name, 0, -1):
            body = base64.b64decode(json.loads(raw)["body"])
            envelopes.append(Envelope.decode(json.loads(body)[0][0]))
    return envelopes


def queued_ids(s: Stack, job_type: str = "description") -> list[str]:
    return [envelope.job_id for envelope in queued_envelopes(s, job_type)]


def make_scheduler(s: Stack, source: TableForecast, jobs_per_hour: float) -> Scheduler:
    from greenq.workers.scheduler.run import celery_publisher

    settings = s.settings
    capacity = Capacity(jobs_per_hour, 1.0, {"description", "strategy"})
    publish = celery_publisher(s.client.app, settings, s.redis)
    return Scheduler(settings, DeferredStore(s.redis), source, publish, capacity)


def submit_deferred(s: Stack, n: int, run_by_s: float) -> list[str]:
    from greenq.producers.client import JobSpec

    return s.client.submit_many([JobSpec("description", DESCRIPTION, run_by=run_by_s) for _ in range(n)])


def test_a_deferred_job_waits_in_redis_then_runs_in_the_cleanest_slot(deferral: Stack) -> None:
    s = deferral
    now = time.time()
    origin = now - now % SLOT_S
    source = TableForecast(origin, [400, 380, 60, 390, 420, 30])  # slot 5 is cleaner, but after the deadline
    store = DeferredStore(s.redis)
    store.publish_carbon_now(400.0, now, "table")
    (job_id,) = submit_deferred(s, 1, run_by_s=4 * SLOT_S + 30)

    assert queued_ids(s) == []  # not on a Celery queue: in the deferred store
    status = store.status(job_id)
    assert status is not None and status.planned_start_s is None  # not planned yet
    scheduler = make_scheduler(s, source, jobs_per_hour=600)
    report = scheduler.tick(now)
    assert report.released == [] and report.plan is not None
    status = store.status(job_id)
    assert status is not None and status.planned_start_s == origin + 2 * SLOT_S

    assert scheduler.tick(origin + 1 * SLOT_S + 5).released == []
    released = scheduler.tick(origin + 2 * SLOT_S + 1).released
    assert [r.job.job_id for r in released] == [job_id] and released[0].reason == "planned"
    assert queued_ids(s) == [job_id]
    assert store.status(job_id) is None and store.waiting_by_type() == {"description": 0}
    (envelope,) = queued_envelopes(s)
    assert envelope.released_at == origin + 2 * SLOT_S + 1
    assert envelope.intensity_at_submission_g_per_kwh == 400.0


def test_capacity_spreads_jobs_over_the_cleanest_slots_and_deadlines_hold(deferral: Stack) -> None:
    s = deferral
    now = time.time()
    origin = now - now % SLOT_S
    source = TableForecast(origin, [400, 100, 50, 300, 300, 300])
    submit_deferred(s, 10, run_by_s=5 * SLOT_S)  # release by: 4 slots from now, less the 60-s objective
    # Recorded as demand, with its window in slots (what the scheduler's forecast of later arrivals reads).
    window = math.floor((now + 5 * SLOT_S - 60 - s.settings.scheduler_tick_s - origin) / SLOT_S)
    assert DeferredStore(s.redis).arrivals(origin + SLOT_S, SLOT_S, SLOT_S) == {origin: {window: 10}}
    scheduler = make_scheduler(s, source, jobs_per_hour=4 * 3600 / SLOT_S)  # 4 jobs per slot
    released_per_slot = []
    for slot in range(6):
        report = scheduler.tick(origin + slot * SLOT_S + 1)
        released_per_slot.append(len(report.released))
    # 4 in the cleanest slot (50), 4 in the next (100), the last 2 in the cheapest of the rest before the deadline
    assert released_per_slot[:3] == [0, 4, 4] and sum(released_per_slot) == 10
    assert sorted(set(queued_ids(s))) == sorted(queued_ids(s)) and len(queued_ids(s)) == 10


def test_two_schedulers_never_release_a_job_twice(deferral: Stack) -> None:
    s = deferral
    now = time.time()
    origin = now - now % SLOT_S
    source = TableForecast(origin, [50, 400, 400, 400])
    ids = submit_deferred(s, 60, run_by_s=4 * SLOT_S)  # slots 0-2 at least: room for all 60, no overflow
    a, b = make_scheduler(s, source, 20 * 3600 / SLOT_S), make_scheduler(s, source, 20 * 3600 / SLOT_S)
    # Both plan the same 20 jobs for the current slot; together they release 20, not 40.
    released = a.tick(now).released + b.tick(now).released
    assert len(released) == 20 and len(set(queued_ids(s))) == 20 == len(queued_ids(s))
    for t in (origin + k * SLOT_S + 1 for k in range(1, 5)):
        a.tick(t)
        b.tick(t)
    assert sorted(queued_ids(s)) == sorted(ids)


def test_no_forecast_releases_everything_at_once(deferral: Stack) -> None:
    s = deferral
    now = time.time()
    ids = submit_deferred(s, 5, run_by_s=6 * 3600)
    report = make_scheduler(s, TableForecast(now, [50], fail=True), 600).tick(now)
    assert report.plan is None and {r.reason for r in report.released} == {"no_forecast"}
    assert sorted(queued_ids(s)) == sorted(ids)


def test_a_release_its_scheduler_did_not_confirm_is_redone_after_the_lease(deferral: Stack) -> None:
    s = deferral
    now = time.time()
    store = DeferredStore(s.redis)
    (job_id,) = submit_deferred(s, 1, run_by_s=3600)
    # A scheduler claims the job, then dies before publishing it: the job is under a lease, on no queue.
    (claimed,) = store.take_due(now, now - now % SLOT_S, allowance=1, hold_s=30).jobs
    assert claimed.job_id == job_id and queued_ids(s) == [] and store.status(job_id) is not None
    survivor = make_scheduler(s, TableForecast(now - now % SLOT_S, [50] * 80), 600)
    assert survivor.tick(now + 10).released == []  # lease still running
    report = survivor.tick(now + 31)
    assert report.recovered == 1 and [r.job.job_id for r in report.released] == [job_id]
    assert queued_ids(s) == [job_id]


def test_withdrawn_jobs_are_never_released(deferral: Stack) -> None:
    s = deferral
    now = time.time()
    store = DeferredStore(s.redis)
    keep, drop = submit_deferred(s, 2, run_by_s=3600)
    assert store.withdraw(drop) and not store.withdraw(drop)
    make_scheduler(s, TableForecast(now, [50], fail=True), 600).tick(now)
    assert queued_ids(s) == [keep]


def test_an_idempotency_key_names_a_deferred_job_until_it_has_run(deferral: Stack) -> None:
    from greenq.producers.client import JobSpec
    from greenq.producers.top import deferred_line

    s = deferral
    spec = JobSpec("description", DESCRIPTION, idempotency_key="rewrite-42", run_by=2 * 86400)
    first = s.client.submit_many([spec])
    assert s.client.submit_many([spec]) == first and len(DeferredStore(s.redis).release_deadlines()) == 1
    assert deferred_line(s.settings) == "deferred, waiting for the scheduler: description 1"  # greenq top
    ttl_s = max(int(s.redis.ttl(key)) for key in s.redis.keys("greenq:idem:*"))
    assert ttl_s > 2 * 86400 + s.settings.result_ttl_s - 60
