"""How a batch forms: pure functions over the jobs waiting in one worker.

A batch holds jobs that share a model and generation settings (`PendingJob.batch_key`).
It is ready when it is full (size or token budget) or when its `Closing` says so: by the
fixed rule, once its first job has waited the longest `max_wait_s` its job types allow,
but not while more of its jobs are already on their way to this worker (then up to
`BACKLOG_GRACE_S` longer); by the adaptive rule (workers/serving/adaptive.py), at the size
and time that give the fewest joules per job within the objective. Among ready batches the
one holding the most urgent job goes first. A mixed batch obeys the tightest limits of the
types in it. A `solo` job (one redelivered after its worker died) runs alone, so a job
that crashes its worker cannot take innocent batch-mates down with it again.

The continuous loop admits by the same `fill` (`admit`): its running rows first, then waiting jobs
most urgent first, so the size caps, the token budget (the same `padded_tokens` over running and
joining rows) and `solo` bind it too. A solo job joins no running batch: it waits for the rows to
finish, runs alone, and nothing joins it. Rows share a forward whatever their generation settings
(the step decoder chooses each row's token by its own), so there only the model must match.
A lowered size cap (out of memory) applies to both through `capped`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from greenq.shared.job_types import JobType
from greenq.shared.policies import BACKLOG_GRACE_S, BatchPolicy

INCOMING_RECHECK_S = 0.02  # while a batch waits for jobs already on their way, look again this often


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
    submitted_at: float | None = None  # same clock; None: counts from `arrived_at`
    model: str = ""  # the model it runs on (also the first part of its `batch_key` in the batcher)

    @property
    def objective_clock_from(self) -> float:
        """Where its latency objective counts from: submission, or arrival here if unknown."""
        return self.arrived_at if self.submitted_at is None else self.submitted_at

    def order(self) -> tuple[int, float, int]:
        return (-self.priority, self.arrived_at, self.seq)


@dataclass(frozen=True)
class Selection:
    jobs: tuple[PendingJob, ...]
    full: bool  # True when limits, not the wait, closed the batch


@dataclass(frozen=True)
class Closing:
    """When a forming batch closes: at `at` at the latest, or as soon as it holds `target_size` jobs."""

    at: float
    target_size: int | None = None  # None: only its limits (`Selection.full`) close it early
    recheck_at: float | None = None  # look again then: it waits on jobs whose arrival nothing announces


# A group's jobs, most urgent first → when that batch closes.
ClosingRule = Callable[[Sequence[PendingJob]], Closing]


@dataclass(frozen=True)
class Admission:
    """What the continuous loop does before its next step: these rows leave to wait, these jobs join."""

    join: tuple[PendingJob, ...] = ()
    preempt: tuple[PendingJob, ...] = ()


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


def capped(policies: Mapping[JobType, BatchPolicy], size_cap: int | None) -> dict[JobType, BatchPolicy]:
    """The policies in force while an out-of-memory cap is: no batch larger than `size_cap`."""
    if size_cap is None:
        return dict(policies)
    return {t: p.model_copy(update={"max_batch_size": min(p.max_batch_size, size_cap)}) for t, p in policies.items()}


def admit(
    running: Sequence[PendingJob], waiting: Iterable[PendingJob], policies: Mapping[JobType, BatchPolicy]
) -> Admission:
    """Which waiting jobs join the running rows now, and which rows make room for them (the continuous loop).

    The running rows' model, or with none the most urgent job's. Jobs join as `fill` takes them after the
    running rows. When the most urgent job cannot join, running rows less urgent than it leave to wait
    (preempted: they resume by recompute), the least urgent first, until it can."""
    ordered = sorted(waiting, key=PendingJob.order)
    if not ordered or any(job.solo for job in running):
        return Admission()  # nothing joins a solo job
    model = running[0].model if running else ordered[0].model
    candidates = [job for job in ordered if job.model == model]
    solo_at = next((i for i, job in enumerate(candidates) if job.solo), None)
    if solo_at == 0 and running:
        return Admission()  # the solo job waits for the running rows to finish, then runs alone
    if solo_at is not None:
        candidates = candidates[: max(1, solo_at)]  # those before it, or itself alone
    kept = list(running)
    preempted: list[PendingJob] = []
    while candidates:
        joining = fill([*kept, *candidates], policies).jobs
        if len(joining) > len(kept) and list(joining[: len(kept)]) == kept:
            return Admission(joining[len(kept) :], tuple(preempted))
        if not kept:
            break
        victim = max(kept, key=PendingJob.order)  # the least urgent, the latest come among equals
        if victim.priority >= candidates[0].priority:
            break
        kept.remove(victim)
        preempted.append(victim)
    return Admission((), ())


def group(jobs: Iterable[PendingJob]) -> dict[Hashable, list[PendingJob]]:
    """Jobs by batch key, each list most urgent first."""
    groups: dict[Hashable, list[PendingJob]] = {}
    for job in sorted(jobs, key=PendingJob.order):
        groups.setdefault(job.batch_key, []).append(job)
    return groups


def ready_at(jobs: Sequence[PendingJob], policies: Mapping[JobType, BatchPolicy]) -> float:
    """When the group's patience runs out: the earliest arrival + max wait of any job in it."""
    return min(j.arrived_at + policies[j.job_type].max_wait_s for j in jobs)


def fixed_closing(
    members: Sequence[PendingJob], policies: Mapping[JobType, BatchPolicy], incoming: int = 0, now: float = 0.0
) -> Closing:
    """The fixed rule: close after the max wait, or up to a grace period later while `incoming` jobs come."""
    at = ready_at(members, policies)
    if incoming > 0:
        return Closing(at + BACKLOG_GRACE_S, recheck_at=now + INCOMING_RECHECK_S)
    return Closing(at)


def select_batch(
    jobs: Iterable[PendingJob],
    policies: Mapping[JobType, BatchPolicy],
    now: float,
    closing: ClosingRule | None = None,
) -> Selection | None:
    """The batch to run now, or None if every group should keep waiting."""
    rule = closing or (lambda members: fixed_closing(members, policies))
    best: Selection | None = None
    for members in group(jobs).values():
        selection = fill(members, policies)
        if not (selection.full or is_due(rule(members), len(selection.jobs), now)):
            continue
        if best is None or selection.jobs[0].order() < best.jobs[0].order():
            best = selection
    return best


def is_due(closing: Closing, size: int, now: float) -> bool:
    return now >= closing.at or (closing.target_size is not None and size >= closing.target_size)


def next_wakeup(
    jobs: Iterable[PendingJob], policies: Mapping[JobType, BatchPolicy], closing: ClosingRule | None = None
) -> float | None:
    """The earliest time a group becomes ready, needs a fresh look, or a job's deadline passes."""
    rule = closing or (lambda members: fixed_closing(members, policies))
    jobs = list(jobs)
    times: list[float] = []
    for members in group(jobs).values():
        closes = rule(members)
        times.append(closes.at if closes.recheck_at is None else min(closes.at, closes.recheck_at))
    times += [j.deadline_at for j in jobs if j.deadline_at is not None]
    return min(times) if times else None
