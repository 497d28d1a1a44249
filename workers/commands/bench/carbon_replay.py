"""`greenq bench --carbon`: a day of deferrable jobs replayed through the real scheduler and Redis.

The grid is a real trace (CAISO North MOER, 5-min steps). Time is virtual: each 5-min step, that
step's jobs are deferred into Redis as the client would defer them, then two `Scheduler` instances
tick (the real planner, Lua claims and Celery publisher), and a "fleet" drains the Celery queues.
The fleet is modelled by its capacity: the scheduler is told K jobs per slot, and whatever is released
counts as run in the slot it was released in. No model runs: a day of model work per minute of wall
time is not possible on a CPU, and where a job runs is all the carbon saving depends on.

What is measured: the true trace intensity at each job's release step against its submission step
(the saving), against the offline optimum on the same jobs, windows and capacity (carbon_bound.py).

>>> result = run_carbon(ReplayConfig(slacks_h=(1.0, 4.0)), Settings())
>>> result["runs"][0]["ratio_to_bound"]
"""

from __future__ import annotations

import base64
import json
import math
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from greenq.producers.client import Client, JobSpec
from greenq.shared import job_types
from greenq.shared.celery_app import make_celery
from greenq.shared.deferral import DeferredJob, DeferredStore, release_by_s
from greenq.shared.envelope import Envelope
from greenq.shared.job_types import JobType
from greenq.shared.keys import DEFERRED_RELEASING_KEY
from greenq.shared.local_redis import free_port, start_redis
from greenq.shared.queues import queue_name, redis_priority_lists
from greenq.shared.redis_client import redis_client
from greenq.shared.settings import Settings
from greenq.workers.commands.bench.arrivals import job_types_for
from greenq.workers.commands.bench.carbon_bound import optimal_assignment, uncapacitated_saving
from greenq.workers.energy.forecasts import CsvTrace, ForecastSource, NoisyForecast, parse_time_s
from greenq.workers.scheduler.capacity import Capacity
from greenq.workers.scheduler.run import celery_publisher
from greenq.workers.scheduler.service import Scheduler

SLOT_S = 300.0  # one trace step, one scheduler slot, one tick
STEPS_PER_DAY = int(86_400 / SLOT_S)
# The team's trace beside the checkout: <repo>/../shared/data/carbon/.
DEFAULT_TRACE = Path(__file__).resolve().parents[4] / "shared" / "data" / "carbon" / "caiso_north_2023-06_5min.csv"
FORECASTS = ("perfect", "noisy")
TICK_OFFSETS_S = (1.0, 2.0)  # the two schedulers tick 1 s and 2 s into each step, after its arrivals


@dataclass(frozen=True)
class ReplayConfig:
    trace: Path = DEFAULT_TRACE
    start: str = "2023-06-10T00:00:00Z"  # the first step of arrivals (UTC)
    days: float = 1.0  # of arrivals; ticking goes on for the slack after them, until every job is released
    slacks_h: tuple[float, ...] = (1.0, 4.0, 8.0, 24.0)  # run_by = submission + slack
    capacity_per_slot: int = 4  # K: jobs the fleet runs per 5-min slot, and what the scheduler is told
    objective_s: float = 300.0  # description and strategy latency objective: released by run_by - this
    # Diurnal Poisson arrivals, in the grid's local time (CAISO: UTC-7 in June): busier in business hours.
    business_jobs_per_step: float = 3.0
    night_jobs_per_step: float = 1.0
    business_hours: tuple[int, int] = (8, 20)
    utc_offset_h: float = -7.0
    mix: tuple[tuple[JobType, float], ...] = (("description", 0.8), ("strategy", 0.2))
    noise_fraction: float = 0.10
    seed: int = 7

    @property
    def start_s(self) -> float:
        return parse_time_s(self.start)

    @property
    def arrival_steps(self) -> int:
        return round(self.days * STEPS_PER_DAY)


def check_config(config: ReplayConfig) -> ReplayConfig:
    """The config, or ValueError naming what to change."""
    if config.arrival_steps < 1:
        raise ValueError(f"--days {config.days} holds no 5-min step; give at least {1 / STEPS_PER_DAY:.4f}")
    for slack_h in config.slacks_h:
        slack_s = slack_h * 3600
        if slack_s <= config.objective_s or slack_s % SLOT_S:
            raise ValueError(
                f"slack {slack_h:g} h: use a multiple of 5 min longer than the {config.objective_s:g}-s release guard"
            )
    if not config.slacks_h:
        raise ValueError("give at least one slack (--slacks-h 1,4,8,24)")
    if config.capacity_per_slot < 1:
        raise ValueError("capacity_per_slot must be at least 1")
    if not config.trace.exists():
        raise ValueError(f"no trace at {config.trace}; pass --trace PATH (columns time,moer_lbs_per_mwh)")
    return config


