"""`greenq report`: energy, carbon, throughput and latency by job type.

From a results file (exact per-job figures) or from workers' /metrics (histograms, so
latency percentiles are bucket estimates, as Prometheus' histogram_quantile gives).
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Sequence

from prometheus_client.parser import text_string_to_metric_families

from greenq.producers.summary import percentile
from greenq.shared.results import JobResult, JobStatus

HEADER = (
    f"{'job type':<12} {'jobs':>6} {'ok':>6} {'jobs/s':>8} {'J/job':>9} {'gCO2e/job':>11} "
    f"{'p50 s':>7} {'p95 s':>7} {'p99 s':>7}  source"
)


def _row(name: str, jobs: int, ok: int, rate: float, j: float, g: float, p: Sequence[float], source: str) -> str:
    return (
        f"{name:<12} {jobs:>6} {ok:>6} {rate:>8.2f} {j:>9.3f} {g:>11.6f} "
        f"{p[0]:>7.3f} {p[1]:>7.3f} {p[2]:>7.3f}  {source}"
    )


def report_from_results(lines: Iterable[str]) -> str:
    results = []
    for line in lines:
        record = json.loads(line) if line.strip() else None
        if record and record.get("job_id") and record.get("status") != JobStatus.rejected.value:
            record.pop("line", None)
            results.append(JobResult.model_validate(record))
    return report_table(results)


def report_table(results: Sequence[JobResult]) -> str:
    """J/job, gCO2e/job, throughput and latency percentiles by job type, and for all jobs."""
    groups: dict[str, list[JobResult]] = defaultdict(list)
    for r in results:
        groups[r.job_type or "unknown"].append(r)
    groups["all"] = list(results)
    out = [HEADER]
    for name, members in groups.items():
        ok = [r for r in members if r.status is JobStatus.succeeded]
        finished = [r.finished_at for r in ok if r.finished_at is not None]
        started = [r.finished_at - r.timings.end_to_end_s for r in ok if r.finished_at is not None]
        span_s = (max(finished) - min(started)) if finished else 0.0
        energies = [r.energy_j for r in ok if r.energy_j is not None]
        carbon = [r.co2e_g for r in ok if r.co2e_g is not None]
        latencies = [r.timings.end_to_end_s for r in ok]
        sources = ",".join(sorted({r.energy_source for r in ok if r.energy_source})) or "-"
        rate = len(ok) / span_s if span_s > 0 else math.nan
        percentiles = [percentile(latencies, q) for q in (50, 95, 99)]
        out.append(_row(name, len(members), len(ok), rate, _mean(energies), _mean(carbon), percentiles, sources))
    return "\n".join(out)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """histogram_quantile over cumulative (upper bound, count) pairs, linear within a bucket."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            return lower_bound + (bound - lower_bound) * ((rank - lower_count) / width if width else 0.0)
        lower_bound, lower_count = bound, count
    return lower_bound


def report_from_metrics(urls: Sequence[str]) -> str:
    jobs: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    sums: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    sources: dict[str, set[str]] = defaultdict(set)
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (operator-given URL)
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                job_type = s.labels.get("job_type")
                if job_type is None:
                    continue
                if s.name == "greenq_jobs_total":
                    jobs[job_type][s.labels["status"]] += s.value
                elif s.name in ("greenq_job_energy_joules_sum", "greenq_job_co2e_grams_sum"):
                    sums[(s.name, job_type)] += s.value
                    sources[job_type].add(s.labels.get("source", ""))
                elif s.name == "greenq_job_energy_joules_count":
                    sums[(s.name, job_type)] += s.value
                elif s.name == "greenq_job_latency_seconds_bucket":
                    buckets[job_type][float(s.labels["le"])] += s.value
    out = [HEADER.replace("jobs/s", "  -   ")]
    for job_type in sorted(jobs):
        total = int(sum(jobs[job_type].values()))
        ok = int(jobs[job_type].get(JobStatus.succeeded.value, 0))
        count = sums[("greenq_job_energy_joules_count", job_type)]
        per_j = sums[("greenq_job_energy_joules_sum", job_type)] / count if count else math.nan
        per_g = sums[("greenq_job_co2e_grams_sum", job_type)] / count if count else math.nan
        cumulative = sorted(buckets[job_type].items())
        quantiles = [bucket_quantile(q, cumulative) for q in (0.5, 0.95, 0.99)]
        out.append(
            _row(job_type, total, ok, math.nan, per_j, per_g, quantiles, ",".join(sorted(sources[job_type])) or "-")
        )
    return "\n".join(out)
