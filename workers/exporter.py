"""`greenq exporter`: queue depth and the oldest waiting job's age, straight from Redis.

Runs apart from the workers, so the backlog is visible when no worker runs — exactly
what an autoscaler needs. Depth counts kombu's priority sub-lists; jobs a worker has
reserved but not finished sit in kombu's `unacked` hash and are exported apart.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import job_types
from shared.queues import queue_name, redis_priority_lists
from shared.redis_client import DEFAULT_SENTINEL_MASTER, redis_client

log = logging.getLogger(__name__)
UNACKED_KEY = "unacked"  # kombu's Redis transport default


def submitted_at(raw: bytes) -> float | None:
    """The envelope's submission time inside one kombu Redis message, or None if unreadable."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return float(args[0]["submitted_at"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class QueueCollector(Collector):
    def __init__(self, client: redis.Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily("greenq_queue_depth", "Jobs waiting in each queue, all priorities.", labels=["queue"])
        age = GaugeMetricFamily(
            "greenq_queue_oldest_age_seconds",
            "Age of the oldest job waiting in each queue (0 when empty).",
            labels=["queue"],
        )
        up = GaugeMetricFamily("greenq_broker_up", "1 if the exporter reached Redis on this scrape.")
        unacked = GaugeMetricFamily("greenq_unacked_jobs", "Jobs reserved by workers and not yet acknowledged.")
        try:
            now = self._clock()
            for job_type in job_types.names():
                queue = queue_name(job_type)
                lists = redis_priority_lists(queue)
                pipe = self._redis.pipeline()
                for name in lists:
                    pipe.llen(name)
                    pipe.lindex(name, -1)  # LPUSH'd, BRPOP'd: the oldest is at the right end
                replies: list[Any] = pipe.execute()
                depth.add_metric([queue], sum(int(n) for n in replies[0::2]))
                times = [t for raw in replies[1::2] if raw is not None and (t := submitted_at(raw)) is not None]
                age.add_metric([queue], max(0.0, now - min(times)) if times else 0.0)
            unacked.add_metric([], int(self._redis.hlen(UNACKED_KEY)))
            up.add_metric([], 1)
        except redis.RedisError as exc:
            log.warning("could not read queues: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        yield from (depth, age, unacked, up)


def build_registry(client: redis.Redis) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QueueCollector(client))
    return registry


def run_exporter(
    broker_url: str, port: int, ca_file: Path | None = None, sentinel_master: str = DEFAULT_SENTINEL_MASTER
) -> None:
    client = redis_client(broker_url, ca_file, sentinel_master=sentinel_master)
    start_http_server(port, registry=build_registry(client))
    log.info("exporter serving :%d/metrics", port)
    while True:
        time.sleep(3600)
