"""The last resort: this process's CPU time × watts per core. Labelled `estimate` everywhere."""

from __future__ import annotations

import time
from collections.abc import Callable

from greenq.workers.energy.meters import Component, Source


class CpuTimeEstimateMeter:
    source: Source = "estimate"

    def __init__(self, watts_per_core: float, cpu_time_s: Callable[[], float] = time.process_time) -> None:
        self._watts_per_core = watts_per_core
        self._cpu_time_s = cpu_time_s

    def read(self) -> dict[Component, float]:
        return {"cpu": self._cpu_time_s() * self._watts_per_core}

    def close(self) -> None:
        pass