def parse_slacks(text: str) -> tuple[float, ...]:
    """`"1,4,8,24"` → (1.0, 4.0, 8.0, 24.0); ValueError on anything else."""
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--slacks-h {text!r}: give hours, comma-separated (1,4,8,24)") from None


# -- the jobs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayJob:
    job_id: str
    job_type: JobType
    step: int  # submitted at the start of this step


def poisson(rate: float, rng: random.Random) -> int:
    """One Poisson draw (Knuth's method: fine for the few jobs per step used here)."""
    limit, k, p = math.exp(-rate), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def jobs_per_step_rate(config: ReplayConfig, step: int) -> float:
    local_h = ((config.start_s + step * SLOT_S) / 3600 + config.utc_offset_h) % 24
    first, last = config.business_hours
    return config.business_jobs_per_step if first <= local_h < last else config.night_jobs_per_step


def make_jobs(config: ReplayConfig) -> list[ReplayJob]:
    """The day's jobs: a seeded Poisson count per step, then types in the mix's proportions, shuffled."""
    rng = random.Random(config.seed)
    counts = [poisson(jobs_per_step_rate(config, step), rng) for step in range(config.arrival_steps)]
    steps = [step for step, n in enumerate(counts) for _ in range(n)]
    types = job_types_for(len(steps), dict(config.mix), rng)
    return [
        ReplayJob(str(uuid.UUID(int=rng.getrandbits(128), version=4)), job_type, step)
        for step, job_type in zip(steps, types, strict=True)
    ]


def deferred_jobs(
    client: Client, jobs: Sequence[ReplayJob], start_s: float, slack_s: float, objective_s: float, trace: CsvTrace
) -> dict[int, list[DeferredJob]]:
    """Each step's jobs as the client would defer them, on the virtual clock.

    `Client.prepare` validates the spec (and stamps wall-clock times); the copy carries the step's trace
    time instead, as a compressed replay needs.
    """
    by_step: dict[int, list[DeferredJob]] = {}
    for job in jobs:
        prepared = client.prepare(
            JobSpec(job.job_type, dict(job_types.get(job.job_type).samples[0]), run_by=slack_s, carbon_aware=True)
        )
        submitted_at = start_s + job.step * SLOT_S
        envelope = Envelope.decode(
            {
                **prepared.encode(),
                "job_id": job.job_id,
                "submitted_at": submitted_at,
                "run_by": submitted_at + slack_s,
                "carbon_aware": True,
            }
        )
        release_by = release_by_s(envelope, objective_s)
        assert release_by is not None  # carbon-aware with a run_by
        deferred = DeferredJob(envelope, release_by, trace.grams_per_kwh(submitted_at))
        by_step.setdefault(job.step, []).append(deferred)
    return by_step


# -- one run ------------------------------------------------------------------------------------


@dataclass
class Fleet:
    """Drains every job queue after each tick: which step each job was released in, and any job seen twice."""

    redis: Any
    release_step: dict[str, int] = field(default_factory=dict)
    released_at: dict[str, float] = field(default_factory=dict)
    run_by: dict[str, float] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)

    def drain(self, step: int) -> int:
        names = [name for t in job_types.names() for name in redis_priority_lists(queue_name(t))]
        pipe = self.redis.pipeline(transaction=True)
        for name in names:
            pipe.lrange(name, 0, -1)
        pipe.delete(*names)
        messages = [raw for batch in pipe.execute()[:-1] for raw in batch]
        for raw in messages:
            body = base64.b64decode(json.loads(raw)["body"])
            envelope = Envelope.decode(json.loads(body)[0][0])
            if envelope.job_id in self.release_step:
                self.duplicates.append(envelope.job_id)
                continue
            self.release_step[envelope.job_id] = step
            self.released_at[envelope.job_id] = envelope.released_at or math.nan
            self.run_by[envelope.job_id] = envelope.run_by or math.nan
        return len(messages)


