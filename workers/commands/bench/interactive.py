"""`greenq bench --interactive`: replies arriving while long description batches decode, static vs continuous.

One process, one loaded model, one seeded arrival schedule replayed through each batcher in turn
(a `Batcher` in `static` and in `continuous` mode), with the job types' own batch policies,
generation limits and priorities, and the real prompt path. Descriptions come in bursts (a catalogue
import), replies as a Poisson stream (shoppers); every job stops at its own stop token or limit.

Reported per mode: reply time to first text p50/p95 (what a streaming chat widget waits for),
reply and description end-to-end p50/p95, jobs/s and generated tokens/s over the run, and the
median duration of one decoding step (the target's yardstick: "one batch step plus queueing").
Throughput under an open-loop load is capped by the arrivals, so each mode is also run at
saturation (every job of the schedule waiting at the start; the median of 3 alternated runs): that
tokens/s is its capacity. Energy is what the worker's meter measures (RAPL, NVML, or the CPU-time
estimate where neither is readable), attributed to jobs as in a worker.
Time to first text is taken in the batcher, when a step decodes it; a reader sees it one stream
flush later (GREENQ_STREAM__FLUSH_INTERVAL_S, 50 ms by default).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from typing import Any

from greenq.producers.samples import demo_jobs
from greenq.producers.summary import percentile
from greenq.shared import job_types
from greenq.shared.job_types import JobType
from greenq.shared.jobs import parse_job
from greenq.shared.settings import Settings
from greenq.workers.energy.accountant import EnergyAccountant
from greenq.workers.energy.carbon import StaticIntensity
from greenq.workers.energy.meters.detect import detect_meter
from greenq.workers.model.prompts import build_messages
from greenq.workers.model.runtime import HFRuntime
from greenq.workers.model.types import GenerationRequest
from greenq.workers.serving.batcher import Batcher, BatchOutcome
from greenq.workers.serving.observers import BaseObserver

MODES = ("static", "continuous")
SATURATION_RUNS = 3  # each mode's capacity is the median of this many runs


@dataclass(frozen=True)
class InteractiveConfig:
    model: str = "local:store-assistant"
    duration_s: float = 60.0  # of arrivals; the run then waits for every job
    reply_rate_per_s: float = 2.0
    burst_jobs: int = 16  # descriptions per burst
    burst_every_s: float = 15.0
    seed: int = 7
    device: str = "cpu"
    dtype: str = "float32"


@dataclass(frozen=True)
class Arrival:
    at_s: float
    job_type: JobType
    request: GenerationRequest
    priority: int


def schedule(config: InteractiveConfig, requests: dict[JobType, list[GenerationRequest]]) -> list[Arrival]:
    """Description bursts at 0, every `burst_every_s`; Poisson replies throughout; sorted by time."""
    rng = random.Random(config.seed)
    priority = {t: job_types.get(t).priority for t in ("reply", "description")}
    out: list[Arrival] = []
    burst_at = 0.0
    n = 0
    while burst_at < config.duration_s:
        for _ in range(config.burst_jobs):
            pool = requests["description"]
            out.append(Arrival(burst_at, "description", pool[n % len(pool)], priority["description"]))
            n += 1
        burst_at += config.burst_every_s
    at = rng.expovariate(config.reply_rate_per_s)
    while at < config.duration_s:
        pool = requests["reply"]
        out.append(Arrival(at, "reply", pool[rng.randrange(len(pool))], priority["reply"]))
        at += rng.expovariate(config.reply_rate_per_s)
    return sorted(out, key=lambda a: a.at_s)


def real_requests(runtime: HFRuntime, settings: Settings) -> dict[JobType, list[GenerationRequest]]:
    """Each type's requests from the demo jobs, through the real prompt path and generation limits."""
    out: dict[JobType, list[GenerationRequest]] = {"reply": [], "description": []}
    for job_type, payload in demo_jobs(40):
        if job_type not in out:
            continue
        job = parse_job(job_type, payload)
        ids = tuple(runtime.encode(runtime.render(build_messages(job_type, job, settings.prompt_templates_dir))))
        generation = settings.generation[job_type]
        out[job_type].append(GenerationRequest(ids, generation.max_new_tokens, generation))
    return out


class _StepClock(BaseObserver):
    """Batch (static) or step (continuous) wall times, for the 'one step' yardstick."""

    def __init__(self) -> None:
        self.steps_s: list[float] = []
        self._last: float | None = None

    def on_text(self, model: str, texts: Any) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.steps_s.append(now - self._last)
        self._last = now

    def after_batch(self, model: str, job_ids: Any) -> None:
        self._last = None


def run_mode(
    mode: str, runtime: HFRuntime, arrivals: list[Arrival], settings: Settings, progress: Callable[[str], None]
) -> dict[str, Any]:
    clock = _StepClock()
    meter = detect_meter(
        settings.energy_meter, runtime.device.startswith("cuda"), settings.rapl_root, settings.cpu_watts_per_core
    )
    energy = EnergyAccountant(meter, StaticIntensity(settings.carbon_intensity_g_per_kwh))
    common: dict[str, Any] = {
        "observers": [clock],
        "objectives_s": settings.latency_objective_s,
        "energy": energy,
    }
    batcher = Batcher({"m": runtime}, settings.batch, mode="static" if mode == "static" else "continuous", **common)
    batcher.start()
    submitted: list[tuple[Arrival, float, Future[BatchOutcome]]] = []
    start = time.time()
    for i, arrival in enumerate(arrivals):
        delay_s = start + arrival.at_s - time.time()
        if delay_s > 0:
            time.sleep(delay_s)
        future = batcher.submit(f"{mode}-{i}", arrival.job_type, "m", arrival.request, arrival.priority)
        submitted.append((arrival, time.time(), future))
    outcomes = [(a, at, f.result()) for a, at, f in submitted]
    wall_s = max(o.finished_at for _, _, o in outcomes) - start
    batcher.stop()
    progress(f"{mode}: {len(outcomes)} jobs in {wall_s:.1f} s")
    return {**summarize(outcomes, wall_s, clock.steps_s), "energy_source": meter.source}


