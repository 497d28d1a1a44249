"""Everything a worker exports to Prometheus, declared once on the registry it is given.

Served on `/metrics` by each worker process (a threads pool: one process, so no
multiprocess mode is needed). Labels come from small fixed sets only; never a job id.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from greenq.shared import job_types
from greenq.shared.job_types import JobType
from greenq.shared.policies import BatchPolicy
from greenq.shared.results import JobResult, JobStatus
from greenq.workers.edge.leases import LOST_CAUSES

# About 10 ms to 2 h: LLM jobs span interactive replies to hour-long strategy objectives.
LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128, 256)
ENERGY_BUCKETS_J = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 50, 100, 500, 1000, 5000)
ALL_INTERFACES = ipaddress.IPv4Address("0.0.0.0")
CO2E_BUCKETS_G = (1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1)

GPU_GAUGES = {
    "power_watts": "GPU board power draw (NVML).",
    "utilization_ratio": "GPU utilisation, 0 to 1 (NVML).",
    "memory_used_bytes": "GPU memory in use (NVML).",
}


class WorkerMetrics:
    """One worker's metrics, on the registry it is given (each test may bring its own).

    >>> metrics = WorkerMetrics(CollectorRegistry())
    >>> metrics.record_result(result)
    >>> serve(9300, metrics.registry, ready=threading.Event().is_set)
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._objectives_s: dict[str, float] = {}
        ProcessCollector(registry=registry)
        by_type = ["job_type"]
        self.jobs = Counter(
            "greenq_jobs", "Jobs finished, by job type and final status.", ["job_type", "status"], registry=registry
        )
        self.latency = Histogram(
            "greenq_job_latency_seconds",
            "Submission to result, per job.",
            by_type,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batching_mode = Gauge(
            "greenq_batching_mode",
            "1 for how this worker batches: static (whole batches) or continuous (GREENQ_RUNTIME_MODE; auto measures).",
            ["mode"],
            registry=registry,
        )
        self.first_token = Histogram(
            "greenq_time_to_first_token_seconds",
            "Submission (a deferred job: its release) to the job's first decoded text, per job.",
            by_type,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "greenq_queue_wait_seconds",
            "Submission to receipt by a worker.",
            by_type,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_wait = Histogram(
            "greenq_batch_wait_seconds",
            "Receipt to the start of the job's batch.",
            by_type,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.compute = Histogram(
            "greenq_compute_seconds",
            "Compute time of the job's batch.",
            by_type,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "greenq_batch_size",
            "Jobs per batch run on the model.",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.current_batch = Gauge(
            "greenq_current_batch_size", "Jobs in the batch computing now (0 when idle).", registry=registry
        )
        self.prompt_tokens = Counter(
            "greenq_prompt_tokens", "Prompt tokens of succeeded jobs.", by_type, registry=registry
        )
        self.generated_tokens = Counter(
            "greenq_generated_tokens", "Generated tokens of succeeded jobs.", by_type, registry=registry
        )
        self.energy = Counter(
            "greenq_energy_joules",
            "Energy measured by this worker's meter; state is active (in a batch) or idle (between batches).",
            ["component", "source", "state"],
            registry=registry,
        )
        self.job_energy = Histogram(
            "greenq_job_energy_joules",
            "Energy attributed to each succeeded job.",
            ["job_type", "source"],
            buckets=ENERGY_BUCKETS_J,
            registry=registry,
        )
        self.job_co2e = Histogram(
            "greenq_job_co2e_grams",
            "Emissions attributed to each succeeded job, grams CO2e.",
            ["job_type", "source"],
            buckets=CO2E_BUCKETS_G,
            registry=registry,
        )
        self.co2e_avoided = Counter(
            "greenq_co2e_avoided_grams",
            "Carbon deferred jobs avoided by running on a cleaner grid than at submission, grams CO2e.",
            ["job_type"],
            registry=registry,
        )
        self.co2e_added = Counter(
            "greenq_co2e_added_grams",
            "Carbon deferred jobs added by running on a dirtier grid than at submission (forecast error), grams CO2e.",
            ["job_type"],
            registry=registry,
        )
        self.grid_intensity = Gauge(
            "greenq_grid_intensity_grams_per_kwh", "Grid carbon intensity in use, g CO2e per kWh.", registry=registry
        )
        self.worker_ready = Gauge(
            "greenq_worker_ready",
            "1 once the models are loaded and warm, 0 before and while stopping.",
            registry=registry,
        )
        self.worker_info = Gauge(
            "greenq_worker_info",
            "Always 1; labels say which worker, device and energy source this is.",
            ["worker", "device", "energy_source"],
            registry=registry,
        )
        self.model_load = Gauge(
            "greenq_model_load_seconds", "Time to load and warm each model.", ["model"], registry=registry
        )
        self.policy_size = Gauge(
            "greenq_batch_policy_max_batch_size", "Configured max jobs per batch.", by_type, registry=registry
        )
        self.policy_wait = Gauge(
            "greenq_batch_policy_max_wait_seconds",
            "Configured max wait after a batch's first job.",
            by_type,
            registry=registry,
        )
        self.policy_tokens = Gauge(
            "greenq_batch_policy_max_tokens", "Configured max padded tokens per batch.", by_type, registry=registry
        )
        self.out_of_memory = Counter(
            "greenq_out_of_memory", "Batches that ran out of memory (each is split and retried).", registry=registry
        )
        self.size_cap = Gauge(
            "greenq_batch_size_cap",
            "Max batch size lowered after an out-of-memory error; 0 when none.",
            registry=registry,
        )
        self.objective = Gauge(
            "greenq_latency_objective_seconds",
            "Each job type's p95 submission-to-result objective (GREENQ_LATENCY_OBJECTIVE_S).",
            by_type,
            registry=registry,
        )
        self.within_objective = Counter(
            "greenq_jobs_within_objective",
            "Succeeded jobs whose submission-to-result time met their type's objective.",
            by_type,
            registry=registry,
        )
        self.policy_mode = Gauge(
            "greenq_batch_policy_mode",
            "1 for the batch policy mode in force per job type (fixed or adaptive).",
            ["job_type", "mode"],
            registry=registry,
        )
        self.hold = Histogram(
            "greenq_batch_hold_seconds",
            "How long each batch was held open: its first job's arrival in the batcher to the batch's start.",
            by_type,
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.energy_predicted = Counter(
            "greenq_batch_energy_predicted_joules",
            "Energy the adaptive policy predicted for the batches it planned (compare with the measured counter).",
            by_type,
            registry=registry,
        )
        self.energy_measured = Counter(
            "greenq_batch_energy_measured_joules",
            "Measured energy of the batches that had a prediction.",
            by_type,
            registry=registry,
        )
        self.arrival_rate = Gauge(
            "greenq_arrival_rate_per_second",
            "Jobs per second arriving at this worker's batcher, as the adaptive policy estimates it.",
            by_type,
            registry=registry,
        )
        self.leases_lost = Counter(
            "greenq_job_leases_lost",
            "Job leases this worker found lost while it held them, by what it saw: paused (its renewer did not "
            "run for longer than the lease), redis_unreachable (renewals failed that long) or lapsed (neither); "
            "its jobs not yet in a batch were left to their new holder.",
            ["cause"],
            registry=registry,
        )
        self.observer_errors = Counter(
            "greenq_observer_errors",
            "Exceptions a batch observer raised, by its class and the moment (logged; the batch went on).",
            ["observer", "moment"],
            registry=registry,
        )
        self.device_faults = Counter(
            "greenq_device_faults",
            "Device faults (CUDA errors) after which the worker handed its jobs back and restarted; "
            "counted across the launcher's restarts of this worker, so a scrape after the restart sees it.",
            registry=registry,
        )

    def initialise_labels(self) -> None:
        """Expose every job type's series at zero from the start, so rates and alerts see them."""
        for cause in LOST_CAUSES:
            self.leases_lost.labels(cause)
        for job_type in job_types.names():
            for status in JobStatus:
                self.jobs.labels(job_type, status.value)
            for metric in (
                self.latency,
                self.queue_wait,
                self.batch_wait,
                self.compute,
                self.first_token,
                self.prompt_tokens,
                self.generated_tokens,
                self.co2e_avoided,
                self.co2e_added,
            ):
                metric.labels(job_type)

    def record_objectives(self, objectives_s: Mapping[JobType, float]) -> None:
        self._objectives_s = dict(objectives_s)
        for job_type, objective_s in objectives_s.items():
            self.objective.labels(job_type).set(objective_s)
            self.within_objective.labels(job_type)

    def record_result(self, result: JobResult) -> None:
        job_type = result.job_type or "unknown"
        self.jobs.labels(job_type, result.status.value).inc()
        if result.status is not JobStatus.succeeded:
            return
        t = result.timings
        self.latency.labels(job_type).observe(t.end_to_end_s)
        objective_s = self._objectives_s.get(job_type)
        if objective_s is not None and t.end_to_end_s <= objective_s:
            self.within_objective.labels(job_type).inc()
        self.queue_wait.labels(job_type).observe(t.queue_s)
        self.batch_wait.labels(job_type).observe(t.batch_wait_s)
        self.compute.labels(job_type).observe(t.compute_s)
        if t.first_token_s is not None:
            self.first_token.labels(job_type).observe(t.first_token_s)
        self.prompt_tokens.labels(job_type).inc(result.prompt_tokens)
        self.generated_tokens.labels(job_type).inc(result.generated_tokens)
        if result.energy_j is not None and result.energy_source:
            self.job_energy.labels(job_type, result.energy_source).observe(result.energy_j)
            self.job_co2e.labels(job_type, result.energy_source).observe(result.co2e_g or 0.0)
        if result.co2e_avoided_g is not None:
            self.co2e_avoided.labels(job_type).inc(max(0.0, result.co2e_avoided_g))
            self.co2e_added.labels(job_type).inc(max(0.0, -result.co2e_avoided_g))

    def record_energy(self, component: str, source: str, state: str, joules: float) -> None:
        self.energy.labels(component, source, state).inc(joules)

    def record_policies(self, policies: Mapping[JobType, BatchPolicy]) -> None:
        for job_type, policy in policies.items():
            for mode in ("fixed", "adaptive"):
                self.policy_mode.labels(job_type, mode).set(1 if policy.mode == mode else 0)
            self.policy_size.labels(job_type).set(policy.max_batch_size)
            self.policy_wait.labels(job_type).set(policy.max_wait_s)
            self.policy_tokens.labels(job_type).set(policy.max_batch_tokens)

    def watch_readiness(self, is_ready: Callable[[], bool]) -> None:
        """The ready gauge reads the worker's one readiness flag at scrape time."""
        self.worker_ready.set_function(lambda: 1 if is_ready() else 0)

    def watch_gpu(self, read: Callable[[], Mapping[str, float]]) -> None:
        """Export the GPU gauges, read at scrape time (NVML workers only)."""
        self.registry.register(GpuCollector(read))


class GpuCollector(Collector):
    """Reads NVML at scrape time; registered only where an NVML meter runs."""

    def __init__(self, read: Callable[[], Mapping[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self._read()
        for key, doc in GPU_GAUGES.items():
            yield GaugeMetricFamily(f"greenq_gpu_{key}", doc, value=values[key])


def serve(
    port: int,
    registry: CollectorRegistry,
    ready: Callable[[], bool],
    host: ipaddress.IPv4Address | ipaddress.IPv6Address = ALL_INTERFACES,
) -> WSGIServer:
    """Serve /metrics, /healthz (the process answers) and /ready (200 only while `ready()`) on `host`
    (GREENQ_METRICS_HOST), in a daemon thread; returns the server (`shutdown()` stops it)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/ready"):
            ok = path == "/healthz" or ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ready\n"]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    # prometheus_client's start_http_server serves its metrics app alone, so its server class is used
    # directly; its quiet request handler is private, hence this one.
    server_class = _IPv6Server if host.version == 6 else ThreadingWSGIServer
    server = make_server(str(host), port, app, server_class, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="greenq-metrics", daemon=True).start()
    return server


class _IPv6Server(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes every few seconds: no access log
        pass
