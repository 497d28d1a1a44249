"""`greenq exporter`: queue depth and the oldest waiting job's age, straight from Redis.

Runs apart from the workers, so the backlog is visible when no worker runs — exactly
what an autoscaler needs. Depth counts kombu's priority sub-lists; jobs a worker has
reserved but not finished sit in kombu's `unacked` hash and are exported apart.
Each job type's latency objective is exported too, labelled with its queue, so that
alerts compare queue age with it even while no worker runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from greenq.shared.job_types import JobType
from greenq.shared.queue_stats import read_queue_stats
from greenq.shared.queues import queue_name
from greenq.shared.redis_client import DEFAULT_SENTINEL_MASTER, redis_client

log = logging.getLogger(__name__)


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
            stats = read_queue_stats(self._redis, now=self._clock())
        except redis.RedisError as exc:
            log.warning("could not read queues: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        for queue in stats.queues:
            depth.add_metric([queue.queue], queue.depth)
            age.add_metric([queue.queue], queue.oldest_age_s)
        unacked.add_metric([], stats.unacked)
        up.add_metric([], 1)
        yield from (depth, age, unacked, up)


class ObjectiveCollector(Collector):
    """`greenq_latency_objective_seconds{job_type, queue}`: workers export it without `queue`, and only while up."""

    def __init__(self, objectives_s: Mapping[JobType, float]) -> None:
        self._objectives_s = dict(objectives_s)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        objective = GaugeMetricFamily(
            "greenq_latency_objective_seconds",
            "Each job type's p95 submission-to-result objective (GREENQ_LATENCY_OBJECTIVE_S).",
            labels=["job_type", "queue"],
        )
        for job_type, objective_s in sorted(self._objectives_s.items()):
            objective.add_metric([job_type, queue_name(job_type)], objective_s)
        yield objective


def build_registry(client: redis.Redis, objectives_s: Mapping[JobType, float]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(QueueCollector(client))
    registry.register(ObjectiveCollector(objectives_s))
    return registry


def run_exporter(
    broker_url: str,
    port: int,
    objectives_s: Mapping[JobType, float],
    ca_file: Path | None = None,
    sentinel_master: str = DEFAULT_SENTINEL_MASTER,
) -> None:
    client = redis_client(broker_url, ca_file, sentinel_master=sentinel_master)
    start_http_server(port, registry=build_registry(client, objectives_s))
    log.info("exporter serving :%d/metrics", port)
    while True:
        time.sleep(3600)