def run_settings(base: Settings, broker_url: str, config: ReplayConfig) -> Settings:
    objectives = {**base.latency_objective_s, "description": config.objective_s, "strategy": config.objective_s}
    return base.model_copy(
        update={
            "broker_url": broker_url,
            "result_backend_url": "",
            "tls_ca_file": None,
            "scheduler_slot_s": SLOT_S,
            "scheduler_capacity_jobs_per_hour": config.capacity_per_slot * 3600 / SLOT_S,
            "latency_objective_s": objectives,
        }
    )


def replay(
    redis: Any,
    settings: Settings,
    source: ForecastSource,
    by_step: dict[int, list[DeferredJob]],
    total_steps: int,
    config: ReplayConfig,
) -> dict[str, Any]:
    """One run on a flushed database: defer each step's jobs, tick both schedulers, drain the queues."""
    redis.flushdb()
    store = DeferredStore(redis)
    app = make_celery(settings, name="greenq-bench-carbon", producer=True)
    deferrable = {t for t, _ in config.mix}
    schedulers = [
        Scheduler(
            settings,
            store,
            source,
            celery_publisher(app, settings, redis),
            Capacity(settings.scheduler_capacity_jobs_per_hour, 1.0, deferrable),
        )
        for _ in range(2)
    ]
    fleet = Fleet(redis)
    reasons: Counter[str] = Counter()
    released_by: Counter[str] = Counter()
    per_step = [0] * total_steps
    start_s = config.start_s
    began = time.perf_counter()
    try:
        for step in range(total_steps):
            store.defer(by_step.get(step, []), SLOT_S)
            turn = (0, 1) if step % 2 == 0 else (1, 0)  # both tick every step, taking turns to go first
            for index, offset_s in zip(turn, TICK_OFFSETS_S, strict=True):
                report = schedulers[index].tick(start_s + step * SLOT_S + offset_s)
                reasons.update(r.reason for r in report.released)
                released_by["ab"[index]] += len(report.released)
                per_step[step] += fleet.drain(step)
    finally:
        app.close()
    wall_s = time.perf_counter() - began
    waiting = sum(store.waiting_by_type().values()) + int(redis.zcard(DEFERRED_RELEASING_KEY))
    return {
        "fleet": fleet,
        "reasons": dict(reasons),
        "released_by_scheduler": dict(released_by),
        "per_step": per_step,
        "still_waiting": waiting,
        "wall_s": wall_s,
    }


# -- the measure --------------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def measure(
    jobs: Sequence[ReplayJob],
    by_step: dict[int, list[DeferredJob]],
    outcome: dict[str, Any],
    values: Sequence[float],
    config: ReplayConfig,
    slack_s: float,
) -> dict[str, Any]:
    """The run's figures: saving against submission, the capacitated optimum on the same jobs, lateness."""
    fleet: Fleet = outcome["fleet"]
    start_s, total_steps = config.start_s, len(values)
    release_by = {d.job_id: d.release_by for step_jobs in by_step.values() for d in step_jobs}
    released = [j for j in jobs if j.job_id in fleet.release_step]
    at_submission = mean([values[j.step] for j in jobs])
    at_release = mean([values[fleet.release_step[j.job_id]] for j in released])
    windows = [(j.step, math.floor((release_by[j.job_id] - start_s) / SLOT_S)) for j in jobs]
    try:
        slots = optimal_assignment(windows, values, [config.capacity_per_slot] * total_steps)
        optimum: float | None = mean([values[s] for s in slots])
    except ValueError:  # more jobs than their windows can hold at K per slot: the bound is undefined
        optimum = None
    window_min = mean([min(values[first : last + 1]) for first, last in windows])
    saving = 1 - at_release / at_submission
    bound = None if optimum is None else 1 - optimum / at_submission
    late_s = [fleet.released_at[i] - release_by[i] for i in fleet.release_step]
    slack_steps = round(slack_s / SLOT_S)
    per_step = outcome["per_step"]
    return {
        "jobs": len(jobs),
        "released": len(released),
        "still_waiting": outcome["still_waiting"],
        "duplicates": len(fleet.duplicates),
        "deadlines_missed": sum(fleet.released_at[i] > fleet.run_by[i] for i in fleet.release_step),
        "released_after_release_by": sum(s > 0 for s in late_s),
        "max_s_after_release_by": max(late_s, default=0.0),
        "released_past_release_by_slot": sum(
            fleet.release_step[j.job_id] > last
            for j, (_, last) in zip(jobs, windows, strict=True)
            if j.job_id in fleet.release_step
        ),
        "mean_g_per_kwh_at_submission": at_submission,
        "mean_g_per_kwh_at_release": at_release,
        "mean_g_per_kwh_optimum": optimum,
        "saving": saving,
        "bound_saving": bound,
        "ratio_to_bound": None if not bound else saving / bound,
        "uncapacitated_saving_these_jobs": 1 - window_min / at_submission,
        "readme_bound_this_day": uncapacitated_saving(values[: config.arrival_steps + slack_steps], slack_steps),
        "capacity_per_slot": config.capacity_per_slot,
        "peak_releases_per_slot": max(per_step, default=0),
        "slots_over_capacity": sum(n > config.capacity_per_slot for n in per_step),
        "release_reasons": outcome["reasons"],
        "released_by_scheduler": outcome["released_by_scheduler"],
        "releases_per_step": per_step,
        "steps_ticked": total_steps,
        "wall_s": outcome["wall_s"],
        "virtual_days_per_real_minute": (total_steps * SLOT_S / 86_400) / (outcome["wall_s"] / 60),
    }


