"""Carbon-aware deferral end to end: gateway, `greenq scheduler` processes, a worker, a real Redis.

The grid is a CSV trace written relative to now, in 2-second slots: dirty, then one clean slot, then dirty.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenq.producers.client import JobSpec
from greenq.shared import job_types
from greenq.shared.deferral import TAKE_CHUNK_JOBS, DeferredStore
from greenq.shared.keys import CARBON_NOW_KEY, DEFERRED_RELEASING_KEY
from tests.integration.gateways import Gateway
from tests.integration.harness import Stack, free_port, stack
from tests.integration.test_deferral_store import queued_ids

SLOT_S = 2.0
DIRTY, CLEAN = 400.0, 40.0
DESCRIPTION = dict(job_types.get("description").samples[0])


def write_trace(path: Path, clean_from_s: float) -> None:
    start = math.floor(time.time() / SLOT_S) * SLOT_S - 60
    rows = ["time,g_per_kwh"]
    for i in range(200):
        at = start + i * SLOT_S
        rows.append(f"{at},{CLEAN if clean_from_s <= at < clean_from_s + SLOT_S else DIRTY}")
    path.write_text("\n".join(rows) + "\n")


def start_scheduler(s: Stack, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return s.spawn([sys.executable, "-m", "greenq.workers.commands.cli", "scheduler"], log, env)


@pytest.fixture
def grid(redis_port: int, tiny_model_dir: Path, tmp_path: Path) -> Iterator[tuple[Stack, float]]:
    clean_at = math.floor(time.time() / SLOT_S) * SLOT_S + 10 * SLOT_S  # about 20 s from now
    trace = tmp_path / "grid.csv"
    write_trace(trace, clean_at)
    env = {
        "GREENQ_CARBON_INTENSITY_FILE": str(trace),
        "GREENQ_CARBON_CACHE_S": "0",
        "GREENQ_SCHEDULER_SLOT_S": str(SLOT_S),
        "GREENQ_SCHEDULER_TICK_S": "0.3",
        "GREENQ_SCHEDULER_CAPACITY_JOBS_PER_HOUR": "36000",  # 20 per 2-s slot
        "GREENQ_SCHEDULER_PORT": str(free_port()),
    }
    with stack(redis_port, tiny_model_dir, env) as s:
        yield s, clean_at


def test_a_deferred_job_runs_in_the_clean_slot_with_its_receipt(grid: tuple[Stack, float], tmp_path: Path) -> None:
    s, clean_at = grid
    metrics_port = free_port()
    s.start_worker(tmp_path / "worker.log", queues="description", metrics_port=metrics_port)
    start_scheduler(s, tmp_path / "scheduler.log")
    s.wait_for(lambda: s.redis.exists(CARBON_NOW_KEY), 30, "the scheduler's first tick")
    api = Gateway(s, tmp_path)

    submitted_at = time.time()
    accepted = api.http.post("/v1/jobs/description", json={"job": DESCRIPTION, "run_by": 90}, headers=api.auth())
    assert accepted.status_code == 202 and accepted.json()["status"] == "deferred"
    job_id = accepted.json()["id"]
    s.wait_for(
        lambda: api.http.get(f"/v1/jobs/{job_id}", headers=api.auth()).json().get("planned_start_at") is not None,
        10,
        "a plan",
    )
    view = api.http.get(f"/v1/jobs/{job_id}", headers=api.auth()).json()
    assert view["status"] == "deferred" and view["planned_start_at"] == clean_at and view["run_by"] > clean_at

    # A reply given a run_by is not carbon-aware by default: it runs at once.
    reply = api.http.post(
        "/v1/jobs/reply", json={"job": {"customer_message": "Where is my parcel?"}, "run_by": 90}, headers=api.auth()
    )
    assert reply.json()["status"] == "queued"

    # Cancelled while deferred: withdrawn, never released.
    dropped = api.http.post("/v1/jobs/description", json={"job": DESCRIPTION, "run_by": 90}, headers=api.auth())
    dropped_id = dropped.json()["id"]
    cancelled = api.http.delete(f"/v1/jobs/{dropped_id}", headers=api.auth())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert DeferredStore(s.redis).status(dropped_id) is None

    done = api.http.get(f"/v1/jobs/{job_id}?wait=60", headers=api.auth()).json()
    assert done["status"] == "succeeded", done
    result = done["result"]
    assert result["intensity_g_per_kwh"] == CLEAN and result["intensity_at_submission_g_per_kwh"] == DIRTY
    assert result["co2e_avoided_g"] > 0 and result["finished_at"] >= clean_at
    assert result["timings"]["deferred_s"] >= clean_at - submitted_at - 1  # waited for the clean slot
    assert api.http.get(f"/v1/jobs/{dropped_id}", headers=api.auth()).json()["status"] == "cancelled"

    worker_metrics = s.metrics_text(metrics_port)
    avoided = re.search(r'^greenq_co2e_avoided_grams_total\{job_type="description"\} (\S+)$', worker_metrics, re.M)
    assert avoided is not None and float(avoided.group(1)) == pytest.approx(result["co2e_avoided_g"])
    scheduler_metrics = s.metrics_text(int(s.env["GREENQ_SCHEDULER_PORT"]))
    assert 'greenq_deferred_released_total{job_type="description",reason="planned"} 1.0' in scheduler_metrics
    assert 'greenq_deferred_released_late_total{job_type="description"} 0.0' in scheduler_metrics


def test_deferred_jobs_count_toward_the_outstanding_limit(grid: tuple[Stack, float], tmp_path: Path) -> None:
    s, _ = grid
    api = Gateway(s, tmp_path)  # no scheduler: the jobs stay deferred
    body = {"job": DESCRIPTION, "run_by": 3600}
    for _ in range(2):
        assert api.http.post("/v1/jobs/description", json=body, headers=api.auth("tiny")).status_code == 202
    refused = api.http.post("/v1/jobs/description", json=body, headers=api.auth("tiny"))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_outstanding"
    invalid = api.http.post("/v1/jobs/description", json={"job": DESCRIPTION, "run_by": -5}, headers=api.auth())
    assert invalid.status_code == 422 and invalid.json()["error"]["fields"][0]["field"] == "body.run_by"


def test_a_scheduler_killed_mid_release_loses_nothing_and_duplicates_nothing(
    grid: tuple[Stack, float], tmp_path: Path
) -> None:
    s, _ = grid
    lease = {"GREENQ_SCHEDULER_RELEASE_LEASE_S": "3"}
    ids = s.client.submit_many([_description(run_by_s=4) for _ in range(20)])  # due for release within a second
    time.sleep(1.5)
    doomed = start_scheduler(s, tmp_path / "doomed.log", {**lease, "GREENQ_CHAOS__RELEASE_DELAY_S": "60"})
    s.wait_for(lambda: s.redis.zcard(DEFERRED_RELEASING_KEY) == 20, 30, "the first scheduler to claim the jobs")
    s.kill(doomed)
    assert queued_ids(s) == []
    start_scheduler(s, tmp_path / "survivor.log", lease)
    s.wait_for(lambda: len(queued_ids(s)) >= 20, 30, "the survivor to release them")
    time.sleep(1.0)  # a second publish, if any, would land now
    assert sorted(queued_ids(s)) == sorted(ids)
    assert s.redis.zcard(DEFERRED_RELEASING_KEY) == 0 and DeferredStore(s.redis).release_deadlines() == []


def test_a_scheduler_killed_between_chunks_keeps_what_it_released(grid: tuple[Stack, float], tmp_path: Path) -> None:
    """A backlog goes out a chunk at a time, each confirmed on its own: a kill loses nothing, repeats nothing."""
    s, _ = grid
    lease = {"GREENQ_SCHEDULER_RELEASE_LEASE_S": "3"}
    n = TAKE_CHUNK_JOBS + 200
    ids = s.client.submit_many([_description(run_by_s=4) for _ in range(n)])  # due within a second
    time.sleep(1.5)
    # It waits 10 s after each claim: the first chunk goes out, then it dies holding the second.
    doomed = start_scheduler(s, tmp_path / "doomed.log", {**lease, "GREENQ_CHAOS__RELEASE_DELAY_S": "10"})
    s.wait_for(
        lambda: s.redis.zcard(DEFERRED_RELEASING_KEY) == 200 and len(queued_ids(s)) == TAKE_CHUNK_JOBS,
        60,
        "the first chunk released and the second claimed",
    )
    s.kill(doomed)
    start_scheduler(s, tmp_path / "survivor.log", lease)
    s.wait_for(lambda: len(queued_ids(s)) >= n, 30, "the survivor to release the second chunk")
    time.sleep(1.0)  # a second publish, if any, would land now
    assert sorted(queued_ids(s)) == sorted(ids)
    assert s.redis.zcard(DEFERRED_RELEASING_KEY) == 0 and DeferredStore(s.redis).release_deadlines() == []


def _description(run_by_s: float) -> JobSpec:
    return JobSpec("description", DESCRIPTION, run_by=run_by_s)
