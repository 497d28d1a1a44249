"""The demand forecast the scheduler keeps room for: yesterday's profile where it has one, else the last hour."""

from __future__ import annotations

from greenq.workers.scheduler.demand import DAY_S, expected_arrivals

SLOT_S = 300.0
NOW_S = 1_800_000_000.0 + 10.0  # 10 s into a slot


def test_no_history_expects_nothing() -> None:
    assert expected_arrivals({}, NOW_S, SLOT_S, 12) == []


def test_without_a_day_of_history_the_last_hours_rate_continues() -> None:
    current = NOW_S - 10.0
    history = {current - (i + 1) * SLOT_S: {12: 2} for i in range(12)}  # 2 jobs a slot, window 12 slots
    expected = expected_arrivals(history, NOW_S, SLOT_S, 7)
    assert [(e.slot, e.count, e.last_slot) for e in expected] == [(k, 2, k + 12) for k in range(1, 7)]


def test_fractional_rates_become_whole_jobs_that_add_up() -> None:
    current = NOW_S - 10.0
    history = {current - (i + 1) * SLOT_S: {3: 1} for i in range(0, 12, 2)}  # one job every other slot
    expected = expected_arrivals(history, NOW_S, SLOT_S, 21)
    assert sum(e.count for e in expected) == 10  # 0.5 a slot over 20 slots
    assert all(e.count == 1 for e in expected)


def test_a_day_of_history_gives_the_same_time_yesterday() -> None:
    current = NOW_S - 10.0
    history: dict[float, dict[int, int]] = {}
    for i in range(int(DAY_S / SLOT_S) + 24):
        at = current - (i + 1) * SLOT_S
        busy = current - DAY_S + 2 * 3600 <= at < current - DAY_S + 4 * 3600  # yesterday, 2 to 4 h after now
        history[at] = {6: 4 if busy else 1}
    expected = {e.slot: e.count for e in expected_arrivals(history, NOW_S, SLOT_S, 60)}
    assert expected[1] == 1  # quiet now, as yesterday at this time
    assert expected[36] == 4  # busy 3 h from now, as yesterday 3 h after this time
