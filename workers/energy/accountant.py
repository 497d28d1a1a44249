"""Energy per batch and per job: read the meter around each batch, split it, price it in CO2e.

Energy between batches is counted as `idle`, energy during them as `active`; only active
energy is shared among the batch's jobs (see `greenq.workers.energy.attribution`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from greenq.workers.energy.attribution import attribute_energy
from greenq.workers.energy.carbon import IntensitySource, co2e_grams
from greenq.workers.energy.meters import Component, EnergyMeter

EnergySink = Callable[[Component, str, str, float], None]  # (component, source, state, joules)


@dataclass(frozen=True)
class EnergyShare:
    energy_j: float
    co2e_g: float
    source: str
    intensity_g_per_kwh: float  # the grid intensity the carbon was counted at
    pue: float = 1.0

    def co2e_at(self, intensity_g_per_kwh: float) -> float:
        """The carbon this energy would have cost at another intensity (a deferred job's receipt)."""
        return co2e_grams(self.energy_j, intensity_g_per_kwh, self.pue)


class EnergyAccountant:
    """
    >>> accountant = EnergyAccountant(meter, StaticIntensity(400.0))
    >>> start = accountant.batch_started()
    >>> shares = accountant.batch_finished(start, token_counts=[120, 80])
    """

    def __init__(
        self,
        meter: EnergyMeter,
        intensity: IntensitySource,
        pue: float = 1.0,
        sink: EnergySink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.meter = meter
        self.intensity = intensity
        self._pue = pue
        self._sink = sink
        self._clock = clock
        self._lock = threading.Lock()
        self._last = meter.read()

    def _advance(self, state: str) -> dict[Component, float]:
        """Read the meter, book the energy since the last reading under `state`, return the reading."""
        with self._lock:
            now = self.meter.read()
            for component, joules in now.items():
                used = max(0.0, joules - self._last.get(component, joules))
                if self._sink is not None and used:
                    self._sink(component, self.meter.source, state, used)
            self._last = now
            return now

    def batch_started(self) -> dict[Component, float]:
        return self._advance("idle")

    def batch_finished(self, start: dict[Component, float], token_counts: Sequence[int] | None) -> list[EnergyShare]:
        """Book the batch's energy; with token counts (the batch succeeded), split it among its jobs."""
        end = self._advance("active")
        total_j = sum(max(0.0, end[c] - start.get(c, end[c])) for c in end)
        if token_counts is None:
            return []
        intensity = self.intensity.grams_per_kwh(self._clock())
        return [
            EnergyShare(j, co2e_grams(j, intensity, self._pue), self.meter.source, intensity, self._pue)
            for j in attribute_energy(total_j, token_counts)
        ]

    def current_intensity(self) -> float:
        return self.intensity.grams_per_kwh(self._clock())
