"""How fast jobs arrive at this worker: a sliding-window estimate per job type, clock passed in."""

from __future__ import annotations

from collections import deque

WINDOW_JOBS = 64  # the rate is read over at most this many recent arrivals
HORIZON_S = 600.0  # and over at most this long: arrivals older than that no longer count


class ArrivalRate:
    """Jobs per second over the recent arrivals; 0 when none arrived within the horizon.

    >>> rate = ArrivalRate()
    >>> for t in (0.0, 0.5, 1.0, 1.5):
    ...     rate.observe(t)
    >>> rate.per_s(now=2.0)
    2.0
    """

    def __init__(self, window_jobs: int = WINDOW_JOBS, horizon_s: float = HORIZON_S) -> None:
        self._times: deque[float] = deque(maxlen=window_jobs)
        self._horizon_s = horizon_s

    def observe(self, at: float) -> None:
        self._times.append(at)

    def per_s(self, now: float) -> float:
        while self._times and now - self._times[0] > self._horizon_s:
            self._times.popleft()
        if not self._times:
            return 0.0
        # k arrivals over the span from the oldest of them to now: an estimate that decays while none come.
        span_s = now - self._times[0]
        if span_s <= 0:
            return 0.0
        return len(self._times) / span_s
