"""The out-of-memory cap: after a batch ran out of memory, no batch larger than the cap for a while.

Its one home: both loops lower it (static: to half the failed batch; continuous: to one row fewer than
the failed forward held) and admission reads it through `batching.capped`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class SizeCap:
    def __init__(self, clock: Callable[[], float], backoff_s: float) -> None:
        self._clock = clock
        self._backoff_s = backoff_s
        self._cap: int | None = None
        self._until = 0.0
        self._lock = threading.Lock()

    def current(self) -> int | None:
        """The lowered max batch size in force, if any (it lapses `backoff_s` after it was last lowered)."""
        with self._lock:
            if self._cap is not None and self._clock() >= self._until:
                self._cap = None
            return self._cap

    def lapses_at(self) -> float | None:
        """When the cap in force lapses (a loop waiting for room looks again then); None without one."""
        with self._lock:
            return None if self._cap is None else self._until

    def lower(self, failed_size: int, cap: int | None = None) -> int:
        """After an out-of-memory error at `failed_size`: at most `cap` (default: half of it); returns the cap."""
        cap = max(1, failed_size // 2 if cap is None else cap)
        with self._lock:
            self._cap = min(cap, self._cap or cap)
            self._until = self._clock() + self._backoff_s
            lowered = self._cap
        log.warning(
            "out of memory at batch size %d: max batch size lowered to %d for %.0f s",
            failed_size,
            lowered,
            self._backoff_s,
        )
        return lowered
