"""`greenq scheduler`: the process around `Scheduler`: Redis, the forecast, publishing, /metrics, signals."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery
from prometheus_client import CollectorRegistry, start_http_server

from greenq.shared import job_types, start_marks
from greenq.shared.celery_app import make_celery, send_job, worker_statuses
from greenq.shared.deferral import DeferredStore
from greenq.shared.envelope import Envelope
from greenq.shared.redis_client import redis_client
from greenq.shared.settings import Settings
from greenq.workers.energy.carbon import configured_intensity
from greenq.workers.scheduler.capacity import Capacity
from greenq.workers.scheduler.metrics import SchedulerMetrics
from greenq.workers.scheduler.service import Scheduler

log = logging.getLogger(__name__)

_NO_AUTO_FLUSH = 1 << 30  # kombu's batch limit counts Redis commands; one call is one batch, flushed at its end


def celery_publisher(app: Celery, settings: Settings, backend: Any) -> Callable[[Sequence[Envelope]], set[str]]:
    """Publish released envelopes to their queues, skipping any a worker already received or finished.

    One call is one pipelined round trip to a Redis broker (kombu publishes one at a time elsewhere).
    """

    def publish(envelopes: Sequence[Envelope]) -> set[str]:
        pipe = backend.pipeline(transaction=False)
        for envelope in envelopes:
            pipe.exists(start_marks.start_mark_key(envelope.job_id), app.backend.get_key_for_task(envelope.job_id))
        taken = {e.job_id for e, found in zip(envelopes, pipe.execute(), strict=True) if found}
        with app.producer_or_acquire() as producer, producer.batch(_NO_AUTO_FLUSH):
            for envelope in envelopes:
                if envelope.job_id not in taken:
                    send_job(app, envelope, settings.broker_url, producer)
        return taken

    return publish


def build_scheduler(settings: Settings, metrics: SchedulerMetrics | None = None) -> tuple[Scheduler, Celery]:
    app = make_celery(settings, name="greenq-scheduler", producer=True)
    backend = redis_client(settings.backend_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    source = configured_intensity(settings)
    deferrable = {spec.name for spec in job_types.specs() if spec.carbon_aware}
    capacity = Capacity(
        settings.scheduler_capacity_jobs_per_hour,
        settings.scheduler_capacity_share,
        deferrable,
        read_statuses=lambda: worker_statuses(app),
    )
    scheduler = Scheduler(
        settings, DeferredStore(backend), source, celery_publisher(app, settings, backend), capacity, metrics
    )
    return scheduler, app


def run_scheduler(settings: Settings, once: bool = False) -> None:
    """Tick every GREENQ_SCHEDULER_TICK_S until SIGTERM or SIGINT; `once`: one tick, then return."""
    metrics = SchedulerMetrics(CollectorRegistry())
    scheduler, app = build_scheduler(settings, metrics)
    if not once and settings.scheduler_port:
        start_http_server(settings.scheduler_port, registry=metrics.registry)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("scheduler: ticking every %.0f s, slots of %.0f s", settings.scheduler_tick_s, settings.scheduler_slot_s)
    try:
        while True:
            try:
                report = scheduler.tick()
                if report.released or report.recovered:
                    log.info(
                        "released %d deferred jobs (%s); %d leases taken back",
                        len(report.released),
                        ", ".join(sorted({r.reason for r in report.released})) or "-",
                        report.recovered,
                    )
            except Exception:  # Redis down, a bug: log it and try again next tick
                log.exception("scheduler tick failed")
            if once or stop.wait(settings.scheduler_tick_s):
                return
    finally:
        app.close()
