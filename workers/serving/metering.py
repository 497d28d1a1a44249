"""Energy around each model call, in one place for both loops: start, finish (split among the jobs by the
tokens each processed) or abandon (spent, on no job's receipt).

Energy accounting is not the job's work: a meter that fails costs the receipt, never the job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from greenq.workers.energy.accountant import EnergyAccountant, EnergyShare

log = logging.getLogger(__name__)
T = TypeVar("T")
Reading = dict[Any, float]  # the meter's counters when a model call started


class Metering:
    def __init__(self, energy: EnergyAccountant | None) -> None:
        self._energy = energy

    @property
    def metered(self) -> bool:
        """Whether energy is measured at all (without a meter, time stands in for it where a cost is learned)."""
        return self._energy is not None

    def start(self) -> Reading | None:
        energy = self._energy
        return None if energy is None else _guarded(energy.batch_started)

    def finish(self, start: Reading | None, tokens: Sequence[int]) -> list[EnergyShare] | None:
        """Each job's share of the call's energy, in the order of `tokens`; None without a reading."""
        energy = self._energy
        if energy is None or start is None:
            return None
        return _guarded(lambda: energy.batch_finished(start, tokens))

    def abandon(self, start: Reading | None) -> None:
        """The call raised: its energy is booked, but on no job's receipt."""
        energy = self._energy
        if energy is not None and start is not None:
            _guarded(lambda: energy.batch_finished(start, None))


def sum_shares(shares: Sequence[EnergyShare]) -> EnergyShare | None:
    """One job's energy over its calls; its intensity is the energy-weighted mean of theirs."""
    if not shares:
        return None
    energy_j = sum(s.energy_j for s in shares)
    co2e_g = sum(s.co2e_g for s in shares)
    intensity = (
        sum(s.intensity_g_per_kwh * s.energy_j for s in shares) / energy_j
        if energy_j
        else shares[-1].intensity_g_per_kwh
    )
    return EnergyShare(energy_j, co2e_g, shares[-1].source, intensity, shares[-1].pue)


def _guarded(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except Exception:
        log.exception("energy meter failed; this batch gets no energy receipt")
        return None
