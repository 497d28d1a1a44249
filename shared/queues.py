"""Queue and task names, and how greenq's priority scale maps onto each broker (Redis key names: `shared/keys.py`)."""

from __future__ import annotations

from shared.jobs import JobType

QUEUE_PREFIX = "greenq."
TASK_PREFIX = "greenq.jobs."
# `greenq bench` only: the one-task-per-job baseline's queue and task (workers/bench/naive.py).
BENCH_NAIVE_QUEUE = f"{QUEUE_PREFIX}naive"
BENCH_NAIVE_TASK = "greenq.naive.generate"
# kombu's Redis transport keeps one list per priority step: "<queue>\x06\x16<step>".
REDIS_PRIORITY_SEP = "\x06\x16"
REDIS_PRIORITY_STEPS = list(range(10))


def queue_name(job_type: JobType) -> str:
    return f"{QUEUE_PREFIX}{job_type.value}"


def task_name(job_type: JobType) -> str:
    return f"{TASK_PREFIX}{job_type.value}"


def job_type_of_task(name: str) -> JobType | None:
    if not name.startswith(TASK_PREFIX):
        return None
    try:
        return JobType(name[len(TASK_PREFIX) :])
    except ValueError:
        return None


def parse_queues(spec: str | None) -> list[JobType]:
    """`"reply,description"` → job types; empty or None → all of them."""
    if not spec:
        return list(JobType)
    out = []
    for part in spec.split(","):
        name = part.strip().removeprefix(QUEUE_PREFIX)
        if name:
            out.append(JobType(name))
    return out


def is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in {"redis", "rediss", "redis+socket", "sentinel"}


def broker_priority(level: int, broker_url: str) -> int:
    """greenq's 0..9 (9 most urgent) → the broker's number.

    kombu's Redis transport serves step 0 first; AMQP serves the highest number first.
    """
    return 9 - level if is_redis_url(broker_url) else level


def redis_priority_lists(queue: str) -> list[str]:
    """Every Redis list that holds messages of `queue` (kombu's priority sub-lists included)."""
    return [queue if step == 0 else f"{queue}{REDIS_PRIORITY_SEP}{step}" for step in REDIS_PRIORITY_STEPS]
