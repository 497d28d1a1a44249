"""Perfect-foresight references: the uncapacitated bound on the CAISO trace and the capacitated optimum."""

from __future__ import annotations

import csv
import itertools
import random
from pathlib import Path

import pytest

from greenq.workers.commands.bench.carbon_bound import optimal_assignment, uncapacitated_saving

# The team folder's trace, beside the checkout (its README states the bound).
TRACE = Path(__file__).resolve().parents[3] / "shared" / "data" / "carbon" / "caiso_north_2023-06_5min.csv"
STEPS_PER_HOUR = 12


def test_uncapacitated_saving_is_the_mean_window_minimum_against_running_at_once() -> None:
    rng = random.Random(5)
    for _ in range(200):
        values = [rng.uniform(1.0, 10.0) for _ in range(rng.randint(1, 30))]
        slack = rng.randint(0, len(values) - 1)
        starts = range(len(values) - slack)
        chosen = [min(values[i : i + slack + 1]) for i in starts]
        expected = 1 - sum(chosen) / sum(values[i] for i in starts)
        assert uncapacitated_saving(values, slack) == pytest.approx(expected)
    assert uncapacitated_saving([3.0, 1.0, 2.0], 0) == 0.0
    with pytest.raises(ValueError):
        uncapacitated_saving([1.0, 2.0], 2)


@pytest.mark.skipif(not TRACE.exists(), reason=f"{TRACE} is missing")
def test_uncapacitated_saving_reproduces_the_trace_readme_bound() -> None:
    with TRACE.open(newline="") as f:
        values = [float(row["moer_lbs_per_mwh"]) for row in csv.DictReader(f)]
    assert len(values) == 8928
    for hours, percent in [(1, 10.1), (4, 24.3), (8, 40.3), (24, 78.0)]:
        assert 100 * uncapacitated_saving(values, hours * STEPS_PER_HOUR) == pytest.approx(percent, abs=0.2)


def _brute_force(windows: list[tuple[int, int]], costs: list[float], capacity: list[int]) -> float | None:
    best: float | None = None
    for slots in itertools.product(*(range(first, last + 1) for first, last in windows)):
        if all(slots.count(t) <= c for t, c in enumerate(capacity)):
            cost = sum(costs[t] for t in slots)
            best = cost if best is None or cost < best else best
    return best


def test_optimal_assignment_matches_brute_force_on_small_random_instances() -> None:
    rng = random.Random(2026)
    infeasible = 0
    for _ in range(400):
        n_slots = rng.randint(1, 6)
        costs = [float(rng.randint(1, 9)) for _ in range(n_slots)]
        capacity = [rng.randint(0, 3) for _ in range(n_slots)]
        windows = []
        for _ in range(rng.randint(0, 6)):
            first = rng.randrange(n_slots)
            windows.append((first, rng.randint(first, n_slots - 1)))
        best = _brute_force(windows, costs, capacity)
        if best is None:
            infeasible += 1
            with pytest.raises(ValueError):
                optimal_assignment(windows, costs, capacity)
            continue
        slot_of = optimal_assignment(windows, costs, capacity)
        assert len(slot_of) == len(windows)
        assert all(first <= t <= last for t, (first, last) in zip(slot_of, windows, strict=True))
        assert all(slot_of.count(t) <= c for t, c in enumerate(capacity))
        assert sum(costs[t] for t in slot_of) == pytest.approx(best)
    assert infeasible > 20  # the instances exercise both outcomes


def test_optimal_assignment_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        optimal_assignment([(0, 0), (0, 0)], [1.0], [1])  # two jobs, one place
    with pytest.raises(ValueError):
        optimal_assignment([(1, 0)], [1.0, 2.0], [1, 1])
    with pytest.raises(ValueError):
        optimal_assignment([(0, 2)], [1.0, 2.0], [1, 1])
    with pytest.raises(ValueError):
        optimal_assignment([], [1.0], [1, 1])
    assert optimal_assignment([], [], []) == []
