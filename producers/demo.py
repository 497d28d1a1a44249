"""`greenq demo`: Redis (started if nothing answers), one CPU worker, sample jobs, a summary."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from producers.client import Client, JobSpec
from producers.samples import sample_mix
from producers.summary import summarize
from shared.local_redis import ensure_redis
from shared.redact import redact_url
from shared.results import JobResult
from shared.settings import Settings
from workers.local_model import resolve_model

WORKER_READY_TIMEOUT_S = 300.0


def run_demo(settings: Settings, job_count: int) -> int:
    local_redis = ensure_redis(settings.broker_url)
    print(f"broker: {redact_url(settings.broker_url)}" + (" (started a local redis-server)" if local_redis else ""))
    print(f"model: {settings.model} (preparing it if needed)")
    resolve_model(settings.model, settings.model_cache_dir)
    log_path = Path(tempfile.gettempdir()) / "greenq-demo-worker.log"
    print(f"worker log: {log_path}")
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "worker", "--devices", "cpu"],
            env=dict(os.environ),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        with Client(settings) as client:
            _wait_for_worker(client, worker)
            return _run_jobs(client, job_count)
    finally:
        worker.terminate()
        worker.wait(timeout=120)
        if local_redis is not None:
            local_redis.stop()


def _wait_for_worker(client: Client, worker: subprocess.Popen[bytes]) -> None:
    print("waiting for the worker to load and warm its model…")
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise SystemExit(f"the worker exited with status {worker.returncode}")
        if client.app.control.ping(timeout=1.0):
            return
    raise SystemExit("the worker did not become ready in time")


def _run_jobs(client: Client, job_count: int) -> int:
    specs = [JobSpec(job_type, payload) for job_type, payload in sample_mix(job_count)]
    start = time.perf_counter()
    job_ids = client.submit_many(specs)
    print(f"submitted {len(job_ids)} jobs of all three types\n")
    results: list[JobResult] = []
    for result in client.as_completed(job_ids, timeout_s=600):
        results.append(result)
        print(_line(len(results), len(job_ids), result))
    wall_s = time.perf_counter() - start
    print("\nsummary")
    for line in summarize(results, wall_s).lines():
        print(f"  {line}")
    return 0 if all(r.status.is_success for r in results) else 1


def _line(index: int, total: int, r: JobResult) -> str:
    t = r.timings
    head = f"[{index:>3}/{total}] {r.job_type.value if r.job_type else '?':<11} {r.status.value:<9}"
    if not r.status.is_success:
        return f"{head} {r.error}"
    text = " ".join(r.text.split())[:60]
    return (
        f"{head} batch={r.batch_size:<2} queue {t.queue_s:.2f}s wait {t.batch_wait_s:.2f}s "
        f"compute {t.compute_s:.2f}s e2e {t.end_to_end_s:.2f}s | {text}"
    )
