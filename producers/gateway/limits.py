"""Per-tenant rate limits, outstanding-job caps and queue backpressure, kept in Redis so that
several gateways share them."""

from __future__ import annotations

import threading
import time
from typing import Any

from greenq.shared import scripts
from greenq.shared.jobs import JobType
from greenq.shared.keys import OUTSTANDING_KEY_PREFIX, OWNER_KEY_PREFIX, RATE_KEY_PREFIX
from greenq.shared.queue_stats import read_queue_stats

DEPTH_CACHE_S = 0.25
PRUNE_BATCH = 1000


def allow_request(client: Any, tenant: str, limit_per_s: int, cost: int = 1, now: float | None = None) -> bool:
    """A fixed one-second window per tenant; a request costs `cost` (a batch: its number of jobs), and is
    counted only if it fits (`scripts/count_request_if_room.lua`)."""
    second = int(time.time() if now is None else now)
    key = f"{RATE_KEY_PREFIX}{tenant}:{second}"
    count_if_room = scripts.register(client, "count_request_if_room")
    return bool(count_if_room(keys=[key], args=[cost, limit_per_s], client=client))


class Outstanding:
    """Jobs a tenant has submitted that have not finished, scored by submission time (a deferred job: its run_by).

    A job leaves the count once its result is stored, once its owner record is gone (expired with the
    result TTL, or lost), or once its score is older than the result TTL, whichever the gateway sees first.
    """

    def __init__(self, client: Any, backend: Any, ttl_s: int) -> None:
        self._redis = client
        self._backend = backend
        self._ttl_s = ttl_s

    def has_room(self, tenant: str, wanted: int, cap: int) -> bool:
        key = f"{OUTSTANDING_KEY_PREFIX}{tenant}"
        if int(self._redis.zcard(key)) + wanted <= cap:
            return True
        self._prune(key)
        return int(self._redis.zcard(key)) + wanted <= cap

    def _prune(self, key: str) -> None:
        self._redis.zremrangebyscore(key, "-inf", time.time() - self._ttl_s)
        job_ids = [j.decode() for j in self._redis.zrange(key, 0, PRUNE_BATCH - 1)]
        if not job_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(self._backend.get_key_for_task(job_id))
            pipe.exists(f"{OWNER_KEY_PREFIX}{job_id}")
        found = pipe.execute()
        over = [j for j, result, owner in zip(job_ids, found[::2], found[1::2], strict=True) if result or not owner]
        if over:
            self._redis.zrem(key, *over)

    def add(self, tenant: str, scored: dict[str, float]) -> None:
        """Count jobs, each scored by when it is due (Unix s): submission, or a deferred job's run_by."""
        if scored:
            self._redis.zadd(f"{OUTSTANDING_KEY_PREFIX}{tenant}", scored)


class QueueDepth:
    """Jobs waiting per queue (every priority sub-list), cached for a quarter second."""

    def __init__(self, client: Any) -> None:
        self._redis = client
        self._cache: dict[JobType, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, job_type: JobType) -> int:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(job_type)
            if cached and now - cached[0] < DEPTH_CACHE_S:
                return cached[1]
        depth = read_queue_stats(self._redis, [job_type]).queues[0].depth
        with self._lock:
            self._cache[job_type] = (now, depth)
        return depth
