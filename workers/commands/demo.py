"""`greenq demo`: Redis (started if nothing answers), one CPU worker, a realistic mix of jobs
streaming back with timings and energy receipts, and a summary by job type."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from greenq.producers.client import Client, JobSpec
from greenq.producers.report import report_table
from greenq.producers.samples import demo_jobs
from greenq.producers.summary import summarize
from greenq.shared.local_redis import ensure_redis
from greenq.shared.redact import redact_url
from greenq.shared.results import JobResult
from greenq.shared.settings import Settings
from greenq.workers.model.local_model import resolve_model

WORKER_READY_TIMEOUT_S = 300.0


def run_demo(settings: Settings, job_count: int) -> int:
    local_redis = ensure_redis(settings.broker_url, settings.sentinel_master)
    print(f"broker: {redact_url(settings.broker_url)}" + (" (started a local redis-server)" if local_redis else ""))
    print(f"model: {settings.model} → {resolve_model(settings.model, settings.model_cache_dir)}")
    log_path = Path(tempfile.gettempdir()) / "greenq-demo-worker.log"
    print(f"worker log: {log_path}")
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "greenq.workers.commands.cli", "worker", "--devices", "cpu"],
            env=dict(os.environ),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        with Client(settings) as client:
            _wait_for_worker(client, worker)
            return _run_jobs(client, job_count, settings)
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


def _run_jobs(client: Client, job_count: int, settings: Settings) -> int:
    specs = [JobSpec(job_type, payload) for job_type, payload in demo_jobs(job_count)]
    start = time.perf_counter()
    job_ids = client.submit_many(specs)
    print(f"submitted {len(job_ids)} jobs: replies, descriptions and strategies, in English and Chinese\n")
    results: list[JobResult] = []
    for result in client.as_completed(job_ids, timeout_s=600):
        results.append(result)
        print(_line(len(results), len(job_ids), result))
    wall_s = time.perf_counter() - start
    print("\nsummary")
    for line in summarize(results, wall_s).lines():
        print(f"  {line}")
    print()
    print(report_table(results))
    print(_next_steps(settings))
    return 0 if all(r.status.is_success for r in results) else 1


def _line(index: int, total: int, r: JobResult) -> str:
    t = r.timings
    head = f"[{index:>3}/{total}] {r.job_type or '?':<11} {r.status.value:<9}"
    if not r.status.is_success:
        return f"{head} {r.error}"
    receipt = f"{r.energy_j:.2f} J, {r.co2e_g:.5f} gCO2e ({r.energy_source})" if r.energy_j is not None else "-"
    text = " ".join(r.text.split())[:70] + "".join(f"\n      ⚠ {w}" for w in r.warnings)
    return (
        f"{head} batch {r.batch_size:<2} wait {t.batch_wait_s:.2f}s compute {t.compute_s:.2f}s "
        f"e2e {t.end_to_end_s:.2f}s | {receipt}\n      {text}"
    )


def _next_steps(settings: Settings) -> str:
    return f"""
where to look next
  metrics:    the worker serves http://127.0.0.1:{settings.metrics_port}/metrics while it runs
              (greenq exporter adds queue depth; greenq report summarises results or metrics)
  dashboards: ops/grafana/ (Grafana) and ops/prometheus/ (scrape config, alerts) — README "Monitoring"
  real model: GREENQ_MODEL=<hub name or local folder of a small instruction-tuned model> bash ops/dev/demo.sh
              (the bundled store-assistant is a 4M-parameter model trained here in minutes: on topic, not wise)
  energy:     on this machine J/job is an estimate from CPU time; on NVIDIA GPUs greenq reads NVML
"""
