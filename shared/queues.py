"""Queue and task names, and how greenq's priority scale maps onto each broker (Redis key names: `shared/keys.py`).

A job type's names derive from its registered name: queue `greenq.<name>`, task `greenq.jobs.<name>`.
"""

from __future__ import annotations

from greenq.shared import job_types
from greenq.shared.delivery import MAX_PRIORITY, MIN_PRIORITY
from greenq.shared.job_types import JobType

QUEUE_PREFIX = "greenq."
TASK_PREFIX = "greenq.jobs."
# `greenq bench` only: the one-task-per-job baseline's queue and task (workers/commands/bench/naive.py).
BENCH_NAIVE_QUEUE = f"{QUEUE_PREFIX}naive"
BENCH_NAIVE_TASK = "greenq.naive.generate"
# kombu's Redis transport keeps one list per priority step: "<queue>\x06\x16<step>".
REDIS_PRIORITY_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = list(range(MIN_PRIORITY, MAX_PRIORITY + 1))


def queue_name(job_type: JobType) -> str:
    return f"{QUEUE_PREFIX}{job_type}"


def task_name(job_type: JobType) -> str:
    return f"{TASK_PREFIX}{job_type}"


def job_type_of_task(name: str) -> JobType | None:
    """The registered job type a task name belongs to, or None."""
    job_type = name.removeprefix(TASK_PREFIX)
    return job_type if name.startswith(TASK_PREFIX) and job_type in job_types.names() else None


def parse_queues(spec: str | None) -> list[JobType]:
    """`"reply,description"` → job types; empty or None → all of them. Raises ValueError naming the known ones."""
    if not spec:
        return list(job_types.names())
    out = []
    for part in spec.split(","):
        name = part.strip().removeprefix(QUEUE_PREFIX)
        if name and name not in job_types.names():
            raise ValueError(f"unknown queue {part.strip()!r}; expected one of {', '.join(job_types.names())}")
        if name:
            out.append(name)
    return out


def is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in {"redis", "rediss", "redis+socket", "sentinel"}


def broker_priority(level: int, broker_url: str) -> int:
    """greenq's 0..9 (9 most urgent) → the broker's number.

    kombu's Redis transport serves step 0 first; AMQP serves the highest number first.
    """
    return MAX_PRIORITY - level if is_redis_url(broker_url) else level


def redis_priority_lists(queue: str) -> list[str]:
    """Every Redis list that holds messages of `queue` (kombu's priority sub-lists included)."""
    return [queue if step == 0 else f"{queue}{REDIS_PRIORITY_SEP}{step}" for step in REDIS_PRIORITY_STEPS]
