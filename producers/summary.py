"""Throughput and latency figures over a set of results (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from greenq.shared.results import JobResult, JobStatus


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 100]; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    jobs: int
    succeeded: int
    wall_s: float
    jobs_per_s: float
    generated_tokens_per_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    mean_batch_size: float

    def lines(self) -> list[str]:
        return [
            f"jobs: {self.jobs} ({self.succeeded} succeeded) in {self.wall_s:.2f} s",
            f"throughput: {self.jobs_per_s:.2f} jobs/s, {self.generated_tokens_per_s:.1f} generated tokens/s",
            f"end-to-end latency: p50 {self.latency_p50_s:.2f} s, p95 {self.latency_p95_s:.2f} s, "
            f"p99 {self.latency_p99_s:.2f} s",
            f"mean batch size: {self.mean_batch_size:.2f}",
        ]


def summarize(results: Sequence[JobResult], wall_s: float) -> Summary:
    done = [r for r in results if r.status is JobStatus.succeeded]
    latencies = [r.timings.end_to_end_s for r in done]
    tokens = sum(r.generated_tokens for r in done)
    return Summary(
        jobs=len(results),
        succeeded=len(done),
        wall_s=wall_s,
        jobs_per_s=len(done) / wall_s if wall_s > 0 else 0.0,
        generated_tokens_per_s=tokens / wall_s if wall_s > 0 else 0.0,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        latency_p99_s=percentile(latencies, 99),
        mean_batch_size=sum(r.batch_size for r in done) / len(done) if done else 0.0,
    )
