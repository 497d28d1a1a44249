"""Carbon: grams CO2e from joules and a grid intensity, with pluggable intensity sources.

grams = joules × intensity (g/kWh) / 3.6e6 × PUE. Location-based intensity, no offsets.
The sources that read a trace or a web API, and their forecasts, are in greenq.workers.energy.forecasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from greenq.shared.settings import Settings
from greenq.workers.energy.forecasts import (
    CarbonAwareSdk,
    CsvTrace,
    ForecastPoint,
    ForecastSource,
    ForecastUnavailable,
    UkCarbonIntensity,
    overlapping,
)

JOULES_PER_KWH = 3.6e6


def co2e_grams(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    return energy_j * intensity_g_per_kwh / JOULES_PER_KWH * pue


class IntensitySource(Protocol):
    name: str

    def grams_per_kwh(self, at: float) -> float:
        """Grid intensity in force at Unix time `at`."""
        ...


class StaticIntensity:
    """One value for the region, from settings."""

    name = "static"

    def __init__(self, grams_per_kwh: float) -> None:
        self._value = grams_per_kwh

    def grams_per_kwh(self, at: float) -> float:
        return self._value

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        raise ForecastUnavailable("a static intensity has no forecast")


class CachedIntensity:
    """Ask the source at most once per `ttl_s`; on an error keep the last good value."""

    def __init__(
        self, source: IntensitySource, ttl_s: float, fallback_g_per_kwh: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.name = source.name
        self._source = source
        self._ttl_s = ttl_s
        self._clock = clock
        self._value = fallback_g_per_kwh
        self._fetched_at = -float("inf")
        self._lock = threading.Lock()

    def grams_per_kwh(self, at: float) -> float:
        with self._lock:
            now = self._clock()
            if now - self._fetched_at >= self._ttl_s:
                try:
                    self._value = self._source.grams_per_kwh(at)
                except Exception:  # a flaky intensity service must not fail jobs
                    pass
                self._fetched_at = now
            return self._value


class CachedForecast(CachedIntensity):
    """A CachedIntensity over a ForecastSource that caches `forecast` too: one fetch per `ttl_s`, of
    at least [now, now + horizon_s); on an error the last good forecast while it still covers now."""

    def __init__(
        self,
        source: ForecastSource,
        ttl_s: float,
        fallback_g_per_kwh: float,
        clock: Callable[[], float] = time.time,
        horizon_s: float = 48 * 3600.0,
    ) -> None:
        super().__init__(source, ttl_s, fallback_g_per_kwh, clock)
        self._forecaster = source
        self._horizon_s = horizon_s
        self._points: list[ForecastPoint] = []
        self._window_s = (0.0, 0.0)  # what the last fetch asked for
        self._forecast_at = -float("inf")
        self._forecast_error = ""
        self._forecast_lock = threading.Lock()

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        with self._forecast_lock:
            now = self._clock()
            inside = self._window_s[0] <= start_s and end_s <= self._window_s[1]
            if now - self._forecast_at >= self._ttl_s or not inside:
                self._window_s = (min(start_s, now), max(end_s, now + self._horizon_s))
                self._forecast_at = now
                try:
                    self._points, self._forecast_error = self._forecaster.forecast(*self._window_s), ""
                except Exception as exc:  # a flaky forecast service leaves the scheduler without a forecast
                    self._forecast_error = str(exc) or type(exc).__name__
            points = self._points
            if self._forecast_error and not any(p.start_s <= now < p.end_s for p in points):
                raise ForecastUnavailable(f"{self.name}: {self._forecast_error}")
        known = overlapping(points, start_s, end_s)
        if not known:
            raise ForecastUnavailable(f"{self.name}: no forecast for the window")
        return known


IntensityApi = Literal["carbon-aware-sdk", "uk-carbon-intensity"]


def intensity_source(
    static_g_per_kwh: float,
    file: Path | None,
    url: str,
    location: str,
    cache_s: float,
    api: IntensityApi = "carbon-aware-sdk",
) -> ForecastSource:
    """The configured source: a CSV trace, else the web API `api` at `url`, else the static value; cached."""
    source: ForecastSource
    if file is not None:
        source = CsvTrace(file)
    elif url and api == "carbon-aware-sdk":
        source = CarbonAwareSdk(url, location)
    elif url and api == "uk-carbon-intensity":
        source = UkCarbonIntensity(url)
    elif url:
        raise ValueError(f"unknown carbon intensity API {api!r}: use 'carbon-aware-sdk' or 'uk-carbon-intensity'")
    else:
        return StaticIntensity(static_g_per_kwh)
    return CachedForecast(source, cache_s, fallback_g_per_kwh=static_g_per_kwh)


def configured_intensity(settings: Settings) -> ForecastSource:
    """`intensity_source` as GREENQ_CARBON_* configure it (workers and the scheduler read the same grid)."""
    return intensity_source(
        settings.carbon_intensity_g_per_kwh,
        settings.carbon_intensity_file,
        settings.carbon_intensity_url,
        settings.carbon_location,
        settings.carbon_cache_s,
        settings.carbon_intensity_api,
    )
