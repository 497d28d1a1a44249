"""Carbon: grams CO2e from joules and a grid intensity, with pluggable intensity sources.

grams = joules × intensity (g/kWh) / 3.6e6 × PUE. Location-based intensity, no offsets.
"""

from __future__ import annotations

import csv
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Protocol

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


def _parse_time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class FileIntensity:
    """A CSV file with columns `time` (ISO 8601 or Unix seconds) and `g_per_kwh`.

    The value in force at a time is the latest row at or before it (the first row before
    the file's start). The file is re-read when it changes.
    """

    name = "file"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime = -1.0
        self._rows: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        mtime = self._path.stat().st_mtime
        if mtime == self._mtime:
            return
        with self._path.open(newline="") as f:
            rows = sorted((_parse_time(r["time"]), float(r["g_per_kwh"])) for r in csv.DictReader(f))
        if not rows:
            raise ValueError(f"{self._path}: no intensity rows (columns: time,g_per_kwh)")
        self._rows, self._mtime = rows, mtime

    def grams_per_kwh(self, at: float) -> float:
        with self._lock:
            self._load()
            value = self._rows[0][1]
            for when, grams in self._rows:
                if when > at:
                    break
                value = grams
            return value


class HttpIntensity:
    """The Carbon Aware SDK's web API: GET {base}/emissions/bylocation?location=…, latest rating."""

    name = "http"

    def __init__(self, base_url: str, location: str, timeout_s: float = 5.0) -> None:
        self._url = f"{base_url.rstrip('/')}/emissions/bylocation?location={location}"
        self._timeout_s = timeout_s

    def grams_per_kwh(self, at: float) -> float:
        with urllib.request.urlopen(self._url, timeout=self._timeout_s) as response:  # noqa: S310 (configured URL)
            rows = json.load(response)
        latest = max(rows, key=lambda r: r["time"])
        return float(latest["rating"])


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


def intensity_source(
    static_g_per_kwh: float, file: Path | None, url: str, location: str, cache_s: float
) -> IntensitySource:
    """The configured source: a file, else an HTTP service, else the static value; cached."""
    source: IntensitySource
    if file is not None:
        source = FileIntensity(file)
    elif url:
        source = HttpIntensity(url, location)
    else:
        return StaticIntensity(static_g_per_kwh)
    return CachedIntensity(source, cache_s, fallback_g_per_kwh=static_g_per_kwh)
