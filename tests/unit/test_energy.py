"""Meters against fakes, attribution that adds up, carbon arithmetic, idle vs active."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenq.workers.energy.accountant import EnergyAccountant
from greenq.workers.energy.attribution import attribute_energy, split_microjoules
from greenq.workers.energy.carbon import CachedIntensity, StaticIntensity, co2e_grams
from greenq.workers.energy.forecasts import CsvTrace
from greenq.workers.energy.meters.estimate import CpuTimeEstimateMeter
from greenq.workers.energy.meters.nvml import NvmlMeter
from greenq.workers.energy.meters.rapl import RaplMeter


class FakeNvml:
    """Just enough of pynvml: a total-energy counter (mJ) that advances 250 mJ per read."""

    class NVMLError(Exception):
        pass

    def __init__(self, has_counter: bool = True) -> None:
        self.energy_mj = 1_000_000
        self.has_counter = has_counter
        self.shutdown = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: str) -> int:
        if not self.has_counter:
            raise self.NVMLError("not supported")
        self.energy_mj += 250
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        return 200_000  # mW

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(gpu=75)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(used=3 * 2**30)


def test_nvml_counter_difference_is_energy() -> None:
    meter = NvmlMeter(0, nvml=FakeNvml())
    first, second = meter.read()["gpu"], meter.read()["gpu"]
    assert second - first == pytest.approx(0.25)
    assert meter.gauges() == {"power_watts": 200.0, "utilization_ratio": 0.75, "memory_used_bytes": 3 * 2**30}
    meter.close()


def test_nvml_without_counter_integrates_power() -> None:
    import time

    fake = FakeNvml(has_counter=False)
    meter = NvmlMeter(0, nvml=fake, sample_interval_s=0.01)
    assert not meter.has_energy_counter
    time.sleep(0.2)
    joules = meter.read()["gpu"]
    meter.close()
    assert 20 < joules < 80  # ≈ 200 W × 0.2 s, allowing for scheduling jitter
    assert fake.shutdown


def _zone(path: Path, energy_uj: int, max_uj: int, name: str) -> None:
    path.mkdir(parents=True)
    (path / "energy_uj").write_text(str(energy_uj))
    (path / "max_energy_range_uj").write_text(str(max_uj))
    (path / "name").write_text(name)


def test_rapl_package_and_dram_with_wraparound(tmp_path: Path) -> None:
    package = tmp_path / "intel-rapl:0"
    _zone(package, 999_000_000, 1_000_000_000, "package-0")
    _zone(package / "intel-rapl:0:0", 5_000_000, 1_000_000_000, "dram")
    _zone(package / "intel-rapl:0:1", 1, 1_000_000_000, "core")  # inside the package total: not counted twice
    meter = RaplMeter(tmp_path)
    start = meter.read()
    (package / "energy_uj").write_text(str(2_000_000))  # wrapped: 1,000,000 to the top, 2,000,000 after
    (package / "intel-rapl:0:0" / "energy_uj").write_text(str(6_500_000))
    end = meter.read()
    assert end["cpu"] - start["cpu"] == pytest.approx(3.0)
    assert end["dram"] - start["dram"] == pytest.approx(1.5)


def test_rapl_refuses_an_empty_tree(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="no readable RAPL zones"):
        RaplMeter(tmp_path)


def test_estimate_is_cpu_time_times_watts() -> None:
    seconds = iter([2.0, 2.5])
    meter = CpuTimeEstimateMeter(watts_per_core=12.0, cpu_time_s=lambda: next(seconds))
    assert meter.source == "estimate"
    assert meter.read()["cpu"] == 24.0 and meter.read()["cpu"] == 30.0


@given(
    total_uj=st.integers(min_value=0, max_value=10**13),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=64),
)
def test_shares_add_up_exactly(total_uj: int, weights: list[int]) -> None:
    shares = split_microjoules(total_uj, weights)
    assert sum(shares) == total_uj and len(shares) == len(weights)
    assert all(s >= 0 for s in shares)


def test_attribution_follows_tokens() -> None:
    assert attribute_energy(3.0, [100, 200]) == [1.0, 2.0]
    assert attribute_energy(1.0, [0, 0]) == [0.5, 0.5]


def test_carbon_formula() -> None:
    assert co2e_grams(50, 400) == pytest.approx(0.0055556, rel=1e-4)  # the energy note's example
    assert co2e_grams(3.6e6, 100, pue=1.5) == pytest.approx(150.0)


def test_csv_trace_picks_the_value_in_force(tmp_path: Path) -> None:
    path = tmp_path / "grid.csv"
    path.write_text("time,g_per_kwh\n2026-11-29T00:00:00Z,300\n2026-11-29T12:00:00+00:00,150\n")
    source = CsvTrace(path)
    noon = 1_795_953_600.0  # 2026-11-29T12:00:00Z
    assert source.grams_per_kwh(noon - 1) == 300 and source.grams_per_kwh(noon + 1) == 150


def test_cached_intensity_asks_once_per_ttl_and_survives_errors() -> None:
    calls: list[float] = []
    now = [0.0]

    class Flaky:
        name = "flaky"

        def grams_per_kwh(self, at: float) -> float:
            calls.append(at)
            if len(calls) > 1:
                raise OSError("down")
            return 222.0

    cached = CachedIntensity(Flaky(), ttl_s=60, fallback_g_per_kwh=400, clock=lambda: now[0])
    assert cached.grams_per_kwh(0) == 222.0 and cached.grams_per_kwh(1) == 222.0 and len(calls) == 1
    now[0] = 61.0
    assert cached.grams_per_kwh(61) == 222.0 and len(calls) == 2


def test_accountant_keeps_idle_apart_and_shares_active() -> None:
    readings = iter([0.0, 10.0, 16.0])  # construction, batch start (10 J idle), batch end (6 J active)
    meter = CpuTimeEstimateMeter(watts_per_core=1.0, cpu_time_s=lambda: next(readings))
    booked: list[tuple[str, str, str, float]] = []
    accountant = EnergyAccountant(meter, StaticIntensity(360.0), sink=lambda *a: booked.append(a))
    start = accountant.batch_started()
    shares = accountant.batch_finished(start, [1, 2])
    assert booked == [("cpu", "estimate", "idle", 10.0), ("cpu", "estimate", "active", 6.0)]
    assert [s.energy_j for s in shares] == [2.0, 4.0]
    assert shares[1].co2e_g == pytest.approx(4.0 * 360 / 3.6e6) and shares[0].source == "estimate"