def summarize(
    outcomes: list[tuple[Arrival, float, BatchOutcome]], wall_s: float, steps_s: list[float]
) -> dict[str, Any]:
    def of(job_type: str) -> list[tuple[float, BatchOutcome]]:
        return [(at, o) for a, at, o in outcomes if a.job_type == job_type]

    replies = of("reply")
    first = [o.first_text_at - at for at, o in replies if o.first_text_at is not None]
    tokens = sum(o.generation.generated_tokens for _, _, o in outcomes)
    joules = sum(o.energy.energy_j for _, _, o in outcomes if o.energy is not None)
    summary: dict[str, Any] = {
        "joules_per_job": joules / len(outcomes),
        "millijoules_per_token": 1000 * joules / max(1, tokens),
        "jobs": len(outcomes),
        "wall_s": wall_s,
        "jobs_per_s": len(outcomes) / wall_s,
        "tokens_per_s": tokens / wall_s,
        "step_s_median": percentile(steps_s, 50) if steps_s else None,
        "reply_first_text_p50_s": percentile(first, 50),
        "reply_first_text_p95_s": percentile(first, 95),
    }
    for job_type in ("reply", "description"):
        e2e = [o.finished_at - at for at, o in of(job_type)]
        summary[f"{job_type}_e2e_p50_s"] = percentile(e2e, 50)
        summary[f"{job_type}_e2e_p95_s"] = percentile(e2e, 95)
        summary[f"{job_type}_tokens_mean"] = sum(o.generation.generated_tokens for _, o in of(job_type)) / max(
            1, len(of(job_type))
        )
    return summary


def run_interactive(
    config: InteractiveConfig, settings: Settings, runtime: HFRuntime, progress: Callable[[str], None]
) -> dict[str, Any]:
    requests = real_requests(runtime, settings)
    arrivals = schedule(config, requests)
    progress(
        f"{sum(a.job_type == 'reply' for a in arrivals)} replies, "
        f"{sum(a.job_type == 'description' for a in arrivals)} descriptions over {config.duration_s:.0f} s"
    )
    modes = {mode: run_mode(mode, runtime, arrivals, settings, progress) for mode in MODES}
    at_once = [replace(a, at_s=0.0) for a in arrivals]  # saturation: every job waiting from the start
    saturated: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for _ in range(SATURATION_RUNS):  # alternated, so drift on a shared machine hits both alike
        for mode in MODES:
            saturated[mode].append(run_mode(mode, runtime, at_once, settings, progress))
    for mode, runs in saturated.items():
        modes[mode]["saturation_tokens_per_s"] = percentile([r["tokens_per_s"] for r in runs], 50)
        modes[mode]["saturation_jobs_per_s"] = percentile([r["jobs_per_s"] for r in runs], 50)
        modes[mode]["saturation_joules_per_job"] = percentile([r["joules_per_job"] for r in runs], 50)
    static, cont = modes["static"], modes["continuous"]
    ratios = {
        "throughput_continuous_over_static": cont["saturation_tokens_per_s"] / static["saturation_tokens_per_s"],
        "reply_first_text_p95_static_over_continuous": static["reply_first_text_p95_s"]
        / max(1e-9, cont["reply_first_text_p95_s"]),
        "reply_e2e_p95_static_over_continuous": static["reply_e2e_p95_s"] / max(1e-9, cont["reply_e2e_p95_s"]),
    }
    return {"config": asdict(config), "modes": modes, "ratios": ratios}


ROWS = (
    ("reply time to first text p50 (s)", "reply_first_text_p50_s"),
    ("reply time to first text p95 (s)", "reply_first_text_p95_s"),
    ("reply end to end p50 (s)", "reply_e2e_p50_s"),
    ("reply end to end p95 (s)", "reply_e2e_p95_s"),
    ("description end to end p95 (s)", "description_e2e_p95_s"),
    ("jobs/s (this load)", "jobs_per_s"),
    ("generated tokens/s (this load)", "tokens_per_s"),
    ("jobs/s (saturation: every job waiting at the start, median of 3)", "saturation_jobs_per_s"),
    ("generated tokens/s (saturation)", "saturation_tokens_per_s"),
    ("J/job (saturation)", "saturation_joules_per_job"),
    ("J/job (attributed, this load)", "joules_per_job"),
    ("mJ per generated token (this load)", "millijoules_per_token"),
    ("one decoding step, median (s)", "step_s_median"),
    ("reply tokens, mean", "reply_tokens_mean"),
    ("description tokens, mean", "description_tokens_mean"),
)


def table(result: dict[str, Any]) -> str:
    """The two modes side by side, as Markdown."""
    modes = result["modes"]
    lines = ["| | static | continuous |", "|---|---|---|"]
    for label, key in ROWS:
        cells = [modes[m].get(key) for m in MODES]
        lines.append(f"| {label} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |")
    ratios = result["ratios"]
    lines.append("")
    lines.append(f"energy source: {modes['static']['energy_source']}")
    lines.append(
        f"continuous/static throughput at saturation {ratios['throughput_continuous_over_static']:.2f}×; "
        f"reply first-text p95 {ratios['reply_first_text_p95_static_over_continuous']:.1f}× sooner, "
        f"reply end-to-end p95 {ratios['reply_e2e_p95_static_over_continuous']:.1f}× sooner with continuous"
    )
    return "\n".join(lines)
