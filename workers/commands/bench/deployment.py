"""(b) and (c): jobs through a private Redis to a real worker process, and what came back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from greenq.producers.client import Client, JobSpec
from greenq.producers.summary import percentile
from greenq.shared.local_redis import LocalRedis, free_port, start_redis
from greenq.shared.queues import BENCH_NAIVE_QUEUE
from greenq.shared.results import JobResult, JobStatus
from greenq.shared.settings import Settings
from greenq.workers.commands.bench.workload import BenchConfig
from greenq.workers.energy.carbon import co2e_grams

READY_TIMEOUT_S = 300.0


class Deployment:
    """A private Redis and one worker process (greenq's or the naive one) for the bench.

    `worker_env` holds the GREENQ_* variables the worker runs with; the bench's own client
    uses `settings` pointed at the private Redis.
    """

    def __init__(self, settings: Settings, worker_env: dict[str, str], log_dir: Path) -> None:
        self.redis: LocalRedis = start_redis(free_port())
        private = {"broker_url": self.redis.url, "result_backend_url": ""}  # results in the private Redis too
        self.env = {**worker_env, "GREENQ_BROKER_URL": self.redis.url, "GREENQ_RESULT_BACKEND_URL": ""}
        self.settings = settings.model_copy(update=private)
        self.log_dir = log_dir
        self.client = Client(self.settings)
        self.worker: subprocess.Popen[bytes] | None = None

    def start(self, module: str, node: str, device: str) -> None:
        log = (self.log_dir / f"{node.split('@')[0]}.log").open("wb")
        torch_device = "cuda:0" if device.startswith("cuda") else "cpu"
        self.worker = subprocess.Popen(
            [sys.executable, "-m", module, "--node-name", node, "--device", device, "--torch-device", torch_device],
            env={**os.environ, **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.worker.poll() is not None:
                raise RuntimeError(f"{module} exited; see {log.name}")
            if self.client.app.control.ping(destination=[node], timeout=0.5):
                return
        raise RuntimeError(f"{module} did not become ready")

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)
            self.worker.wait(timeout=120)

    def close(self) -> None:
        self.stop_worker()
        self.client.close()
        self.redis.stop()


def worker_env(config: BenchConfig, settings: Settings, model_path: str, templates: Path) -> dict[str, str]:
    """The GREENQ_* variables both bench workers run with: the workload's model, lengths and batch policy."""
    return {
        "GREENQ_MODEL": model_path,
        "GREENQ_DTYPE": config.dtype,
        "GREENQ_PROMPT_TEMPLATES_DIR": str(templates),
        "GREENQ_TORCH_THREADS": str(config.torch_threads),
        "GREENQ_METRICS_PORT": "0",
        "GREENQ_LOG_LEVEL": "WARNING",
        "GREENQ_GENERATION__REPLY__MAX_NEW_TOKENS": str(config.new_tokens),
        "GREENQ_GENERATION__REPLY__MIN_NEW_TOKENS": str(config.new_tokens),
        "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": str(config.batch_size),
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": str(config.max_wait_s),
        "GREENQ_BATCH__REPLY__MAX_BATCH_TOKENS": "10000000",
        "GREENQ_ENERGY_METER": settings.energy_meter,
        "GREENQ_CPU_WATTS_PER_CORE": str(settings.cpu_watts_per_core),
        "GREENQ_CARBON_INTENSITY_G_PER_KWH": str(settings.carbon_intensity_g_per_kwh),
    }


def run_saturation(deploy: Deployment, payloads: list[dict[str, Any]], task: str | None = None) -> dict[str, Any]:
    """Every job at once: to greenq's queue, or as one `task` message per job to the naive queue."""
    client = deploy.client
    start = time.perf_counter()
    if task is None:
        ids = client.submit_many(JobSpec("reply", p) for p in payloads)
    else:
        ids = [
            client.app.send_task(
                task,
                args=[
                    client.prepare(JobSpec("reply", p))
                    .model_copy(update={"job_id": f"naive-{i}-{time.time_ns()}"})
                    .encode()
                ],
                queue=BENCH_NAIVE_QUEUE,
            ).id
            for i, p in enumerate(payloads)
        ]
    results = list(client.as_completed(ids, timeout_s=3600, progress=sys.stderr.isatty()))
    return describe(results, time.perf_counter() - start, deploy.settings)


def run_fixed_rate(deploy: Deployment, payloads: list[dict[str, Any]], rate_per_s: float) -> dict[str, Any]:
    """Jobs submitted one by one at `rate_per_s`, then awaited: latency below saturation."""
    client = deploy.client
    ids: list[str] = []
    start = time.perf_counter()
    for i, payload in enumerate(payloads):
        delay = start + i / rate_per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ids.append(client.submit("reply", payload))
    results = list(client.as_completed(ids, timeout_s=3600))
    summary = describe(results, time.perf_counter() - start, deploy.settings)
    summary["offered_jobs_per_s"] = rate_per_s
    return summary


def describe(results: list[JobResult], wall_s: float, settings: Settings) -> dict[str, Any]:
    ok = [r for r in results if r.status is JobStatus.succeeded]
    e2e = [r.timings.end_to_end_s for r in ok]
    queue = [r.timings.queue_s for r in ok]
    energies = [r.energy_j for r in ok if r.energy_j is not None]
    joules = sum(energies) / len(energies) if energies else float("nan")
    return {
        "jobs": len(results),
        "succeeded": len(ok),
        "wall_s": wall_s,
        "jobs_per_s": len(ok) / wall_s,
        "tokens_per_s": sum(r.generated_tokens for r in ok) / wall_s,
        "latency_s": {f"p{q}": percentile(e2e, q) for q in (50, 95, 99)},
        "queue_s": {f"p{q}": percentile(queue, q) for q in (50, 95, 99)},
        "mean_batch_size": sum(r.batch_size for r in ok) / max(1, len(ok)),
        "joules_per_job": joules,
        "co2e_grams_per_job": co2e_grams(joules, settings.carbon_intensity_g_per_kwh, settings.pue),
        "energy_source": ok[0].energy_source if ok else None,
        "latencies_s": e2e,
    }
