"""How a batch forms: pure functions over the jobs waiting in one worker.

A batch holds jobs that share a model and generation settings (`PendingJob.batch_key`).
It is ready when it is full (size or token budget) or when its first job has waited
the longest `max_wait_s` its job type allows. Among ready batches the one holding the
most urgent job goes first. A mixed batch obeys the tightest limits of the types in it.
A `solo` job (one redelivered after its worker died) runs alone, so a job that crashes
its worker cannot take innocent batch-mates down with it again.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from shared.job_types import JobType
from shared.policies import BatchPolicy


@dataclass(frozen=True)
class PendingJob:
    seq: int  # unique within a worker; job ids can repeat on redelivery
    job_type: JobType
    batch_key: Hashable
    priority: int  # 9 is most urgent
    arrived_at: float  # seconds, same clock as `now`
    prompt_tokens: int
    max_new_tokens: int
    deadline_at: float | None = None
    solo: bool = False

    def order(self) -> tuple[int, float, int]:
        return (-self.priority, self.arrived_at, self.seq)


@dataclass(frozen=True)
class Selection:
    jobs: tuple[PendingJob, ...]
    full: bool  # True when limits, not the wait, closed the batch


def padded_tokens(jobs: Sequence[PendingJob]) -> int:
    """Tokens a left-padded static batch occupies: rows × (longest prompt + longest generation)."""
    if not jobs:
        return 0
    return len(jobs) * (max(j.prompt_tokens for j in jobs) + max(j.max_new_tokens for j in jobs))


def split_expired(jobs: Iterable[PendingJob], now: float) -> tuple[list[PendingJob], list[PendingJob]]:
    alive: list[PendingJob] = []
    expired: list[PendingJob] = []
    for job in jobs:
        (expired if job.deadline_at is not None and now >= job.deadline_at else alive).append(job)
    return alive, expired


def fill(ordered: Sequence[PendingJob], policies: Mapping[JobType, BatchPolicy]) -> Selection:
    """Take jobs in order until the next would break the size cap or the token budget."""
    taken: list[PendingJob] = []
    size_cap = math.inf
    token_cap = math.inf
    for job in ordered:
        if job.solo:
            if not taken:
                return Selection((job,), full=True)
            continue  # it runs alone, later
        policy = policies[job.job_type]
        next_size_cap = min(size_cap, policy.max_batch_size)
        next_token_cap = min(token_cap, policy.max_batch_tokens)
        candidate = [*taken, job]
        if taken and (len(candidate) > next_size_cap or padded_tokens(candidate) > next_token_cap):
            return Selection(tuple(taken), full=True)
        taken, size_cap, token_cap = candidate, next_size_cap, next_token_cap
    return Selection(tuple(taken), full=len(taken) >= size_cap)


def group(jobs: Iterable[PendingJob]) -> dict[Hashable, list[PendingJob]]:
    """Jobs by batch key, each list most urgent first."""
    groups: dict[Hashable, list[PendingJob]] = {}
    for job in sorted(jobs, key=PendingJob.order):
        groups.setdefault(job.batch_key, []).append(job)
    return groups


def ready_at(jobs: Sequence[PendingJob], policies: Mapping[JobType, BatchPolicy]) -> float:
    """When the group's patience runs out: the earliest arrival + max wait of any job in it."""
    return min(j.arrived_at + policies[j.job_type].max_wait_s for j in jobs)


def select_batch(jobs: Iterable[PendingJob], policies: Mapping[JobType, BatchPolicy], now: float) -> Selection | None:
    """The batch to run now, or None if every group should keep waiting."""
    best: Selection | None = None
    for members in group(jobs).values():
        selection = fill(members, policies)
        if not (selection.full or now >= ready_at(members, policies)):
            continue
        if best is None or selection.jobs[0].order() < best.jobs[0].order():
            best = selection
    return best


def next_wakeup(jobs: Iterable[PendingJob], policies: Mapping[JobType, BatchPolicy]) -> float | None:
    """The earliest time a group becomes ready or a job's deadline passes."""
    jobs = list(jobs)
    times = [ready_at(members, policies) for members in group(jobs).values()]
    times += [j.deadline_at for j in jobs if j.deadline_at is not None]
    return min(times) if times else None
