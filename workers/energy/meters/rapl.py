"""CPU package and DRAM energy from Intel/AMD RAPL through the powercap sysfs tree.

Each zone's `energy_uj` counts microjoules and wraps at `max_energy_range_uj`; a reading
below the previous one means it wrapped once (readings are taken far more often than
the minutes a wrap takes). The root is configurable so tests can use a fake tree.
"""

from __future__ import annotations

import threading
from pathlib import Path

from greenq.workers.energy.meters import Component, Source

DEFAULT_ROOT = Path("/sys/class/powercap")


class _Zone:
    def __init__(self, path: Path, component: Component) -> None:
        self.path = path
        self.component = component
        self.max_uj = int((path / "max_energy_range_uj").read_text())
        self.last_uj = int((path / "energy_uj").read_text())
        self.total_uj = 0

    def advance(self) -> int:
        now_uj = int((self.path / "energy_uj").read_text())
        delta = now_uj - self.last_uj
        if delta < 0:  # wrapped around
            delta += self.max_uj
        self.last_uj = now_uj
        self.total_uj += delta
        return self.total_uj


def find_zones(root: Path) -> list[tuple[Path, Component]]:
    """Top-level package zones (`intel-rapl:N`) and their `dram` subzones."""
    zones: list[tuple[Path, Component]] = []
    for package in sorted(root.glob("intel-rapl:[0-9]*")):
        if ":" in package.name.split("intel-rapl:", 1)[1]:
            continue  # a subzone, reached below
        if not (package / "energy_uj").exists():
            continue
        zones.append((package, "cpu"))
        for sub in sorted(package.glob(f"{package.name}:*")):
            if (sub / "name").exists() and (sub / "name").read_text().strip() == "dram":
                zones.append((sub, "dram"))
    return zones


class RaplMeter:
    source: Source = "rapl"

    def __init__(self, root: Path = DEFAULT_ROOT) -> None:
        found = find_zones(root)
        if not found:
            raise OSError(f"no readable RAPL zones under {root}")
        self._zones = [_Zone(path, component) for path, component in found]
        self._lock = threading.Lock()

    def read(self) -> dict[Component, float]:
        totals: dict[Component, float] = {}
        with self._lock:
            for zone in self._zones:
                totals[zone.component] = totals.get(zone.component, 0.0) + zone.advance() / 1e6
        return totals

    def close(self) -> None:
        pass
