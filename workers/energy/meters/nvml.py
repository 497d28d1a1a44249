"""NVIDIA GPUs through NVML (`nvidia-ml-py`): the board's total-energy counter.

GPUs older than Volta lack the counter; for them a thread samples power every
`sample_interval_s` and integrates it. The counter covers the whole board, which is
why greenq runs one worker process per GPU.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from greenq.workers.energy.meters import Component, Source


class NvmlMeter:
    source: Source = "nvml"

    def __init__(self, device_index: int = 0, nvml: Any = None, sample_interval_s: float = 0.05) -> None:
        """`nvml`: the `pynvml` module (from nvidia-ml-py; the default) or a stand-in with its functions."""
        if nvml is None:
            import pynvml  # from nvidia-ml-py

            nvml = pynvml
        self._nvml = nvml
        nvml.nvmlInit()
        self._handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
        self._integrated_j = 0.0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        try:
            nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
            self.has_energy_counter = True
        except nvml.NVMLError:
            self.has_energy_counter = False
            self._interval_s = sample_interval_s
            self._sampler = threading.Thread(target=self._sample, name="greenq-nvml-power", daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self._interval_s):
            watts = self._nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
            now = time.monotonic()
            with self._lock:
                self._integrated_j += watts * (now - last)
            last = now

    def read(self) -> dict[Component, float]:
        if self.has_energy_counter:
            return {"gpu": self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / 1000.0}
        with self._lock:
            return {"gpu": self._integrated_j}

    def gauges(self) -> dict[str, float]:
        """Power (W), utilisation (0–1) and memory used (bytes), for the metrics endpoint."""
        nvml = self._nvml
        memory = nvml.nvmlDeviceGetMemoryInfo(self._handle)
        return {
            "power_watts": nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0,
            "utilization_ratio": nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100.0,
            "memory_used_bytes": float(memory.used),
        }

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=1)
        self._nvml.nvmlShutdown()
