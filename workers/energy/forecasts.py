"""Carbon-intensity forecasts: what the grid will emit per kWh, from a CSV trace or a web API.

Every source here is also an `IntensitySource` (greenq.workers.energy.carbon): `grams_per_kwh(at)` is the
value in force at `at`, and `forecast(start_s, end_s)` the points the source knows for a window.

>>> trace = CsvTrace(Path("caiso_north_2023-06_5min.csv"))
>>> points = trace.forecast(start_s=1686182400.0, end_s=1686182400.0 + 4 * 3600)
>>> cleanest = min(points, key=lambda p: p.g_per_kwh)
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import http.client
import itertools
import json
import re
import statistics
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

G_PER_KWH_PER_LB_PER_MWH = 0.45359237  # 1 lb/MWh = 453.59237 g / 1000 kWh
MAX_BODY_BYTES = 4 * 1024 * 1024
VALUE_COLUMNS = {"value": 1.0, "g_per_kwh": 1.0, "moer_lbs_per_mwh": G_PER_KWH_PER_LB_PER_MWH}  # to g/kWh


class ForecastUnavailable(Exception):
    """The source failed or knows nothing for the window; a scheduler treats it as "no forecast"."""


@dataclass(frozen=True)
class ForecastPoint:
    """Grid intensity `g_per_kwh` (g CO2e/kWh) over [start_s, end_s), Unix seconds."""

    start_s: float
    end_s: float
    g_per_kwh: float


class ForecastSource(Protocol):
    """An `IntensitySource` that also forecasts. Its members are restated rather than inherited so that
    carbon.py (the Protocol's home and the factory) can import this module without an import cycle;
    structurally it is one, and mypy accepts a ForecastSource wherever an IntensitySource is asked for."""

    name: str

    def grams_per_kwh(self, at: float) -> float:
        """Grid intensity in force at Unix time `at`."""
        ...

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        """Points overlapping [start_s, end_s), by start; may end early. Raises ForecastUnavailable."""
        ...


def overlapping(points: list[ForecastPoint], start_s: float, end_s: float) -> list[ForecastPoint]:
    """The points that overlap [start_s, end_s), ordered by start."""
    return sorted((p for p in points if p.end_s > start_s and p.start_s < end_s), key=lambda p: p.start_s)


def parse_time_s(text: str) -> float:
    """Unix seconds from Unix seconds or ISO 8601 (naive means UTC; any fraction length)."""
    try:
        return float(text)
    except ValueError:
        pass
    iso = re.sub(r"(\.\d{1,6})\d*", lambda m: m.group(1).ljust(7, "0"), text.strip().replace("Z", "+00:00"))
    when = datetime.fromisoformat(iso)
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _iso(at_s: float, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.fromtimestamp(at_s, tz=timezone.utc).strftime(fmt)


class CsvTrace:
    """A CSV trace: `time` (ISO 8601, naive = UTC, or Unix seconds) and one value column, `value` or
    `g_per_kwh` (g CO2e/kWh) or `moer_lbs_per_mwh` (WattTime MOER, lb/MWh, converted to g/kWh).

    Each row holds until the next; the last for the median step. Before the first row, the first
    row's value is in force. The file is re-read when its mtime changes.
    """

    name = "csv"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime_ns = -1
        self._times_s: list[float] = []
        self._values: list[float] = []
        self._last_step_s = 0.0
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        mtime_ns = self._path.stat().st_mtime_ns
        if mtime_ns == self._mtime_ns:
            return
        expected = f"expected columns: time and one of {', '.join(VALUE_COLUMNS)}"
        with self._path.open(newline="") as f:
            reader = csv.DictReader(f)
            columns = set(reader.fieldnames or [])
            value_columns = sorted(columns & VALUE_COLUMNS.keys())
            if "time" not in columns or len(value_columns) != 1:
                raise ValueError(f"{self._path}: columns {sorted(columns)}; {expected}")
            column = value_columns[0]
            try:
                rows = {parse_time_s(r["time"]): float(r[column]) * VALUE_COLUMNS[column] for r in reader}
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{self._path}: unreadable row ({exc}); {expected}") from exc
        if not rows:
            raise ValueError(f"{self._path}: no rows; {expected}")
        self._times_s = sorted(rows)
        self._values = [rows[t] for t in self._times_s]
        steps = [b - a for a, b in itertools.pairwise(self._times_s)]
        self._last_step_s = statistics.median(steps) if steps else float("inf")
        self._mtime_ns = mtime_ns

    def grams_per_kwh(self, at: float) -> float:
        with self._lock:
            self._load()
            return self._values[max(bisect.bisect_right(self._times_s, at) - 1, 0)]

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        with self._lock:
            try:
                self._load()
            except (OSError, ValueError) as exc:
                raise ForecastUnavailable(f"{self._path}: {exc}") from exc
            times, values = self._times_s, self._values
            points = []
            i = max(bisect.bisect_right(times, start_s) - 1, 0)
            while i < len(times) and times[i] < end_s:
                until_s = times[i + 1] if i + 1 < len(times) else times[i] + self._last_step_s
                if until_s > start_s:
                    points.append(ForecastPoint(times[i], until_s, values[i]))
                i += 1
        if not points:
            raise ForecastUnavailable(f"{self._path}: no rows between {_iso(start_s)} and {_iso(end_s)}")
        return points


def _safe_url(url: str) -> str:
    """The URL for messages: no user:password and no query string (either could hold a key)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _checked_base_url(base_url: str) -> str:
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise ValueError(f"carbon intensity URL {_safe_url(base_url)!r} must start with http:// or https://")
    return base_url.rstrip("/")


def get_json(url: str, timeout_s: float) -> Any:
    """GET a JSON body of at most MAX_BODY_BYTES; any failure is a ForecastUnavailable naming the URL."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (http(s) checked)
            body = response.read(MAX_BODY_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise ForecastUnavailable(f"GET {_safe_url(url)}: {exc}") from exc
    if len(body) > MAX_BODY_BYTES:
        raise ForecastUnavailable(f"GET {_safe_url(url)}: response over {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ForecastUnavailable(f"GET {_safe_url(url)}: not JSON ({exc})") from exc


class CarbonAwareSdk:
    """The Green Software Foundation's Carbon Aware SDK web API, for one location.

    `grams_per_kwh`: GET /emissions/bylocation (rows `{location, time, rating}`); `forecast`:
    GET /emissions/forecasts/current (forecasts with `forecastData` points `{timestamp, duration
    (minutes), value}`), unscoped because the API rejects bounds outside its data, then clipped here.
    """

    name = "carbon-aware-sdk"
    window_s = 3600.0  # bylocation asks for [at - window_s, at + window_s]

    def __init__(self, base_url: str, location: str, timeout_s: float = 5.0) -> None:
        if not location:
            raise ValueError("the Carbon Aware SDK needs a location (GREENQ_CARBON_LOCATION, e.g. 'westeurope')")
        self._base_url = _checked_base_url(base_url)
        self._location = location
        self._timeout_s = timeout_s

    def grams_per_kwh(self, at: float) -> float:
        """The rating in force at `at` (latest at or before it), else the latest one returned."""
        query = {"location": self._location, "time": _iso(at - self.window_s), "toTime": _iso(at + self.window_s)}
        url = f"{self._base_url}/emissions/bylocation?{urllib.parse.urlencode(query)}"
        try:
            rows = [(parse_time_s(r["time"]), float(r["rating"])) for r in get_json(url, self._timeout_s)]
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ForecastUnavailable(f"GET {_safe_url(url)}: unexpected response ({exc!r})") from exc
        if not rows:
            raise ForecastUnavailable(f"GET {_safe_url(url)}: no ratings for {self._location}")
        in_force = [row for row in rows if row[0] <= at]
        return max(in_force or rows)[1]

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        url = f"{self._base_url}/emissions/forecasts/current?{urllib.parse.urlencode({'location': self._location})}"
        try:
            points = []
            for forecast in get_json(url, self._timeout_s):  # one per location asked for
                for point in forecast["forecastData"]:
                    start = parse_time_s(point["timestamp"])
                    points.append(ForecastPoint(start, start + float(point["duration"]) * 60, float(point["value"])))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ForecastUnavailable(f"GET {_safe_url(url)}: unexpected response ({exc!r})") from exc
        known = overlapping(points, start_s, end_s)
        if not known:
            raise ForecastUnavailable(f"GET {_safe_url(url)}: no forecast for {self._location} in the window")
        return known


class UkCarbonIntensity:
    """National Grid ESO's Carbon Intensity API for Great Britain (national, half-hour points).

    GET /intensity/{from}/fw24h gives `{"data": [{from, to, intensity: {forecast, actual, index}}]}`;
    a point's value is its `actual` where known, else its `forecast`.
    """

    name = "uk-carbon-intensity"

    def __init__(self, base_url: str = "https://api.carbonintensity.org.uk", timeout_s: float = 5.0) -> None:
        self._base_url = _checked_base_url(base_url)
        self._timeout_s = timeout_s

    def _points(self, from_s: float) -> list[ForecastPoint]:
        url = f"{self._base_url}/intensity/{_iso(from_s, '%Y-%m-%dT%H:%MZ')}/fw24h"
        try:
            points = []
            for row in get_json(url, self._timeout_s)["data"]:
                intensity = row["intensity"]
                value = intensity["actual"] if intensity.get("actual") is not None else intensity["forecast"]
                points.append(ForecastPoint(parse_time_s(row["from"]), parse_time_s(row["to"]), float(value)))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ForecastUnavailable(f"GET {_safe_url(url)}: unexpected response ({exc!r})") from exc
        if not points:
            raise ForecastUnavailable(f"GET {_safe_url(url)}: no data")
        return sorted(points, key=lambda p: p.start_s)

    def grams_per_kwh(self, at: float) -> float:
        return self._points(at)[0].g_per_kwh

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        known = overlapping(self._points(start_s), start_s, end_s)
        if not known:
            raise ForecastUnavailable(
                f"{_safe_url(self._base_url)}: no forecast between {_iso(start_s)} and {_iso(end_s)}"
            )
        return known


class NoisyForecast:
    """A forecast with a known error: each point × (1 + e), e uniform in ±error_fraction, the same
    e every time for a given (seed, point start); `grams_per_kwh` stays the truth.

    >>> forecast = NoisyForecast(CsvTrace(path), error_fraction=0.1, seed=7)  # a ±10 % forecast
    """

    def __init__(self, source: ForecastSource, error_fraction: float, seed: int) -> None:
        if not 0.0 <= error_fraction <= 1.0:
            raise ValueError(f"error_fraction must be within [0, 1], got {error_fraction}")
        self.name = f"{source.name}+noise"
        self._source = source
        self._error_fraction = error_fraction
        self._seed = seed

    def error(self, start_s: float) -> float:
        """The relative error for the point starting at `start_s`, in [-error_fraction, +error_fraction]."""
        digest = hashlib.blake2b(f"{self._seed}:{start_s!r}".encode(), digest_size=8).digest()
        unit = int.from_bytes(digest, "big") / (2**64 - 1)  # in [0, 1]
        return (2 * unit - 1) * self._error_fraction

    def grams_per_kwh(self, at: float) -> float:
        return self._source.grams_per_kwh(at)

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        return [
            ForecastPoint(p.start_s, p.end_s, p.g_per_kwh * (1 + self.error(p.start_s)))
            for p in self._source.forecast(start_s, end_s)
        ]
