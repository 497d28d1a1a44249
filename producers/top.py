"""`greenq top`: queues and workers on one screen, refreshed in place."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from producers.client import Client
from producers.pool import status, status_table
from shared.redis_client import redis_client
from workers.exporter import build_registry

CLEAR = "\x1b[H\x1b[2J"


def queue_table(client: Client) -> str:
    settings = client.settings
    registry = build_registry(
        redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    )
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            values[(s.name, s.labels.get("queue", ""))] = s.value
    lines = [f"{'queue':<22} {'waiting':>8} {'oldest age':>11}"]
    for (name, queue), value in sorted(values.items()):
        if name == "greenq_queue_depth":
            age = values.get(("greenq_queue_oldest_age_seconds", queue), 0.0)
            lines.append(f"{queue:<22} {int(value):>8} {age:>10.1f}s")
    lines.append(f"reserved by workers, unacknowledged: {int(values.get(('greenq_unacked_jobs', ''), 0))}")
    return "\n".join(lines)


def run_top(client: Client, interval_s: float = 2.0, iterations: int | None = None, out: TextIO = sys.stdout) -> None:
    count = 0
    while iterations is None or count < iterations:
        screen = "\n\n".join(
            [
                time.strftime("greenq top — %H:%M:%S  (Ctrl-C to quit)"),
                queue_table(client),
                status_table(status(client.app)),
            ]
        )
        out.write((CLEAR if out.isatty() else "") + screen + "\n")
        out.flush()
        count += 1
        if iterations is None or count < iterations:
            time.sleep(interval_s)
