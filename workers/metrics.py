"""Everything a worker exports to Prometheus, declared once in one registry.

Served on `/metrics` by each worker process (a threads pool: one process, so no
multiprocess mode is needed). Labels come from small fixed sets only; never a job id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import job_types
from shared.job_types import JobType
from shared.policies import BatchPolicy
from shared.results import JobResult, JobStatus

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

# About 10 ms to 10 min: LLM jobs span interactive replies to long batch work.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256)
ENERGY_BUCKETS_J = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000)
CO2E_BUCKETS_G = (1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1)

JOBS = Counter("greenq_jobs", "Jobs finished, by job type and final status.", ["job_type", "status"], registry=REGISTRY)
LATENCY = Histogram(
    "greenq_job_latency_seconds",
    "Submission to result, per job.",
    ["job_type"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "greenq_queue_wait_seconds",
    "Submission to receipt by a worker.",
    ["job_type"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
BATCH_WAIT = Histogram(
    "greenq_batch_wait_seconds",
    "Receipt to the start of the job's batch.",
    ["job_type"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
COMPUTE = Histogram(
    "greenq_compute_seconds",
    "Compute time of the job's batch.",
    ["job_type"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "greenq_batch_size", "Jobs per batch run on the model.", ["model"], buckets=BATCH_SIZE_BUCKETS, registry=REGISTRY
)
CURRENT_BATCH = Gauge("greenq_current_batch_size", "Jobs in the batch computing now (0 when idle).", registry=REGISTRY)
PROMPT_TOKENS = Counter("greenq_prompt_tokens", "Prompt tokens of succeeded jobs.", ["job_type"], registry=REGISTRY)
GENERATED_TOKENS = Counter(
    "greenq_generated_tokens", "Generated tokens of succeeded jobs.", ["job_type"], registry=REGISTRY
)
ENERGY = Counter(
    "greenq_energy_joules",
    "Energy measured by this worker's meter; state is active (in a batch) or idle (between batches).",
    ["component", "source", "state"],
    registry=REGISTRY,
)
JOB_ENERGY = Histogram(
    "greenq_job_energy_joules",
    "Energy attributed to each succeeded job.",
    ["job_type", "source"],
    buckets=ENERGY_BUCKETS_J,
    registry=REGISTRY,
)
JOB_CO2E = Histogram(
    "greenq_job_co2e_grams",
    "Emissions attributed to each succeeded job, grams CO2e.",
    ["job_type", "source"],
    buckets=CO2E_BUCKETS_G,
    registry=REGISTRY,
)
GRID_INTENSITY = Gauge(
    "greenq_grid_intensity_grams_per_kwh", "Grid carbon intensity in use, g CO2e per kWh.", registry=REGISTRY
)
WORKER_READY = Gauge(
    "greenq_worker_ready", "1 once the models are loaded and warm, 0 before and while stopping.", registry=REGISTRY
)
WORKER_INFO = Gauge(
    "greenq_worker_info",
    "Always 1; labels say which worker, device and energy source this is.",
    ["worker", "device", "energy_source"],
    registry=REGISTRY,
)
MODEL_LOAD = Gauge("greenq_model_load_seconds", "Time to load and warm each model.", ["model"], registry=REGISTRY)
POLICY_SIZE = Gauge(
    "greenq_batch_policy_max_batch_size", "Configured max jobs per batch.", ["job_type"], registry=REGISTRY
)
POLICY_WAIT = Gauge(
    "greenq_batch_policy_max_wait_seconds",
    "Configured max wait after a batch's first job.",
    ["job_type"],
    registry=REGISTRY,
)
POLICY_TOKENS = Gauge(
    "greenq_batch_policy_max_tokens", "Configured max padded tokens per batch.", ["job_type"], registry=REGISTRY
)

OOM = Counter("greenq_out_of_memory", "Batches that ran out of memory (each is split and retried).", registry=REGISTRY)
SIZE_CAP = Gauge(
    "greenq_batch_size_cap", "Max batch size lowered after an out-of-memory error; 0 when none.", registry=REGISTRY
)
DEVICE_FAULTS = Counter(
    "greenq_device_faults",
    "Device faults (CUDA errors) after which the worker handed its jobs back and restarted; "
    "counted across the launcher's restarts of this worker, so a scrape after the restart sees it.",
    registry=REGISTRY,
)

GPU_GAUGES = {
    "power_watts": "GPU board power draw (NVML).",
    "utilization_ratio": "GPU utilisation, 0 to 1 (NVML).",
    "memory_used_bytes": "GPU memory in use (NVML).",
}


class GpuCollector(Collector):
    """Reads NVML at scrape time; registered only where an NVML meter runs."""

    def __init__(self, read: object) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self._read()  # type: ignore[operator]
        for key, doc in GPU_GAUGES.items():
            yield GaugeMetricFamily(f"greenq_gpu_{key}", doc, value=values[key])


def record_result(result: JobResult) -> None:
    job_type = result.job_type or "unknown"
    JOBS.labels(job_type, result.status.value).inc()
    if result.status is not JobStatus.succeeded:
        return
    t = result.timings
    LATENCY.labels(job_type).observe(t.end_to_end_s)
    QUEUE_WAIT.labels(job_type).observe(t.queue_s)
    BATCH_WAIT.labels(job_type).observe(t.batch_wait_s)
    COMPUTE.labels(job_type).observe(t.compute_s)
    PROMPT_TOKENS.labels(job_type).inc(result.prompt_tokens)
    GENERATED_TOKENS.labels(job_type).inc(result.generated_tokens)
    if result.energy_j is not None and result.energy_source:
        JOB_ENERGY.labels(job_type, result.energy_source).observe(result.energy_j)
        JOB_CO2E.labels(job_type, result.energy_source).observe(result.co2e_g or 0.0)


def record_energy(component: str, source: str, state: str, joules: float) -> None:
    ENERGY.labels(component, source, state).inc(joules)


def record_policies(policies: Mapping[JobType, BatchPolicy]) -> None:
    for job_type, policy in policies.items():
        POLICY_SIZE.labels(job_type).set(policy.max_batch_size)
        POLICY_WAIT.labels(job_type).set(policy.max_wait_s)
        POLICY_TOKENS.labels(job_type).set(policy.max_batch_tokens)


def initialise_labels() -> None:
    """Expose every job type's series at zero from the start, so rates and alerts see them."""
    for job_type in job_types.names():
        for status in JobStatus:
            JOBS.labels(job_type, status.value)
        for metric in (LATENCY, QUEUE_WAIT, BATCH_WAIT, COMPUTE, PROMPT_TOKENS, GENERATED_TOKENS):
            metric.labels(job_type)


_ready = threading.Event()


def set_ready(ready: bool) -> None:
    """Readiness for both the gauge and the /ready probe."""
    WORKER_READY.set(1 if ready else 0)
    (_ready.set if ready else _ready.clear)()


def is_ready() -> bool:
    return _ready.is_set()


def serve(port: int, ready: Callable[[], bool] = is_ready) -> None:
    """Serve /metrics, /healthz (the process answers) and /ready (200 only once the model is warm)
    on all interfaces, in a daemon thread."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/ready"):
            ok = path == "/healthz" or ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ready\n"]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    server = make_server("0.0.0.0", port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="greenq-metrics", daemon=True).start()


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: no access log
        pass
