"""Per-tenant rate limits, outstanding-job caps and queue backpressure, kept in Redis so that
several gateways share them."""

from __future__ import annotations

import threading
import time
from typing import Any

from shared.jobs import JobType
from shared.queues import queue_name, redis_priority_lists

RATE_KEY_PREFIX = "greenq:rate:"
OUTSTANDING_KEY_PREFIX = "greenq:outstanding:"
DEPTH_CACHE_S = 0.25


def allow_request(client: Any, tenant: str, limit_per_s: int, now: float | None = None) -> bool:
    """A fixed one-second window per tenant."""
    second = int(time.time() if now is None else now)
    key = f"{RATE_KEY_PREFIX}{tenant}:{second}"
    pipe = client.pipeline()
    pipe.incr(key)
    pipe.expire(key, 2)
    count = int(pipe.execute()[0])
    return count <= limit_per_s


class Outstanding:
    """Jobs a tenant has submitted whose results nobody has seen finish yet."""

    def __init__(self, client: Any, backend: Any) -> None:
        self._redis = client
        self._backend = backend

    def has_room(self, tenant: str, wanted: int, cap: int) -> bool:
        key = f"{OUTSTANDING_KEY_PREFIX}{tenant}"
        if int(self._redis.zcard(key)) + wanted <= cap:
            return True
        self._prune(key)
        return int(self._redis.zcard(key)) + wanted <= cap

    def _prune(self, key: str) -> None:
        job_ids = [j.decode() for j in self._redis.zrange(key, 0, 999)]
        metas = self._backend.mget([self._backend.get_key_for_task(j) for j in job_ids]) if job_ids else []
        done = [j for j, meta in zip(job_ids, metas, strict=True) if meta is not None]
        if done:
            self._redis.zrem(key, *done)

    def add(self, tenant: str, job_ids: list[str]) -> None:
        if job_ids:
            now = time.time()
            self._redis.zadd(f"{OUTSTANDING_KEY_PREFIX}{tenant}", {j: now for j in job_ids})


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
        pipe = self._redis.pipeline()
        for name in redis_priority_lists(queue_name(job_type)):
            pipe.llen(name)
        depth = sum(int(n) for n in pipe.execute())
        with self._lock:
            self._cache[job_type] = (now, depth)
        return depth
