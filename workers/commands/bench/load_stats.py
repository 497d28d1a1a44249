"""The load bench's figures: one window's results → throughput, J/job and per-type latency; the target ratios.

Pure functions over results and numbers, so the arithmetic is unit-tested without a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from greenq.producers.summary import percentile
from greenq.shared.results import JobResult, JobStatus

# The targets: adaptive J/job within 1.3× its saturation J/job at a quarter and half load
# while every type meets its p95 objective, and adaptive throughput ≥ 0.95× fixed at full load.
ENERGY_RATIO_TARGET = 1.3
ENERGY_TARGET_FRACTIONS = (0.25, 0.5)
THROUGHPUT_RATIO_TARGET = 0.95


def fraction_key(fraction: float) -> str:
    return f"{fraction:g}"


def type_latency(results: Sequence[JobResult], objective_s: float) -> dict[str, Any]:
    e2e = [r.timings.end_to_end_s for r in results]
    p95 = percentile(e2e, 95)
    return {
        "jobs": len(results),
        "p50_s": percentile(e2e, 50),
        "p95_s": p95,
        "objective_s": objective_s,
        "met": bool(e2e) and p95 <= objective_s,
    }


def window_summary(
    results: Sequence[JobResult],
    started_at: float,
    arrivals_s: float,
    window_energy_j: float | None,
    objectives_s: Mapping[str, float],
    offered_jobs_per_s: float | None = None,
    submit_lag_s: float = 0.0,
) -> dict[str, Any]:
    """One window's figures. `started_at`: Unix seconds when the window opened (arrival offsets
    count from there); `arrivals_s`: how long jobs kept arriving (0 for a burst). The window
    lasts that long or until the last result, whichever is later; `window_energy_j` is the
    window meter's joules over it (None: no window meter)."""
    ok = [r for r in results if r.status is JobStatus.succeeded]
    last_result_s = max((r.finished_at or started_at for r in ok), default=started_at) - started_at
    window_s = max(arrivals_s, last_result_s)
    energies = [r.energy_j for r in ok if r.energy_j is not None]
    by_type = {
        job_type: type_latency([r for r in ok if r.job_type == job_type], objective_s)
        for job_type, objective_s in objectives_s.items()
    }
    e2e = [r.timings.end_to_end_s for r in ok]
    return {
        "jobs": len(results),
        "succeeded": len(ok),
        "offered_jobs_per_s": offered_jobs_per_s,
        "arrivals_s": arrivals_s,
        "arrived_jobs_per_s": len(results) / arrivals_s if arrivals_s > 0 else None,
        "achieved_jobs_per_s": len(ok) / window_s if window_s > 0 else math.nan,
        "window_s": window_s,
        "max_submit_lag_s": submit_lag_s,
        "mean_batch_size": sum(r.batch_size for r in ok) / len(ok) if ok else math.nan,
        "active_joules_per_job": sum(energies) / len(energies) if energies else math.nan,
        "total_joules_per_job": window_energy_j / len(ok) if ok and window_energy_j is not None else math.nan,
        "energy_source": ok[0].energy_source if ok else None,
        "latency_s": {"p50": percentile(e2e, 50), "p95": percentile(e2e, 95)},
        "by_type": by_type,
        "objectives_met": all(t["met"] for t in by_type.values() if t["jobs"]),
    }


def ratio(part: float, whole: float) -> float:
    """part ÷ whole, NaN where whole is zero or not a number (an empty or unmetered window)."""
    return part / whole if whole and not math.isnan(whole) else math.nan


def energy_ratios(policy: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """For each fraction below 1: J/job ÷ the same worker's saturation J/job, active and total."""
    saturation = policy["saturation"]
    ratios = {}
    for key, window in policy["fractions"].items():
        if float(key) >= 1:
            continue
        active = ratio(window["active_joules_per_job"], saturation["active_joules_per_job"])
        targeted = float(key) in ENERGY_TARGET_FRACTIONS
        ratios[key] = {
            "active_over_saturation": active,
            "total_over_saturation": ratio(window["total_joules_per_job"], saturation["total_joules_per_job"]),
            "objectives_met": window["objectives_met"],
            "target_met": (active <= ENERGY_RATIO_TARGET and window["objectives_met"]) if targeted else None,
        }
    return ratios


def load_ratios(policies: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Energy ratios for every policy, and adaptive ÷ fixed achieved throughput at fraction 1."""
    full = fraction_key(1.0)
    throughput = None
    if {"fixed", "adaptive"} <= set(policies) and all(full in policies[p]["fractions"] for p in ("fixed", "adaptive")):
        adaptive = policies["adaptive"]["fractions"][full]["achieved_jobs_per_s"]
        throughput = ratio(adaptive, policies["fixed"]["fractions"][full]["achieved_jobs_per_s"])
    return {
        "energy": {name: energy_ratios(policy) for name, policy in policies.items()},
        "adaptive_over_fixed_throughput_at_1": throughput,
        "throughput_target_met": None if throughput is None else throughput >= THROUGHPUT_RATIO_TARGET,
    }
