"""Device specs → the devices a launcher starts workers on. No torch import: CUDA stays untouched."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DEVICE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" | "cuda"
    index: int | None = None  # None: plain "cpu"

    @property
    def label(self) -> str:
        """The physical device, as reported in results: "cpu", "cpu:1", "cuda:3"."""
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def node_prefix(self) -> str:
        """Celery node name prefix: "cpu", "cpu1", "cuda3"."""
        return self.kind if self.index is None else f"{self.kind}{self.index}"


def parse_devices(spec: str, gpu_count: int) -> list[Device]:
    """`cpu`, `cpu:0,cpu:1`, `cuda:0,cuda:1`, `0,1` (GPUs) or `all` (every GPU, else the CPU)."""
    spec = spec.strip().lower()
    if spec == "all":
        return [Device("cuda", i) for i in range(gpu_count)] or [Device("cpu")]
    devices: list[Device] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if part.isdigit():
            part = f"cuda:{part}"
        match = _DEVICE.match(part)
        if not match:
            raise ValueError(f"--devices: {part!r} is not a device; use cpu, cpu:N, cuda:N, N or all")
        index = None if match[2] is None else int(match[2])
        if match[1] == "cuda" and index is None:
            index = 0
        device = Device(match[1], index)
        if device.kind == "cuda" and (device.index or 0) >= gpu_count:
            raise ValueError(f"--devices: {part} does not exist; this machine has {gpu_count} GPU(s)")
        if device in devices:
            raise ValueError(f"--devices: {part} is listed twice")
        devices.append(device)
    if not devices:
        raise ValueError("--devices: no device given")
    return devices


def count_gpus() -> int:
    """NVIDIA GPUs visible through NVML (nvidia-ml-py), or 0 without it or a driver."""
    try:
        import pynvml  # provided by nvidia-ml-py
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return 0
