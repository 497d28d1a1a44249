"""Batching for the fewest joules: full batches when the backlog allows, fuller ones at low load.

Real Redis, real worker processes with the tiny model. Assertions are on batch sizes and on
each job's latency against its objective, never on how fast this machine is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.client import JobSpec
from shared import job_types
from shared.results import JobStatus
from tests.integration.harness import Stack

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
