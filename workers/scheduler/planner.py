"""Where deferred jobs run: the lowest-carbon slots before each job's deadline, within the fleet's capacity.

Every tick the scheduler re-plans all jobs still waiting. All of them could be released now, so each job's
window is a prefix of the slot grid: [slot 0, its last allowed slot]. `plan` places them at the least total
grid intensity, never over a slot's capacity, except that jobs that cannot fit anywhere before their deadline
go to slot 0 (released at once): deadlines hold even over capacity.

    slots = slots_from_forecast(forecast, now_s, slot_s=300.0, capacity_jobs_per_slot=8, used_in_current_slot=3)
    p = plan(sorted(job.release_by_s for job in waiting), slots)
    release the first p.release_now jobs by deadline
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Slot:
    """One stretch of the grid: from `start_s` to the next slot's start."""

    start_s: float  # Unix seconds
    g_per_kwh: float
    capacity_jobs: int


@dataclass(frozen=True)
class Plan:
    """Jobs per slot in deadline (EDF) order: the first counts[0] jobs by deadline run in slot 0, and so on."""

    slots: tuple[Slot, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.slots) != len(self.counts):
            raise ValueError(f"a plan needs one count per slot: {len(self.slots)} slots, {len(self.counts)} counts")

    @property
    def jobs(self) -> int:
        return sum(self.counts)

    @property
    def release_now(self) -> int:
        """How many jobs, earliest deadlines first, to release in the current slot."""
        return self.counts[0] if self.counts else 0

    def planned_start_s(self, rank: int) -> float:
        """Start of the slot planned for the job at 0-based position `rank` in deadline order."""
        if rank < 0:
            raise IndexError(f"rank {rank} is negative")
        seen = 0
        for slot, count in zip(self.slots, self.counts, strict=True):
            seen += count
            if rank < seen:
                return slot.start_s
        raise IndexError(f"rank {rank} is past the {seen} jobs in this plan")

    @property
    def mean_g_per_kwh(self) -> float:
        """Job-weighted mean intensity of the plan; 0.0 for a plan with no jobs."""
        total = self.jobs
        if total == 0:
            return 0.0
        return sum(s.g_per_kwh * c for s, c in zip(self.slots, self.counts, strict=True)) / total


def _last_allowed_slot(starts_s: Sequence[float], release_by_s: float) -> int:
    """The last slot starting no later than `release_by_s`; 0 for an overdue job (slot 0 is always allowed)."""
    return max(0, bisect.bisect_right(starts_s, release_by_s) - 1)


def plan(release_by_s: Sequence[float], slots: Sequence[Slot]) -> Plan:
    """Least-intensity placement of jobs (latest release times, sorted ascending) into `slots`.

    A job may run in slot i iff slots[i].start_s <= its release_by (slot 0 always). Jobs that no capacity
    can hold go to slot 0, over capacity; the EDF order of `Plan` puts the earliest deadlines there.
    """
    if not slots:
        raise ValueError("plan needs at least one slot: the forecast does not cover now")
    if any(b < a for a, b in zip(release_by_s, release_by_s[1:], strict=False)):
        raise ValueError("release_by_s must be sorted ascending (deadline order)")
    n_slots = len(slots)
    starts = [s.start_s for s in slots]
    jobs_ending_at = [0] * n_slots  # J[s]: jobs whose last allowed slot is s
    for release_by in release_by_s:
        jobs_ending_at[_last_allowed_slot(starts, release_by)] += 1
    jobs_from = [0] * (n_slots + 1)  # jobs whose last allowed slot is >= s
    for s in range(n_slots - 1, -1, -1):
        jobs_from[s] = jobs_from[s + 1] + jobs_ending_at[s]

    # Why a greedy is exact: slot-units matchable into distinct jobs form a transversal matroid, and with prefix
    # windows the units' neighbourhoods are nested (a unit at slot t fits every job whose last slot is >= t).
    # Hall's condition then reduces to: for every s, units at slots >= s <= jobs whose last slot is >= s. The
    # matroid greedy (cheapest units first, each kept while independent) gives a least-cost basis, i.e. a
    # largest feasible placement of least total intensity. Taking the largest k at slot t is the same greedy,
    # as equal-cost units are interchangeable; the only constraints it tightens are those for s <= t. O(S^2),
    # whatever the number of jobs. Counts that meet Hall's condition are met by EDF (the r-th earliest deadline
    # in the r-th earliest unit), so a Plan needs no job-by-job assignment.
    taken = [0] * n_slots
    taken_from = [0] * n_slots  # units already taken at slots >= s
    for t in sorted(range(n_slots), key=lambda i: (slots[i].g_per_kwh, i)):
        room = min((jobs_from[s] - taken_from[s] for s in range(t + 1)), default=0)
        k = max(0, min(slots[t].capacity_jobs, room))
        if k:
            taken[t] = k
            for s in range(t + 1):
                taken_from[s] += k
    taken[0] += len(release_by_s) - sum(taken)  # what fits nowhere runs now: deadlines hold over capacity
    return Plan(tuple(slots), tuple(taken))


@dataclass(frozen=True)
class Expected:
    """Jobs not deferred yet but expected: `count` arriving in slot `slot` (>= 1), each releasable up to `last_slot`."""

    slot: int
    count: int
    last_slot: int


