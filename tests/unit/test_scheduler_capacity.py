"""How many deferred jobs a slot may take: set, measured from the workers' learned costs, or spread over slots."""

from __future__ import annotations

from typing import Any

import pytest

from greenq.workers.scheduler.capacity import Capacity, fleet_jobs_per_hour, worker_jobs_per_s
from greenq.workers.scheduler.planner import Slot
from greenq.workers.scheduler.service import with_capacity

LEARNED = {
    "adaptive": {
        "description": {
            "learned_cost_by_size": {"4": {"seconds": 2.0, "joules": 8}, "16": {"seconds": 4.0, "joules": 20}}
        },
        "reply": {"learned_cost_by_size": {"16": {"seconds": 0.5, "joules": 9}}},
    }
}


def test_a_worker_counts_its_best_size_for_the_deferrable_types_only() -> None:
    assert worker_jobs_per_s(LEARNED, {"description", "strategy"}) == 4.0  # 16 jobs in 4 s beats 4 in 2 s
    assert worker_jobs_per_s({"adaptive": {}}, {"description"}) == 0.0
    statuses: dict[str, Any] = {"a": LEARNED, "b": LEARNED, "c": {"error": "timeout"}}
    assert fleet_jobs_per_hour(statuses, {"description"}) == 2 * 4.0 * 3600


def test_capacity_is_the_setting_else_a_share_of_the_measured_fleet() -> None:
    assert Capacity(120.0, 0.5, {"description"}, read_statuses=lambda: {"a": LEARNED}).jobs_per_hour() == 120.0
    measured = Capacity(0.0, 0.5, {"description"}, read_statuses=lambda: {"a": LEARNED})
    assert measured.jobs_per_hour() == pytest.approx(0.5 * 4.0 * 3600)
    assert Capacity(0.0, 0.5, {"description"}, read_statuses=lambda: {}).jobs_per_hour() is None
    assert Capacity(0.0, 0.5, {"description"}).jobs_per_hour() is None


def test_a_failed_reading_keeps_the_last_figure_until_the_next_refresh() -> None:
    clock = [0.0]
    answers: list[Any] = [{"a": LEARNED}, RuntimeError("no workers answered")]

    def read() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    capacity = Capacity(0.0, 1.0, {"description"}, read_statuses=read, clock=lambda: clock[0])
    assert capacity.jobs_per_hour() == 4.0 * 3600
    clock[0] = 30.0
    assert capacity.jobs_per_hour() == 4.0 * 3600 and len(answers) == 1  # not read again within a minute
    clock[0] = 61.0
    assert capacity.jobs_per_hour() == 4.0 * 3600 and answers == []


@pytest.mark.parametrize("jobs_per_slot", [0.3, 0.5, 1.0, 2.4, 7.75])
def test_fractional_capacity_averages_exactly_over_slots(jobs_per_slot: float) -> None:
    slots = [Slot(start_s=i * 300.0, g_per_kwh=100.0, capacity_jobs=1 << 30) for i in range(1000, 1200)]
    capped = with_capacity(slots, jobs_per_slot, 300.0, used_in_first=0)
    total = sum(slot.capacity_jobs for slot in capped)
    assert abs(total - jobs_per_slot * len(slots)) < 1
    assert max(s.capacity_jobs for s in capped) - min(s.capacity_jobs for s in capped) <= 1


def test_what_was_released_in_the_current_slot_comes_off_its_capacity() -> None:
    slots = [Slot(start_s=i * 300.0, g_per_kwh=100.0, capacity_jobs=1 << 30) for i in range(3)]
    assert [s.capacity_jobs for s in with_capacity(slots, 4.0, 300.0, used_in_first=3)] == [1, 4, 4]
    assert with_capacity(slots, 4.0, 300.0, used_in_first=9)[0].capacity_jobs == 0
