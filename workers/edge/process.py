"""One worker process: load and warm the models, then consume with a Celery threads pool.

Started by the launcher (`greenq worker`) with CUDA_VISIBLE_DEVICES already set. Task
threads only wait on the batcher, so the pool is threads, sized to keep the next batch
filling while one computes; the model itself runs in the batcher thread alone.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from functools import partial
from typing import Any

import redis
from celery.signals import task_received, worker_ready, worker_shutting_down
from celery.worker import state as worker_state
from prometheus_client import CollectorRegistry

from greenq.shared import redis_transport
from greenq.shared.attempts import AttemptCounter
from greenq.shared.celery_app import make_celery
from greenq.shared.job_types import JobType
from greenq.shared.queues import is_redis_url, job_type_of_task, parse_queues, queue_name
from greenq.shared.redact import redact_url
from greenq.shared.redis_client import redis_client
from greenq.shared.results import JobResult
from greenq.shared.settings import Settings
from greenq.shared.token_stream import TokenStreams
from greenq.workers.edge import control
from greenq.workers.edge.backlog import BacklogProbe
from greenq.workers.edge.consumer import DeadLetteringConsumer
from greenq.workers.edge.control import WorkerContext
from greenq.workers.edge.handler import JobHandler, WorkerIdentity
from greenq.workers.edge.leases import JobLeases
from greenq.workers.edge.metrics import WorkerMetrics, serve
from greenq.workers.edge.observers import AttemptObserver, ComputationLog, MetricsObserver, RestartOnDeviceFault
from greenq.workers.edge.streaming import TokenPublisher
from greenq.workers.energy.accountant import EnergyAccountant
from greenq.workers.energy.carbon import configured_intensity
from greenq.workers.energy.meters.detect import detect_meter
from greenq.workers.energy.meters.nvml import NvmlMeter
from greenq.workers.model.chaos import ChaosRuntime
from greenq.workers.model.local_model import resolve_model
from greenq.workers.model.runtime import HFRuntime, warm_up
from greenq.workers.model.types import ModelRuntime
from greenq.workers.serving.batcher import Batcher
from greenq.workers.serving.breaker import DEVICE_FAULT_EXIT_CODE
from greenq.workers.serving.observers import BatchObserver

log = logging.getLogger("greenq.worker")


def load_runtimes(
    settings: Settings, queues: list[JobType], torch_device: str, metrics: WorkerMetrics
) -> dict[str, ModelRuntime]:
    """Each distinct model the served job types need, loaded once and warmed up."""
    runtimes: dict[str, ModelRuntime] = {}
    for ref in dict.fromkeys(settings.model_for(t) for t in queues):
        start = time.perf_counter()
        runtime = HFRuntime(resolve_model(ref, settings.model_cache_dir), torch_device, settings.dtype, label=ref)
        load_s = time.perf_counter() - start
        warm_s = warm_up(runtime)
        log.info("loaded %s on %s in %.1f s; warm-up took %.2f s", ref, torch_device, load_s, warm_s)
        metrics.model_load.labels(ref).set(load_s + warm_s)
        runtimes[ref] = runtime
    return runtimes


def energy_accountant(settings: Settings, on_gpu: bool, metrics: WorkerMetrics) -> EnergyAccountant:
    meter = detect_meter(settings.energy_meter, on_gpu, settings.rapl_root, settings.cpu_watts_per_core)
    intensity = configured_intensity(settings)
    log.info("energy source: %s; carbon intensity: %s", meter.source, intensity.name)
    if isinstance(meter, NvmlMeter):
        metrics.watch_gpu(meter.gauges)
    return EnergyAccountant(meter, intensity, settings.pue, sink=metrics.record_energy)


def thread_count(settings: Settings, queues: list[JobType]) -> int:
    """Enough task threads for one batch computing and the next one filling."""
    if settings.worker_threads:
        return settings.worker_threads
    return 2 * max(settings.batch[t].max_batch_size for t in queues) + 2


def _on_shutdown(batcher: Batcher, ready: threading.Event, stopping: threading.Event) -> None:
    """Warm shutdown: the batch in progress finishes; jobs not yet in a batch go back to the queue."""
    stopping.set()
    ready.clear()
    handed_back = batcher.drain()
    log.info("stopping: %d buffered jobs handed back to the queue", handed_back)


def _announce(batcher: Batcher, request: Any = None, **_: Any) -> None:
    """A job message reached this worker: its forming batch may wait for it (`Batcher.expect`)."""
    job_type = job_type_of_task(getattr(request, "name", "") or "")
    if job_type is not None:
        batcher.expect(request.id, job_type)


def observers(
    settings: Settings,
    attempts: AttemptCounter,
    backend: redis.Redis,
    metrics: WorkerMetrics,
    ready: threading.Event,
    publisher: TokenPublisher | None = None,
) -> list[BatchObserver]:
    """The worker's batch observers, in the order they run."""
    chosen: list[BatchObserver] = [AttemptObserver(attempts)]
    if settings.chaos.log_computations:
        chosen.append(ComputationLog(backend))
    if publisher is not None:
        chosen.append(publisher)
    return [*chosen, MetricsObserver(metrics), RestartOnDeviceFault(ready)]


