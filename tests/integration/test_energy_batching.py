"""Batching for the fewest joules: full batches when the backlog allows, fuller ones at low load.

Real Redis, real worker processes with the tiny model. Assertions are on batch sizes and on
each job's latency against its objective, never on how fast this machine is.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from greenq.producers.client import JobSpec
from greenq.shared import job_types
from greenq.shared.results import JobStatus
from tests.integration.harness import Stack, free_port

REPLY = job_types.get("reply").samples[0]


def _policy_env(mode: str, size: int, wait_s: float, objective_s: float = 10.0) -> dict[str, str]:
    return {
        "GREENQ_BATCH__REPLY__MODE": mode,
        "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": str(size),
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": str(wait_s),
        "GREENQ_LATENCY_OBJECTIVE_S__REPLY": str(objective_s),
    }


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_a_backlog_fills_every_batch_to_the_cap(fresh: Stack, tmp_path: Path, mode: str) -> None:
    """The held-out saturation case: every job queued before the worker starts. Jobs reach the batcher
    one fetch at a time, slower than a 5 ms max wait; a batch must not close while more are on their way."""
    size, batches = 8, 5
    ids = fresh.client.submit_many(JobSpec("reply", REPLY) for _ in range(size * batches))
    fresh.start_worker(tmp_path / "w.log", queues="reply", env=_policy_env(mode, size, 0.005))
    results = list(fresh.client.as_completed(ids, timeout_s=120))
    assert all(r.status is JobStatus.succeeded for r in results), [r.error for r in results]
    sizes = sorted(r.batch_size for r in results)
    assert sizes == [size] * (size * batches), f"batch sizes per job: {sizes}"


def _metric(text: str, name: str, job_type: str = "reply") -> float:
    pattern = rf'^{name}\{{job_type="{job_type}"\}} (\S+)$'
    match = re.search(pattern, text, flags=re.M)
    assert match, f"{name} not exported"
    return float(match.group(1))


def test_at_low_load_adaptive_batches_hold_within_the_objective(fresh: Stack, tmp_path: Path) -> None:
    """A steady trickle far below the worker's ceiling: fixed 20 ms waits run nearly every job alone;
    the adaptive policy holds batches open for more jobs, and every job still meets its objective."""
    objective_s, rate_per_s, jobs = 4.0, 4.0, 40
    port = free_port()
    fresh.start_worker(
        tmp_path / "w.log", queues="reply", metrics_port=port, env=_policy_env("adaptive", 16, 0.02, objective_s)
    )
    start = time.monotonic()
    ids = []
    rate_mid_stream = 0.0
    for i in range(jobs):
        time.sleep(max(0.0, start + i / rate_per_s - time.monotonic()))
        ids.append(fresh.client.submit("reply", {**REPLY, "customer_message": f"where is order {i}?"}))
        if i == jobs // 2:
            rate_mid_stream = _metric(fresh.metrics_text(port), "greenq_arrival_rate_per_second")
    results = list(fresh.client.as_completed(ids, timeout_s=120))
    assert all(r.status is JobStatus.succeeded for r in results), [r.error for r in results]
    latencies = sorted(r.timings.end_to_end_s for r in results)
    p95_s = latencies[int(0.95 * len(latencies)) - 1]
    mean_batch = sum(r.batch_size for r in results) / len(results)
    print(
        f"\nadaptive at {rate_per_s} jobs/s: mean batch {mean_batch:.1f}, p95 {p95_s:.2f} s (objective {objective_s} s)"
    )
    assert p95_s <= objective_s
    assert mean_batch >= 3, sorted(r.batch_size for r in results)

    text = fresh.metrics_text(port)
    assert _metric(text, "greenq_latency_objective_seconds") == objective_s
    assert _metric(text, "greenq_batch_policy_mode", 'reply",mode="adaptive') == 1
    assert _metric(text, "greenq_jobs_within_objective_total") >= 0.95 * jobs
    assert _metric(text, "greenq_batch_hold_seconds_count") >= 1
    assert _metric(text, "greenq_batch_energy_predicted_joules_total") > 0
    assert _metric(text, "greenq_batch_energy_measured_joules_total") > 0
    assert rate_mid_stream > 0  # and 0 again once the stream has stopped
    assert _metric(text, "greenq_arrival_rate_per_second") == 0
