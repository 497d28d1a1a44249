"""What waits in the Redis queues: depth over kombu's priority sub-lists, the oldest job's age, unacked.

One read serves the exporter's gauges (workers/commands/exporter.py), the gateway's backpressure
(producers/gateway/limits.py) and `greenq top` (producers/top.py).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from greenq.shared import job_types as registry
from greenq.shared.job_types import JobType
from greenq.shared.keys import UNACKED_KEY
from greenq.shared.queues import queue_name, redis_priority_lists


@dataclass(frozen=True)
class QueueStat:
    queue: str
    depth: int
    oldest_age_s: float  # 0 when the queue is empty or no waiting message is readable


@dataclass(frozen=True)
class QueueStats:
    queues: tuple[QueueStat, ...]
    unacked: int  # reserved by workers, not yet acknowledged (every queue together)


def submitted_at(raw: bytes) -> float | None:
    """When one kombu Redis message's envelope joined the queue (submission, or a deferred job's release)."""
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return float(args[0].get("released_at") or args[0]["submitted_at"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def read_depths(client: Any, job_types: Iterable[JobType]) -> dict[JobType, int]:
    """Jobs waiting in each type's queue, all priorities, in one pipelined read; raises redis' errors."""
    types = list(job_types)
    pipe = client.pipeline()
    for job_type in types:
        for name in redis_priority_lists(queue_name(job_type)):
            pipe.llen(name)
    replies = iter(pipe.execute())
    return {t: sum(int(next(replies)) for _ in redis_priority_lists(queue_name(t))) for t in types}


def read_queue_stats(client: Any, job_types: Iterable[JobType] | None = None, now: float | None = None) -> QueueStats:
    """One pipelined read of every priority sub-list of each job type's queue; raises redis' errors."""
    now = time.time() if now is None else now
    types = registry.names() if job_types is None else job_types
    lists = {queue_name(job_type): redis_priority_lists(queue_name(job_type)) for job_type in types}
    pipe = client.pipeline()
    for names in lists.values():
        for name in names:
            pipe.llen(name)
            pipe.lindex(name, -1)  # LPUSH'd, popped from the right: the oldest is at the right end
    pipe.hlen(UNACKED_KEY)
    replies: list[Any] = pipe.execute()
    stats, start = [], 0
    for queue, names in lists.items():
        mine, start = replies[start : start + 2 * len(names)], start + 2 * len(names)
        times = [t for raw in mine[1::2] if raw is not None and (t := submitted_at(raw)) is not None]
        age_s = max(0.0, now - min(times)) if times else 0.0
        stats.append(QueueStat(queue, sum(int(n) for n in mine[0::2]), age_s))
    return QueueStats(tuple(stats), int(replies[-1]))