def warn_if_evicting(settings: Settings) -> None:
    """Redis must never evict queue keys: warn unless maxmemory-policy is noeviction."""
    if not is_redis_url(settings.broker_url):
        return
    try:
        client = redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
        policy = client.config_get("maxmemory-policy")
    except redis.RedisError as exc:  # CONFIG is often disabled on managed Redis
        log.info("could not read the broker's maxmemory-policy (%s); make sure it is noeviction", exc)
        return
    value = policy.get("maxmemory-policy")
    if value and value != "noeviction":
        log.warning(
            "the broker's maxmemory-policy is %r: Redis may evict queued jobs under memory pressure. "
            "Set maxmemory-policy noeviction.",
            value,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="greenq-worker-process")
    parser.add_argument("--device", default="cpu", help="physical device label, e.g. cuda:3")
    parser.add_argument("--torch-device", default="cpu", help="device as torch sees it in this process")
    parser.add_argument("--node-name", default="cpu@%h")
    parser.add_argument("--queues", default="")
    parser.add_argument("--model", default=None)
    parser.add_argument("--metrics-port", type=int, default=None, help="default: GREENQ_METRICS_PORT; 0 disables")
    parser.add_argument("--device-faults", type=int, default=0, help="device faults before this start (launcher)")
    args = parser.parse_args(argv)

    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"model": args.model})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    queues = parse_queues(args.queues)

    redis_transport.install()
    ready = threading.Event()  # the one readiness flag: the gauge, /ready and `greenq pool status` read it
    metrics = WorkerMetrics(CollectorRegistry())
    metrics.watch_readiness(ready.is_set)
    metrics_port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if metrics_port:
        serve(metrics_port, metrics.registry, ready.is_set, settings.metrics_host)
        log.info("metrics on %s:%d/metrics", settings.metrics_host, metrics_port)
    metrics.initialise_labels()
    metrics.record_policies(settings.batch)
    metrics.record_objectives(settings.latency_objective_s)
    metrics.device_faults.inc(args.device_faults)

    def load() -> dict[str, ModelRuntime]:
        # Only here, on the batch thread: a second OpenMP pool in the main thread costs ~15% per batch.
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        runtimes = load_runtimes(settings, queues, args.torch_device, metrics)
        if settings.chaos.enabled:
            log.warning("CHAOS fault injection is on: %s", settings.chaos)
            return {ref: ChaosRuntime(rt, settings.chaos) for ref, rt in runtimes.items()}
        return runtimes

    energy = energy_accountant(settings, args.torch_device.startswith("cuda"), metrics)
    metrics.grid_intensity.set_function(energy.current_intensity)
    metrics.worker_info.labels(args.node_name, args.device, energy.meter.source).set(1)
    app = make_celery(settings)
    attempts = AttemptCounter(app.backend.client, settings.result_ttl_s)
    threads = thread_count(settings, queues)
    probe: BacklogProbe | None = None
    publisher = None
    if settings.stream.enabled:
        streams = TokenStreams(app.backend.client, settings.stream.max_entries, settings.result_ttl_s)
        publisher = TokenPublisher(streams, settings.stream.flush_interval_s).start()
    leases = JobLeases(
        app.backend.client,
        settings.consumer_lease_s,
        owner=args.node_name,
        on_lost=lambda count, cause: metrics.leases_lost.labels(cause).inc(count),
    ).start()
    batcher = Batcher(
        {},
        settings.batch,
        energy=energy,
        oom_backoff_s=settings.oom_backoff_s,
        observers=observers(settings, attempts, app.backend.client, metrics, ready, publisher),
        objectives_s=settings.latency_objective_s,
        backlog=lambda: probe.takeable() if probe is not None else {},
        mode=settings.runtime_mode,
        lease_check=leases.lost,
        on_observer_error=lambda observer, moment: metrics.observer_errors.labels(observer, moment).inc(),
    )
    if is_redis_url(settings.broker_url):
        broker = redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
        probe = BacklogProbe(
            broker,
            queues,
            free_slots=lambda: threads - len(worker_state.reserved_requests),
        ).start()
    for job_type in queues:
        metrics.arrival_rate.labels(job_type).set_function(partial(batcher.arrivals_per_s, job_type))
    metrics.size_cap.set_function(lambda: batcher.size_cap() or 0)
    batcher.start(load)  # torch lives on the batch thread alone: loading, warm-up, generation
    runtimes = batcher.wait_ready()
    metrics.batching_mode.labels(batcher.mode).set(1)
    metrics.record_policies(batcher.policies())  # what is in force: continuous mode runs adaptive as fixed
    metrics.current_batch.set_function(lambda: batcher.current_batch_size)
    handler = JobHandler(settings, runtimes, batcher, WorkerIdentity(worker=args.node_name, device=args.device))
    from greenq.workers.edge.tasks import TaskContext, register_job_tasks

    context = WorkerContext(node=args.node_name, device=args.device, batcher=batcher, ready=ready, metrics=metrics)
    control.install(context)

    def finished(result: JobResult) -> None:
        metrics.record_result(result)
        context.job_finished()

    stopping = threading.Event()
    register_job_tasks(app, TaskContext(handler, settings, attempts, leases, finished, stopping))
    log.info("%s consuming %s from %s", args.node_name, ",".join(queues), redact_url(settings.broker_url))
    worker = app.Worker(
        hostname=args.node_name,
        queues=[queue_name(q) for q in queues],
        pool="threads",
        concurrency=threads,
        loglevel=settings.log_level,
        without_mingle=True,
        without_gossip=True,
        consumer_cls=DeadLetteringConsumer,  # Celery takes the class itself (kombu's symbol_by_name passes it through)
    )
    worker_ready.connect(lambda **_: ready.set(), weak=False)
    task_received.connect(partial(_announce, batcher), weak=False)
    worker_shutting_down.connect(lambda **_: _on_shutdown(batcher, ready, stopping), weak=False)
    warn_if_evicting(settings)
    worker.start()  # blocks; SIGTERM → warm shutdown: task threads finish their jobs first
    batcher.stop()
    if publisher is not None:
        publisher.stop()
    leases.stop()
    if probe is not None:
        probe.stop()
    energy.meter.close()
    if batcher.device_fault is not None:  # every task thread has rejected its message (requeue) by now
        log.error("exiting with %d after a device fault: the launcher restarts this worker", DEVICE_FAULT_EXIT_CODE)
        return DEVICE_FAULT_EXIT_CODE
    return int(worker.exitcode or 0)


if __name__ == "__main__":
    sys.exit(main())
