"""How many deferred jobs will arrive in the coming slots: a forecast of demand, from the jobs deferred before.

Storefront demand follows the day, so where a day of history exists a slot expects what the same time
yesterday brought (averaged over the hour around it); without it, the rate of the last hour. Each
expected job gets the median window of the last day's arrivals (from its arrival slot to its last slot).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from greenq.workers.scheduler.planner import Expected

DAY_S = 86_400.0
AROUND_S = 1_800.0  # yesterday's demand is read over the hour around the same time
TRAILING_S = 3_600.0


def expected_arrivals(
    history: Mapping[float, Mapping[int, int]], now_s: float, slot_s: float, n_slots: int
) -> list[Expected]:
    """Expected arrivals for slots 1 … n_slots-1 of the grid starting at the slot holding `now_s`.

    Only arrivals before the waiting jobs' last deadline compete with them: `n_slots` should end there,
    and the plan's grid should reach a window beyond it, where those arrivals may still run.

    `history`: slot start (Unix s) → {window in slots: jobs deferred in that slot with that window}.
    Fractional rates are spread as whole jobs whose running total never drifts from the expected one.
    """
    current_s = math.floor(now_s / slot_s) * slot_s
    past = {t: counts for t, counts in history.items() if t < current_s}
    if not past:
        return []
    window = median_window({t: c for t, c in past.items() if t >= current_s - DAY_S})
    if window is None:
        return []
    trailing = _rate(past, current_s - TRAILING_S, current_s, slot_s)
    earliest_s = min(past)
    out: list[Expected] = []
    total = 0.0
    for k in range(1, n_slots):
        at_s = current_s + k * slot_s
        day_ago_s = at_s - DAY_S
        if earliest_s <= day_ago_s - AROUND_S and day_ago_s + AROUND_S + slot_s <= current_s:
            rate = _rate(past, day_ago_s - AROUND_S, day_ago_s + AROUND_S + slot_s, slot_s)
        else:
            rate = trailing
        before = math.floor(total)
        total += rate
        if (count := math.floor(total) - before) > 0:
            out.append(Expected(slot=k, count=count, last_slot=k + window))
    return out


def _rate(past: Mapping[float, Mapping[int, int]], from_s: float, to_s: float, slot_s: float) -> float:
    """Jobs per slot deferred in [from_s, to_s)."""
    jobs = sum(sum(counts.values()) for t, counts in past.items() if from_s <= t < to_s)
    return jobs / max(1.0, (to_s - from_s) / slot_s)


def median_window(history: Mapping[float, Mapping[int, int]]) -> int | None:
    windows = sorted((w, n) for counts in history.values() for w, n in counts.items() if n > 0)
    total = sum(n for _, n in windows)
    if total == 0:
        return None
    seen = 0
    for window, n in windows:
        seen += n
        if 2 * seen >= total:
            return window
    return windows[-1][0]
