"""How fast jobs arrive at this worker: arrivals in a trailing window, per job type, clock passed in."""

from __future__ import annotations

from collections import deque

WINDOW_S = 60.0  # the rate counts the arrivals of the last minute
MIN_SPAN_S = 1.0  # a rate is never read over less than this, so a first burst does not read as infinite
# A stream silent for longer than this many of its mean gaps reads as stopped (rate 0): a Poisson
# stream is that silent only 5 % of the time, and then a batch merely closes a little early.
SILENCE_GAPS = 3.0
MAX_KEPT = 4096  # above ~68 jobs/s the window holds fewer than a minute of arrivals: the span they cover is used


class ArrivalRate:
    """Jobs per second over the trailing window; 0 once none arrived within it.

    Counting over a fixed window (not since the oldest arrival) lets a burst followed by silence
    fall to 0 after one window, so a policy that waits for "the next job" stops waiting for it.
    Until a window has passed since the first arrival, the time since then is the window. And a
    stream that has gone quiet for `SILENCE_GAPS` of its mean gaps reads as stopped, so the last
    batch of a stream is not held to its latest start waiting for jobs that will not come.

    >>> rate = ArrivalRate(window_s=2.0)
    >>> for t in (0.0, 0.5, 1.0, 1.5, 2.0):
    ...     rate.observe(t)
    >>> rate.per_s(now=2.0)
    2.0
    """

    def __init__(self, window_s: float = WINDOW_S, max_kept: int = MAX_KEPT) -> None:
        self._times: deque[float] = deque(maxlen=max_kept)
        self._window_s = window_s
        self._first_at: float | None = None

    def observe(self, at: float) -> None:
        if self._first_at is None:
            self._first_at = at
        self._times.append(at)

    def per_s(self, now: float) -> float:
        while self._times and now - self._times[0] >= self._window_s:
            self._times.popleft()
        if not self._times or self._first_at is None:
            return 0.0
        if len(self._times) == self._times.maxlen:
            rate = len(self._times) / max(now - self._times[0], 1e-9)
        else:
            rate = len(self._times) / max(MIN_SPAN_S, min(self._window_s, now - self._first_at))
        return 0.0 if (now - self._times[-1]) * rate > SILENCE_GAPS else rate
