"""Pick a meter: NVML for a GPU worker, then RAPL, then the CPU-time estimate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from greenq.workers.energy.meters import EnergyMeter
from greenq.workers.energy.meters.estimate import CpuTimeEstimateMeter
from greenq.workers.energy.meters.rapl import RaplMeter

log = logging.getLogger(__name__)


def detect_meter(
    choice: Literal["auto", "nvml", "rapl", "estimate"],
    on_gpu: bool,
    rapl_root: Path,
    watts_per_core: float,
) -> EnergyMeter:
    """The configured meter; with "auto", the best one that works here."""
    if choice in ("auto", "nvml") and (on_gpu or choice == "nvml"):
        try:
            from greenq.workers.energy.meters.nvml import NvmlMeter

            return NvmlMeter(0)  # the worker sees only its own GPU, as index 0
        except Exception as exc:  # ImportError, NVMLError, no driver
            if choice == "nvml":
                raise
            log.info("NVML unavailable (%s); trying RAPL", exc)
    if choice in ("auto", "rapl"):
        try:
            return RaplMeter(rapl_root)
        except OSError as exc:
            if choice == "rapl":
                raise
            log.info("RAPL unavailable (%s); using the CPU-time estimate", exc)
    return CpuTimeEstimateMeter(watts_per_core)