# -- the bench ----------------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[bench --carbon] {message}", file=sys.stderr, flush=True)


def trace_values(trace: CsvTrace, start_s: float, steps: int) -> list[float]:
    """The true intensity at each step; ValueError if the trace stops before the last."""
    end_s = start_s + steps * SLOT_S
    points = trace.forecast(start_s, end_s)
    if points[-1].end_s < end_s or points[0].start_s > start_s:
        raise ValueError(f"the trace does not cover {start_s:.0f}..{end_s:.0f}: use fewer --days or a shorter slack")
    return [trace.grams_per_kwh(start_s + i * SLOT_S) for i in range(steps)]


def run_carbon(config: ReplayConfig, settings: Settings) -> dict[str, Any]:
    """Every slack × forecast on one private redis-server (flushed between runs); the figures per run."""
    config = check_config(config)
    trace = CsvTrace(config.trace)
    horizon = config.arrival_steps + max(round(h * 3600 / SLOT_S) for h in config.slacks_h)
    all_values = trace_values(trace, config.start_s, horizon)
    jobs = make_jobs(config)
    _progress(f"{len(jobs)} jobs over {config.arrival_steps} steps, K = {config.capacity_per_slot} per slot")
    server = start_redis(free_port(), databases=1)
    runs: list[dict[str, Any]] = []
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        redis = redis_client(url)
        settings = run_settings(settings, url, config)
        client = Client(settings)
        try:
            for slack_h in config.slacks_h:
                slack_s = slack_h * 3600
                total_steps = config.arrival_steps + round(slack_s / SLOT_S)
                by_step = deferred_jobs(client, jobs, config.start_s, slack_s, config.objective_s, trace)
                for forecast in FORECASTS:
                    source: ForecastSource = (
                        trace if forecast == "perfect" else NoisyForecast(trace, config.noise_fraction, config.seed)
                    )
                    outcome = replay(redis, settings, source, by_step, total_steps, config)
                    run = {
                        "slack_h": slack_h,
                        "forecast": forecast,
                        **measure(jobs, by_step, outcome, all_values[:total_steps], config, slack_s),
                    }
                    runs.append(run)
                    _progress(
                        f"slack {slack_h:g} h, {forecast}: saving {100 * run['saving']:.1f} %, "
                        f"ratio {run['ratio_to_bound'] or math.nan:.3f}, {run['wall_s']:.1f} s"
                    )
        finally:
            client.close()
            redis.close()
    finally:
        server.stop()
    arrivals = Counter(j.step for j in jobs)
    return {
        "mode": "carbon",
        "plan_ahead": settings.scheduler_plan_ahead,
        "config": {**asdict(config), "trace": str(config.trace), "slot_s": SLOT_S, "forecasts": list(FORECASTS)},
        "arrivals": {
            "jobs": len(jobs),
            "by_type": dict(Counter(j.job_type for j in jobs)),
            "mean_per_step": len(jobs) / config.arrival_steps,
            "peak_per_step": max(arrivals.values(), default=0),
            "per_step": [arrivals.get(step, 0) for step in range(config.arrival_steps)],
        },
        "trace_g_per_kwh": all_values,
        "fleet_model": (
            f"no model runs: the fleet is modelled by its capacity, K = {config.capacity_per_slot} jobs per 5-min "
            "slot (what the scheduler is told); a job counts as run in the slot it was released in"
        ),
        "runs": runs,
    }