def plan_ahead(release_by_s: Sequence[float], slots: Sequence[Slot], expected: Sequence[Expected]) -> Plan:
    """`plan`, keeping room for the jobs expected to arrive later (`Plan` counts the waiting jobs only).

    Planning only the jobs waiting now fills the cleanest slots with them, and a trough the next arrivals
    could only have used is gone by the time they come: under binding capacity, at short slack, that is
    most of the gap to the offline optimum. Here the expected arrivals take part in the placement with their
    own windows ([arrival slot, last slot]); only the waiting jobs' places are kept. Windows are intervals,
    not prefixes, so the rank of a set of slot-units is a maximum matching, which the earliest-deadline sweep
    finds exactly (points matched to intervals); the matroid greedy adds at each slot, cheapest first, as many
    units as raise that rank. O(S * (S + G log G)) for S slots and G distinct windows, stopping once every job
    is placed.
    """
    if not expected:
        return plan(release_by_s, slots)
    if not slots:
        raise ValueError("plan needs at least one slot: the forecast does not cover now")
    n_slots = len(slots)
    starts = [s.start_s for s in slots]
    arriving: list[list[tuple[int, int, bool]]] = [[] for _ in range(n_slots)]  # slot → (last slot, count, waiting)
    for last, count in Counter(_last_allowed_slot(starts, r) for r in release_by_s).items():
        arriving[0].append((last, count, True))
    for e in expected:
        if 1 <= e.slot < n_slots and e.count > 0:
            arriving[e.slot].append((max(e.slot, min(e.last_slot, n_slots - 1)), e.count, False))
    units = place(arriving, [slot.g_per_kwh for slot in slots], [slot.capacity_jobs for slot in slots])
    waiting = _match(units, arriving, waiting_only=True)
    waiting[0] += len(release_by_s) - sum(waiting)  # what fits nowhere runs now: deadlines hold over capacity
    return Plan(tuple(slots), tuple(waiting))


def place(arriving: list[list[tuple[int, int, bool]]], costs: Sequence[float], capacity: Sequence[int]) -> list[int]:
    """Units per slot of a least-cost largest placement of the jobs (per arrival slot: last slot, count, waiting)."""
    total = sum(count for group in arriving for _, count, _ in group)
    units = [0] * len(costs)
    order = sorted((t for t in range(len(costs)) if capacity[t] > 0), key=lambda i: (costs[i], i))
    placed, i, step = 0, 0, 1
    # The greedy, slot by slot in this order, but tried a run at a time: if a run's units all raise the rank
    # (or none does), so would each of them in turn, by the matroid's exchange property. Only a run with some
    # of each is split; so a plan takes a few dozen matchings, not one per slot.
    while i < len(order) and placed < total:
        run = order[i : i + step]
        for t in run:
            units[t] = capacity[t]
        gained = sum(_match(units, arriving)) - placed
        if gained == sum(capacity[t] for t in run) or gained == 0 or len(run) == 1:
            if gained == 0:
                for t in run:
                    units[t] = 0
            elif len(run) == 1:
                units[run[0]] = gained
            placed += gained
            i += len(run)
            step *= 2
        else:
            for t in run:
                units[t] = 0
            step = max(1, len(run) // 2)
    return units


def _match(units: list[int], arriving: list[list[tuple[int, int, bool]]], waiting_only: bool = False) -> list[int]:
    """Jobs matched per slot by the earliest-deadline sweep (a maximum matching); all jobs, or the waiting ones."""
    heap: list[list[Any]] = []  # [last slot, waiting first (False sorts first, so negate), count]
    matched = [0] * len(units)
    for t, free in enumerate(units):
        for last, count, is_waiting in arriving[t]:
            heapq.heappush(heap, [last, not is_waiting, count])
        while free and heap:
            top = heap[0]
            if top[0] < t:
                heapq.heappop(heap)
                continue
            take = min(free, top[2])
            top[2] -= take
            free -= take
            if not waiting_only or not top[1]:
                matched[t] += take
            if top[2] == 0:
                heapq.heappop(heap)
    return matched


class ForecastPoint(Protocol):
    """One forecast interval: grid intensity from `start_s` to `end_s` (Unix seconds)."""

    @property
    def start_s(self) -> float: ...

    @property
    def end_s(self) -> float: ...

    @property
    def g_per_kwh(self) -> float: ...


def slots_from_forecast(
    points: Sequence[ForecastPoint],
    now_s: float,
    slot_s: float,
    capacity_jobs_per_slot: int,
    used_in_current_slot: int,
) -> list[Slot]:
    """The slot grid from the slot holding `now_s` to where the forecast stops covering; [] if it misses now.

    Slots start at multiples of `slot_s` since the epoch. Each slot's intensity is the time-weighted mean of the
    forecast points overlapping it (over the part they cover); slot 0 keeps only the capacity not yet released.
    """
    if slot_s <= 0:
        raise ValueError(f"slot_s must be positive, got {slot_s}")
    if capacity_jobs_per_slot < 0:
        raise ValueError(f"capacity_jobs_per_slot must be >= 0, got {capacity_jobs_per_slot}")
    ordered = sorted((p for p in points if p.end_s > p.start_s), key=lambda p: p.start_s)
    if not any(p.start_s <= now_s < p.end_s for p in ordered):
        return []
    slots: list[Slot] = []
    first = 0  # first point that may still overlap the current slot
    first_slot = math.floor(now_s / slot_s)
    while True:
        start_s = (first_slot + len(slots)) * slot_s  # from the index: no drift from repeated additions
        end_s = start_s + slot_s
        while first < len(ordered) and ordered[first].end_s <= start_s:
            first += 1
        weighted = covered_s = 0.0
        for p in ordered[first:]:
            if p.start_s >= end_s:
                break
            overlap_s = min(end_s, p.end_s) - max(start_s, p.start_s)
            if overlap_s > 0:
                weighted += p.g_per_kwh * overlap_s
                covered_s += overlap_s
        if covered_s == 0.0:
            return slots
        capacity = capacity_jobs_per_slot if slots else max(0, capacity_jobs_per_slot - used_in_current_slot)
        slots.append(Slot(start_s, weighted / covered_s, capacity))
