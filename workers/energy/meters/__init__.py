"""Energy meters: cumulative joules by component, behind one small Protocol.

A meter's `read()` returns joules used since an arbitrary origin, per component
(`gpu`, `cpu`, `dram`); the difference of two readings is the energy in between.
`detect_meter` tries NVML, then RAPL, then the CPU-time estimate.
"""

from __future__ import annotations

from typing import Literal, Protocol

Source = Literal["nvml", "rapl", "estimate"]
Component = Literal["gpu", "cpu", "dram"]


class EnergyMeter(Protocol):
    source: Source

    def read(self) -> dict[Component, float]:
        """Cumulative joules per component."""
        ...

    def close(self) -> None: ...
