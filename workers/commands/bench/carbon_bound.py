"""Perfect-foresight references for the carbon-aware scheduler: what shifting could save at best.

`uncapacitated_saving` is the bound quoted in the CAISO trace's README (no capacity limit);
`optimal_assignment` is the offline optimum when each slot holds a limited number of jobs.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Sequence


def uncapacitated_saving(values: Sequence[float], slack_steps: int) -> float:
    """1 - mean(chosen) / mean(at once) for a 1-step job submitted at every step, run at its window's minimum.

    The job submitted at step i may run at any step in [i, i + slack_steps] (both ends included). Only
    submissions whose whole window lies in the series count, for the chosen and the at-once mean alike.
    This convention reproduces the README's bound (1 h 10.1 %, 4 h 24.3 %, 8 h 40.3 %, 24 h 78.0 %).
    """
    if slack_steps < 0:
        raise ValueError(f"slack_steps must be >= 0, got {slack_steps}")
    submissions = len(values) - slack_steps
    if submissions <= 0:
        raise ValueError(f"a series of {len(values)} steps holds no full window of {slack_steps + 1} steps")
    window: deque[int] = deque()  # indices of increasing values: the window's minimum is at the front
    chosen_sum = 0.0
    for j, value in enumerate(values):
        while window and values[window[-1]] >= value:
            window.pop()
        window.append(j)
        i = j - slack_steps  # the submission whose window ends at j
        if i >= 0:
            if window[0] < i:
                window.popleft()
            chosen_sum += values[window[0]]
    at_once_sum = sum(values[:submissions])
    if at_once_sum <= 0:
        raise ValueError("the series' mean over the submissions must be positive")
    return 1.0 - chosen_sum / at_once_sum


def _matchable(units: Sequence[int], released: Sequence[Sequence[tuple[int, int]]]) -> bool:
    """Whether `units[t]` units at each slot t go to distinct jobs, given (last slot, jobs) released at each slot.

    Sweeping slots in time order and giving each unit the waiting job that expires first is a maximum matching
    for interval windows, so no unit left over means the units are independent.
    """
    waiting: dict[int, int] = {}  # last slot -> jobs released and not yet matched
    expiring: list[int] = []  # heap of the keys of `waiting`
    for t in range(len(units)):
        for last, count in released[t]:
            if last not in waiting:
                heapq.heappush(expiring, last)
                waiting[last] = 0
            waiting[last] += count
        need = units[t]
        while need:
            if not expiring:
                return False
            last = expiring[0]
            if last < t:  # expired unmatched: no later unit can take these
                heapq.heappop(expiring)
                del waiting[last]
                continue
            take = min(need, waiting[last])
            need -= take
            waiting[last] -= take
            if waiting[last] == 0:
                heapq.heappop(expiring)
                del waiting[last]
    return True


def optimal_assignment(
    windows: Sequence[tuple[int, int]], costs: Sequence[float], capacity: Sequence[int]
) -> list[int]:
    """Slot per job of least total cost: job j runs in a slot of [first_j, last_j], slot t holds capacity[t] jobs.

    Raises ValueError when no assignment places every job.
    """
    n_slots = len(costs)
    if len(capacity) != n_slots:
        raise ValueError(f"one capacity per slot: {n_slots} costs, {len(capacity)} capacities")
    if any(c < 0 for c in capacity):
        raise ValueError("capacities must be >= 0")
    for j, (first, last) in enumerate(windows):
        if not 0 <= first <= last < n_slots:
            raise ValueError(f"job {j}: window [{first}, {last}] is not within slots 0..{n_slots - 1}")
    n_jobs = len(windows)
    released: list[list[tuple[int, int]]] = [[] for _ in range(n_slots)]
    opening = [0] * (n_slots + 1)
    for (first, last), count in Counter(windows).items():  # jobs with the same window are one group
        released[first].append((last, count))
        opening[first] += count
        opening[last + 1] -= count
    covering = [0] * n_slots  # jobs whose window holds slot t: a bound on the units there
    running = 0
    for t in range(n_slots):
        running += opening[t]
        covering[t] = running

    # Matroid greedy: the sets of slot-units matchable into distinct jobs form a transversal matroid, and
    # every basis places the same (largest) number of jobs. Taking units cheapest first, each while the set
    # stays independent, gives a least-cost basis; at one slot, the most units that stay independent (binary
    # search: independence is closed under removal).
    units = [0] * n_slots
    placed = 0
    for t in sorted(range(n_slots), key=lambda i: (costs[i], i)):
        low, high = 0, min(capacity[t], n_jobs - placed, covering[t])
        while low < high:
            mid = (low + high + 1) // 2
            units[t] = mid
            if _matchable(units, released):
                low = mid
            else:
                high = mid - 1
        units[t] = low
        placed += low
        if placed == n_jobs:
            break
    if placed < n_jobs:
        raise ValueError(f"only {placed} of {n_jobs} jobs fit in their windows at these capacities")

    slot_of = [-1] * n_jobs  # the same sweep, job by job
    by_first: list[list[int]] = [[] for _ in range(n_slots)]
    for j, (first, _) in enumerate(windows):
        by_first[first].append(j)
    expiring: list[tuple[int, int]] = []  # (last slot, job)
    for t in range(n_slots):
        for j in by_first[t]:
            heapq.heappush(expiring, (windows[j][1], j))
        for _ in range(units[t]):
            last, j = heapq.heappop(expiring)
            if last < t:  # cannot happen: the units are a basis of size n, so every job is matched
                raise AssertionError(f"job {j} expired unmatched")
            slot_of[j] = t
    return slot_of
