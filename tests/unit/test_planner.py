"""The deferral planner: least-intensity placement within capacity, checked against brute force, and its slot grid."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import pytest

from greenq.workers.scheduler.planner import Plan, Slot, plan, slots_from_forecast

SLOT_S = 100.0


def _slots(g_per_kwh: list[float], capacity: list[int]) -> list[Slot]:
    return [Slot(i * SLOT_S, g, c) for i, (g, c) in enumerate(zip(g_per_kwh, capacity, strict=True))]


def _allowed(release_by_s: float, slots: list[Slot]) -> list[int]:
    return [0] + [i for i, s in enumerate(slots) if i > 0 and s.start_s <= release_by_s]


def _brute_force(release_by_s: list[float], slots: list[Slot]) -> tuple[int, float]:
    """The least (jobs over capacity, total intensity) over every placement; over capacity only in slot 0."""
    best: tuple[int, float] | None = None
    for placement in itertools.product(*(_allowed(r, slots) for r in release_by_s)):
        counts = [placement.count(i) for i in range(len(slots))]
        if any(c > s.capacity_jobs for c, s in zip(counts[1:], slots[1:], strict=True)):
            continue
        key = (max(0, counts[0] - slots[0].capacity_jobs), sum(slots[i].g_per_kwh for i in placement))
        best = key if best is None or key < best else best
    assert best is not None  # all jobs in slot 0 always qualifies
    return best


def _slot_index(p: Plan, rank: int) -> int:
    return [s.start_s for s in p.slots].index(p.planned_start_s(rank))


def test_plan_matches_brute_force_on_small_random_instances() -> None:
    rng = random.Random(2026)
    for _ in range(600):
        n_slots = rng.randint(1, 5)
        slots = _slots([float(rng.randint(1, 6)) for _ in range(n_slots)], [rng.randint(0, 3) for _ in range(n_slots)])
        # on slot starts, between them, overdue and past the last slot
        release_by = sorted(
            rng.choice([rng.uniform(-50, 600), float(rng.randint(0, 6)) * SLOT_S]) for _ in range(rng.randint(0, 6))
        )
        p = plan(release_by, slots)
        assert sum(p.counts) == len(release_by) == p.jobs
        over = max(0, p.counts[0] - slots[0].capacity_jobs)
        cost = sum(s.g_per_kwh * c for s, c in zip(slots, p.counts, strict=True))
        assert (over, cost) == pytest.approx(_brute_force(release_by, slots))
        for i in range(1, n_slots):
            assert p.counts[i] <= slots[i].capacity_jobs
        for rank, release_by_s in enumerate(release_by):  # EDF order: each job within its window
            assert _slot_index(p, rank) in _allowed(release_by_s, slots)
            if release_by_s < slots[0].start_s:
                assert _slot_index(p, rank) == 0
        assert p.release_now == p.counts[0]


def test_plan_defers_to_the_cleanest_slot_before_the_deadline() -> None:
    slots = _slots([300.0, 100.0, 50.0, 10.0], [2, 2, 2, 2])
    p = plan([150.0, 250.0, 999.0], slots)
    assert p.counts == (0, 1, 1, 1)
    assert [p.planned_start_s(r) for r in range(3)] == [100.0, 200.0, 300.0]
    assert p.mean_g_per_kwh == pytest.approx((100.0 + 50.0 + 10.0) / 3)
    with pytest.raises(IndexError):
        p.planned_start_s(3)


def test_plan_overbooks_only_what_fits_nowhere_and_puts_earliest_deadlines_now() -> None:
    slots = _slots([1.0, 5.0], [1, 1])
    p = plan([-10.0, 20.0, 150.0, 150.0], slots)  # one overdue, one due in slot 0, two may wait for slot 1
    assert p.counts == (3, 1)  # slot 1 holds one; the other three run now, over capacity
    assert p.release_now == 3
    assert p.planned_start_s(3) == 100.0


def test_plan_uses_the_cheap_now_slot_before_overbooking() -> None:
    slots = _slots([1.0, 5.0], [1, 1])
    assert plan([150.0, 150.0], slots).counts == (1, 1)  # both fit: no overbooking to save intensity


def test_plan_of_no_jobs_and_of_no_slots() -> None:
    p = plan([], _slots([5.0], [1]))
    assert p.counts == (0,) and p.release_now == 0 and p.mean_g_per_kwh == 0.0
    with pytest.raises(ValueError):
        plan([1.0], [])
    with pytest.raises(ValueError):
        plan([5.0, 1.0], _slots([5.0], [1]))


@dataclass(frozen=True)
class Point:
    start_s: float
    end_s: float
    g_per_kwh: float


HALF_HOUR_S = 1800.0
T0 = 1_780_002_000.0  # a multiple of 300 s, 1800 s and 3600 s


def test_slots_start_at_the_slot_holding_now_and_stop_with_the_forecast() -> None:
    points = [Point(T0 + k * HALF_HOUR_S, T0 + (k + 1) * HALF_HOUR_S, 100.0 * (k + 1)) for k in range(2)]
    slots = slots_from_forecast(points, T0 + 437.0, 300.0, 4, 0)
    assert slots[0].start_s == T0 + 300.0
    assert [s.start_s for s in slots] == [T0 + 300.0 * i for i in range(1, 12)]  # 11 slots to T0 + 1 h
    assert [s.g_per_kwh for s in slots] == [100.0] * 5 + [200.0] * 6


def test_slot_intensity_is_the_time_weighted_mean_of_the_points_it_overlaps() -> None:
    offset_s = 120.0  # 30-minute points that start 2 minutes past the 5-minute grid
    points = [
        Point(T0 + offset_s + k * HALF_HOUR_S, T0 + offset_s + (k + 1) * HALF_HOUR_S, [100.0, 400.0][k])
        for k in range(2)
    ]
    slots = slots_from_forecast(points, T0 + 1900.0, 300.0, 4, 0)
    assert slots[0].start_s == T0 + 1800.0
    assert slots[0].g_per_kwh == pytest.approx((120.0 * 100.0 + 180.0 * 400.0) / 300.0)
    assert slots[1].g_per_kwh == 400.0
    assert slots[-1].start_s == T0 + 3600.0  # partly covered by the forecast: the mean of the covered part
    assert slots[-1].g_per_kwh == 400.0
    hourly = slots_from_forecast(points, T0 + 1900.0, 3600.0, 4, 0)
    assert hourly[0].start_s == T0  # the forecast starts 120 s into it: the mean of the 3,480 s covered
    assert hourly[0].g_per_kwh == pytest.approx((1800.0 * 100.0 + 1680.0 * 400.0) / 3480.0)
    assert len(hourly) == 2 and hourly[1].g_per_kwh == 400.0


def test_slot_zero_keeps_only_the_capacity_not_yet_released() -> None:
    points = [Point(T0, T0 + HALF_HOUR_S, 100.0)]
    assert [s.capacity_jobs for s in slots_from_forecast(points, T0 + 10.0, 300.0, 4, 3)] == [1] + [4] * 5
    assert slots_from_forecast(points, T0 + 10.0, 300.0, 4, 9)[0].capacity_jobs == 0


def test_no_slots_when_the_forecast_does_not_cover_now() -> None:
    points = [Point(T0, T0 + HALF_HOUR_S, 100.0)]
    assert slots_from_forecast(points, T0 - 1.0, 300.0, 4, 0) == []
    assert slots_from_forecast(points, T0 + HALF_HOUR_S, 300.0, 4, 0) == []
    assert slots_from_forecast([], T0, 300.0, 4, 0) == []


def test_placing_with_expected_arrivals_is_the_offline_optimum() -> None:
    from greenq.workers.commands.bench.carbon_bound import optimal_assignment
    from greenq.workers.scheduler.planner import place

    rng = random.Random(11)
    checked = 0
    for _ in range(600):
        n_slots = rng.randint(1, 12)  # long enough for runs of slots to be tried, and split
        costs = [float(rng.randint(1, 9)) for _ in range(n_slots)]
        capacity = [rng.randint(0, 3) for _ in range(n_slots)]
        windows = []
        for _ in range(rng.randint(1, 10)):
            first = 0 if rng.random() < 0.5 else rng.randrange(n_slots)
            windows.append((first, rng.randint(first, n_slots - 1)))
        arriving: list[list[tuple[int, int, bool]]] = [[] for _ in range(n_slots)]
        for first, last in windows:
            arriving[first].append((last, 1, first == 0))
        units = place(arriving, costs, capacity)
        assert all(0 <= u <= c for u, c in zip(units, capacity, strict=True))
        try:
            best = optimal_assignment(windows, costs, capacity)
        except ValueError:
            assert sum(units) < len(windows)  # not every job fits: the placement is the largest possible
            continue
        assert sum(units) == len(windows)
        assert sum(u * c for u, c in zip(units, costs, strict=True)) == sum(costs[t] for t in best)
        checked += 1
    assert checked > 250


def test_planning_ahead_keeps_a_later_trough_for_the_jobs_that_will_need_it() -> None:
    from greenq.workers.scheduler.planner import Expected, plan_ahead

    slots = [Slot(0.0, 50.0, 2), Slot(300.0, 40.0, 2), Slot(600.0, 300.0, 2), Slot(900.0, 45.0, 2)]
    waiting = [10_000.0, 10_000.0]  # may run in any slot
    # Alone, the two waiting jobs take the cheapest slot (1). Two jobs arriving in slot 1 that must run by
    # slot 2 need slot 1 more: the waiting ones go to slots 3 (45) and 0 (50) instead.
    assert plan(waiting, slots).counts == (0, 2, 0, 0)
    ahead = plan_ahead(waiting, slots, [Expected(slot=1, count=2, last_slot=2)])
    assert ahead.counts == (0, 0, 0, 2)
    assert plan_ahead(waiting, slots, []).counts == (0, 2, 0, 0)
