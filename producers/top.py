"""`greenq top`: queues and workers on one screen, refreshed in place."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import redis

from greenq.producers.client import Client
from greenq.producers.pool import STATUS_TIMEOUT_S, status_table
from greenq.shared.celery_app import worker_statuses
from greenq.shared.deferral import DeferredStore
from greenq.shared.queue_stats import read_queue_stats
from greenq.shared.redis_client import redis_client
from greenq.shared.settings import Settings

CLEAR = "\x1b[H\x1b[2J"


def queue_table(client: Client) -> str:
    settings = client.settings
    try:
        stats = read_queue_stats(
            redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
        )
    except redis.RedisError as exc:  # as the exporter does: say so and keep refreshing
        return f"queues: broker unreachable ({exc})"
    lines = [f"{'queue':<22} {'waiting':>8} {'oldest age':>11}"]
    for queue in sorted(stats.queues, key=lambda q: q.queue):
        lines.append(f"{queue.queue:<22} {queue.depth:>8} {queue.oldest_age_s:>10.1f}s")
    lines.append(f"reserved by workers, unacknowledged: {stats.unacked}")
    lines.append(deferred_line(settings))
    return "\n".join(lines)


def deferred_line(settings: Settings) -> str:
    """Jobs waiting for the carbon-aware scheduler, by type (on the result backend)."""
    try:
        backend = redis_client(settings.backend_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
        waiting = DeferredStore(backend).waiting_by_type()
    except redis.RedisError as exc:
        return f"deferred: result backend unreachable ({exc})"
    counts = ", ".join(f"{job_type} {n}" for job_type, n in sorted(waiting.items()) if n) or "none"
    return f"deferred, waiting for the scheduler: {counts}"


def run_top(client: Client, interval_s: float = 2.0, iterations: int | None = None, out: TextIO = sys.stdout) -> None:
    count = 0
    while iterations is None or count < iterations:
        screen = "\n\n".join(
            [
                time.strftime("greenq top — %H:%M:%S  (Ctrl-C to quit)"),
                queue_table(client),
                status_table(worker_statuses(client.app, STATUS_TIMEOUT_S)),
            ]
        )
        out.write((CLEAR if out.isatty() else "") + screen + "\n")
        out.flush()
        count += 1
        if iterations is None or count < iterations:
            time.sleep(interval_s)
