"""The load bench's arrivals: seeded Poisson offsets and a job-type mix that adds up."""

from __future__ import annotations

import random
import statistics

import pytest

from greenq.workers.commands.bench.arrivals import (
    burst,
    job_types_for,
    mix_counts,
    number_by_type,
    poisson_times,
    schedule,
)

MIX = {"reply": 0.5, "description": 0.3, "strategy": 0.2}


def test_poisson_times_are_sorted_in_the_window_with_the_asked_mean_gap() -> None:
    times = poisson_times(20.0, 500.0, random.Random(1))
    assert times == sorted(times) and 0 < times[0] and times[-1] < 500.0
    assert len(times) == pytest.approx(20.0 * 500.0, rel=0.05)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert statistics.mean(gaps) == pytest.approx(1 / 20.0, rel=0.05)
    assert statistics.stdev(gaps) == pytest.approx(1 / 20.0, rel=0.1)  # exponential: sd = mean


def test_poisson_times_refuse_a_rate_or_duration_that_is_not_positive() -> None:
    with pytest.raises(ValueError):
        poisson_times(0.0, 10.0, random.Random(0))
    with pytest.raises(ValueError):
        poisson_times(1.0, -1.0, random.Random(0))


def test_mix_counts_add_up_and_round_the_largest_remainders_up() -> None:
    assert mix_counts(16, MIX) == {"reply": 8, "description": 5, "strategy": 3}
    assert mix_counts(10, MIX) == {"reply": 5, "description": 3, "strategy": 2}
    assert mix_counts(1, MIX) == {"reply": 1, "description": 0, "strategy": 0}
    assert mix_counts(7, {"reply": 2, "strategy": 0}) == {"reply": 7, "strategy": 0}
    for total in range(50):
        assert sum(mix_counts(total, MIX).values()) == total
    with pytest.raises(ValueError):
        mix_counts(5, {"reply": 0})


def test_job_types_follow_the_mix_in_a_seeded_order() -> None:
    types = job_types_for(100, MIX, random.Random(3))
    assert {t: types.count(t) for t in MIX} == {"reply": 50, "description": 30, "strategy": 20}
    assert types == job_types_for(100, MIX, random.Random(3))
    assert types != job_types_for(100, MIX, random.Random(4))
    assert types[:10] != ["reply"] * 10  # shuffled, not grouped


def test_number_by_type_counts_each_type_on_its_own() -> None:
    assert number_by_type(["reply", "strategy", "reply", "reply", "strategy"]) == [0, 0, 1, 2, 1]


def test_schedule_is_the_same_for_the_same_seed_and_types_each_arrival() -> None:
    first = schedule(5.0, 60.0, MIX, seed=7)
    assert first == schedule(5.0, 60.0, MIX, seed=7)
    assert first != schedule(5.0, 60.0, MIX, seed=8)
    assert [a.at_s for a in first] == sorted(a.at_s for a in first)
    reply = [a for a in first if a.job_type == "reply"]
    assert [a.nth_of_type for a in reply] == list(range(len(reply)))
    assert len(reply) == mix_counts(len(first), MIX)["reply"]


def test_burst_puts_every_job_at_offset_zero() -> None:
    jobs = burst(16, MIX, seed=0)
    assert len(jobs) == 16 and {a.at_s for a in jobs} == {0.0}
    assert sum(a.job_type == "strategy" for a in jobs) == 3
