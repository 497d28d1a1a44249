"""Energy over a whole bench window, idle time included: the "total" beside the results' "active" energy.

The results' `energy_j` covers only what the worker's meter saw inside batches. For the window's
total the bench reads, from its own process, the counter the worker's meter reads: the GPU board's
(NVML) or the CPU packages' (RAPL), both device-wide, so idle draw and anything else on the device
count too. The CPU-time estimate has no device counter and no idle draw: the bench reads the worker
process's CPU time (every thread) × watts per core instead, so total ≈ active + the worker's own
work outside batches.
"""

from __future__ import annotations

import os
from pathlib import Path

from greenq.shared.settings import Settings
from greenq.workers.energy.meters import EnergyMeter, Source
from greenq.workers.energy.meters.estimate import CpuTimeEstimateMeter

IDLE_NOTES: dict[Source, str] = {
    "nvml": "the GPU board's energy counter (NVML, device 0, as the worker reads it): idle draw included",
    "rapl": "the CPU packages' RAPL counters: idle draw included, and everything else on the CPUs too",
    "estimate": (
        "the worker process's CPU time (all threads) × GREENQ_CPU_WATTS_PER_CORE: the estimate has no idle "
        "draw, so total ≈ active + the worker's own overhead outside batches"
    ),
}


def cpu_seconds_from_stat(stat: str, ticks_per_s: int) -> float:
    """utime + stime from a /proc/<pid>/stat line (every thread of the process), in seconds."""
    # The command name (field 2) is in parentheses and may hold spaces: split after its last ")".
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / ticks_per_s


def process_cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float:
    return cpu_seconds_from_stat((proc / str(pid) / "stat").read_text(), os.sysconf("SC_CLK_TCK"))


def window_meter(worker_source: Source, settings: Settings, worker_pid: int) -> EnergyMeter:
    """A meter this process can read that covers what the worker's `worker_source` meter covers, and idle."""
    if worker_source == "nvml":
        from greenq.workers.energy.meters.nvml import NvmlMeter

        return NvmlMeter(0)  # the worker's meter reads index 0 too (workers/energy/meters/detect.py)
    if worker_source == "rapl":
        from greenq.workers.energy.meters.rapl import RaplMeter

        return RaplMeter(settings.rapl_root)
    return CpuTimeEstimateMeter(settings.cpu_watts_per_core, lambda: process_cpu_seconds(worker_pid))


def read_j(meter: EnergyMeter) -> float:
    return sum(meter.read().values())
