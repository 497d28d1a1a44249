"""Forecast sources: the CSV trace, the two web APIs against a local HTTP server, noise, caching, the factory."""

from __future__ import annotations

import csv
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from greenq.workers.energy import forecasts
from greenq.workers.energy.carbon import CachedForecast, IntensitySource, StaticIntensity, intensity_source
from greenq.workers.energy.forecasts import (
    CarbonAwareSdk,
    CsvTrace,
    ForecastPoint,
    ForecastSource,
    ForecastUnavailable,
    NoisyForecast,
    UkCarbonIntensity,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "carbon"
EXCERPT = FIXTURES / "caiso_north_excerpt.csv"
LB_PER_MWH = 0.45359237  # g/kWh


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


TRACE_START_S = utc("2023-06-08T00:00")


def excerpt_rows() -> list[tuple[float, float]]:
    with EXCERPT.open(newline="") as f:
        return [(utc(r["time"]), float(r["moer_lbs_per_mwh"]) * LB_PER_MWH) for r in csv.DictReader(f)]


# ---------------------------------------------------------------- CsvTrace


def test_the_excerpt_is_600_five_minute_rows_in_lb_per_mwh() -> None:
    rows = excerpt_rows()
    assert len(rows) == 600 and rows[0][0] == TRACE_START_S
    assert {b[0] - a[0] for a, b in itertools.pairwise(rows)} == {300.0}


def test_csv_trace_value_in_force_matches_a_linear_scan() -> None:
    rows = excerpt_rows()
    trace = CsvTrace(EXCERPT)
    for at in [TRACE_START_S - 86_400, TRACE_START_S, TRACE_START_S + 299, TRACE_START_S + 300]:
        expected = next((g for t, g in reversed(rows) if t <= at), rows[0][1])
        assert trace.grams_per_kwh(at) == pytest.approx(expected)
    for k in range(0, 600 * 300 + 3600, 137):
        at = TRACE_START_S + k
        assert trace.grams_per_kwh(at) == pytest.approx(next(g for t, g in reversed(rows) if t <= at))


def test_csv_trace_converts_lb_per_mwh_to_g_per_kwh() -> None:
    assert CsvTrace(EXCERPT).grams_per_kwh(TRACE_START_S) == pytest.approx(425.01605069 * 0.45359237)


def test_csv_trace_forecast_holds_each_row_until_the_next() -> None:
    trace = CsvTrace(EXCERPT)
    points = trace.forecast(TRACE_START_S + 150, TRACE_START_S + 3600)
    assert len(points) == 12 and points[0].start_s == TRACE_START_S  # the row in force at the start
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(points))
    assert [p.g_per_kwh for p in points] == pytest.approx([g for _, g in excerpt_rows()[:12]])


def test_csv_trace_forecast_ends_with_the_trace_and_the_last_row_lasts_the_median_step() -> None:
    trace = CsvTrace(EXCERPT)
    last_s = TRACE_START_S + 599 * 300
    points = trace.forecast(last_s - 600, last_s + 86_400)
    assert [(p.start_s, p.end_s) for p in points] == [
        (last_s - 600, last_s - 300),
        (last_s - 300, last_s),
        (last_s, last_s + 300),
    ]
    with pytest.raises(ForecastUnavailable):
        trace.forecast(last_s + 300, last_s + 3600)
    with pytest.raises(ForecastUnavailable):
        trace.forecast(TRACE_START_S - 3600, TRACE_START_S)


@pytest.mark.parametrize(
    ("header", "when", "expected"),
    [
        ("time,value", "1686182400", 210.0),
        ("time,g_per_kwh", "2023-06-08T00:00:00Z", 210.0),
        ("time,g_per_kwh", "2023-06-08 00:00:00", 210.0),  # naive is UTC
        ("time,g_per_kwh", "2023-06-08T02:00:00+02:00", 210.0),
        ("time,moer_lbs_per_mwh", "2023-06-08T00:00:00", 210.0 * LB_PER_MWH),
    ],
)
def test_csv_trace_reads_each_value_column_and_time_format(
    tmp_path: Path, header: str, when: str, expected: float
) -> None:
    path = tmp_path / "trace.csv"
    path.write_text(f"{header}\n{when},210\n")
    trace = CsvTrace(path)
    assert trace.grams_per_kwh(TRACE_START_S) == pytest.approx(expected)
    [point] = trace.forecast(TRACE_START_S, TRACE_START_S + 60)  # one row: it holds for good
    assert (point.start_s, point.end_s) == (TRACE_START_S, float("inf"))
    assert point.g_per_kwh == pytest.approx(expected)


@pytest.mark.parametrize("header", ["time,watts", "when,g_per_kwh", "time,g_per_kwh,moer_lbs_per_mwh", ""])
def test_csv_trace_names_the_file_and_the_expected_columns_when_they_are_wrong(tmp_path: Path, header: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{header}\n2023-06-08T00:00:00Z,1,2\n" if header else "")
    with pytest.raises(ValueError) as error:
        CsvTrace(path)
    assert str(path) in str(error.value)
    assert all(column in str(error.value) for column in ("time", "value", "g_per_kwh", "moer_lbs_per_mwh"))


def test_csv_trace_rejects_an_unreadable_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time,g_per_kwh\n2023-06-08T00:00:00Z,lots\n")
    with pytest.raises(ValueError, match="bad.csv"):
        CsvTrace(path)


def test_csv_trace_rereads_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_text("time,g_per_kwh\n1686182400,300\n")
    trace = CsvTrace(path)
    assert trace.grams_per_kwh(TRACE_START_S) == 300
    path.write_text("time,g_per_kwh\n1686182400,120\n")
    os.utime(path, ns=(time.time_ns(), path.stat().st_mtime_ns + 1_000_000_000))
    assert trace.grams_per_kwh(TRACE_START_S) == 120
    assert trace.forecast(TRACE_START_S, TRACE_START_S + 1)[0].g_per_kwh == 120


def test_every_source_is_an_intensity_source() -> None:
    sources: list[IntensitySource] = [CsvTrace(EXCERPT), StaticIntensity(400.0)]  # mypy checks the Protocols
    assert [s.name for s in sources] == ["csv", "static"]


# ---------------------------------------------------------------- NoisyForecast


def test_noisy_forecast_stays_within_the_error_and_keeps_the_truth() -> None:
    trace = CsvTrace(EXCERPT)
    noisy = NoisyForecast(trace, error_fraction=0.1, seed=7)
    window = (TRACE_START_S, TRACE_START_S + 600 * 300)
    truth, guessed = trace.forecast(*window), noisy.forecast(*window)
    ratios = [g.g_per_kwh / t.g_per_kwh for t, g in zip(truth, guessed, strict=True)]
    assert [(g.start_s, g.end_s) for g in guessed] == [(t.start_s, t.end_s) for t in truth]
    assert all(0.9 <= r <= 1.1 for r in ratios)
    assert min(ratios) < 0.92 and max(ratios) > 1.08 and abs(sum(ratios) / len(ratios) - 1) < 0.01  # uses the range
    assert noisy.grams_per_kwh(TRACE_START_S + 1000) == trace.grams_per_kwh(TRACE_START_S + 1000)


def test_noisy_forecast_gives_a_point_the_same_error_every_time() -> None:
    trace = CsvTrace(EXCERPT)
    noisy = NoisyForecast(trace, error_fraction=0.1, seed=7)
    wide = {p.start_s: p.g_per_kwh for p in noisy.forecast(TRACE_START_S, TRACE_START_S + 7200)}
    narrow = noisy.forecast(TRACE_START_S + 1800, TRACE_START_S + 3600)
    assert all(wide[p.start_s] == p.g_per_kwh for p in narrow)
    again = NoisyForecast(trace, 0.1, seed=7).forecast(TRACE_START_S, TRACE_START_S + 7200)
    assert again == [ForecastPoint(s, s + 300, g) for s, g in wide.items()]
    assert NoisyForecast(trace, 0.1, seed=8).forecast(TRACE_START_S, TRACE_START_S + 7200) != again
    assert NoisyForecast(trace, 0.0, seed=7).forecast(TRACE_START_S, TRACE_START_S + 7200) == trace.forecast(
        TRACE_START_S, TRACE_START_S + 7200
    )
    with pytest.raises(ValueError):
        NoisyForecast(trace, error_fraction=-0.1, seed=7)


# ---------------------------------------------------------------- static, cached, factory


def test_a_static_intensity_has_no_forecast() -> None:
    with pytest.raises(ForecastUnavailable, match="static"):
        StaticIntensity(400.0).forecast(0.0, 3600.0)


@dataclass
class ScriptedForecast:
    """A ForecastSource whose forecast() plays back results (points or an exception) and counts calls."""

    results: list[list[ForecastPoint] | Exception]
    name: str = "scripted"
    asked: list[tuple[float, float]] = field(default_factory=list)

    def grams_per_kwh(self, at: float) -> float:
        return 300.0

    def forecast(self, start_s: float, end_s: float) -> list[ForecastPoint]:
        self.asked.append((start_s, end_s))
        result = self.results[min(len(self.asked), len(self.results)) - 1]
        if isinstance(result, Exception):
            raise result
        return result


HOURLY = [ForecastPoint(h * 3600.0, (h + 1) * 3600.0, 100.0 + h) for h in range(48)]


def test_cached_forecast_fetches_once_per_ttl() -> None:
    now = [0.0]
    source = ScriptedForecast([HOURLY])
    cached = CachedForecast(source, ttl_s=300, fallback_g_per_kwh=400, clock=lambda: now[0], horizon_s=24 * 3600)
    assert cached.forecast(0, 7200) == HOURLY[:2]
    now[0] = 100.0
    assert cached.forecast(100, 10_000) == HOURLY[:3] and source.asked == [(0, 24 * 3600)]
    now[0] = 300.0
    cached.forecast(300, 3600)
    assert source.asked == [(0, 24 * 3600), (300, 300 + 24 * 3600)]
    cached.forecast(300, 48 * 3600)  # beyond what was fetched: fetch again
    assert source.asked[-1] == (300, 48 * 3600) and len(source.asked) == 3


def test_cached_forecast_keeps_the_last_good_one_while_it_covers_now() -> None:
    now = [0.0]
    source = ScriptedForecast([HOURLY[:2], OSError("down")])
    cached = CachedForecast(source, ttl_s=60, fallback_g_per_kwh=400, clock=lambda: now[0], horizon_s=3600)
    assert cached.forecast(0, 3600) == HOURLY[:1]
    now[0] = 3700.0  # the fetch fails, the old forecast still covers now
    assert cached.forecast(3700, 7000) == HOURLY[1:2] and len(source.asked) == 2
    now[0] = 7300.0  # it no longer does
    with pytest.raises(ForecastUnavailable, match="down"):
        cached.forecast(7300, 9000)
    now[0] = 7310.0  # within the ttl: no new fetch, still unavailable
    with pytest.raises(ForecastUnavailable):
        cached.forecast(7310, 9000)
    assert len(source.asked) == 3


def test_cached_forecast_raises_when_the_first_fetch_fails() -> None:
    cached = CachedForecast(ScriptedForecast([ForecastUnavailable("nothing")]), ttl_s=60, fallback_g_per_kwh=400)
    with pytest.raises(ForecastUnavailable, match="nothing"):
        cached.forecast(time.time(), time.time() + 3600)


def test_the_factory_picks_the_source_and_every_one_can_forecast(tmp_path: Path) -> None:
    static = intensity_source(350.0, None, "", "", 300)
    assert isinstance(static, StaticIntensity) and static.grams_per_kwh(0) == 350.0
    trace = intensity_source(350.0, EXCERPT, "http://ignored", "", 300)
    assert isinstance(trace, CachedForecast) and trace.name == "csv"
    assert trace.forecast(TRACE_START_S, TRACE_START_S + 600)[0].start_s == TRACE_START_S
    sdk = intensity_source(350.0, None, "http://127.0.0.1:9", "westeurope", 300)
    uk = intensity_source(350.0, None, "http://127.0.0.1:9", "", 300, api="uk-carbon-intensity")
    assert (sdk.name, uk.name) == ("carbon-aware-sdk", "uk-carbon-intensity")
    with pytest.raises(ValueError, match="location"):
        intensity_source(350.0, None, "http://127.0.0.1:9", "", 300)
    with pytest.raises(ValueError, match="http"):
        intensity_source(350.0, None, "file:///etc/passwd", "", 300, api="uk-carbon-intensity")


# ---------------------------------------------------------------- the web APIs, on a local server


@dataclass
class Reply:
    body: bytes
    status: int = 200
    delay_s: float = 0.0


class FakeApi:
    """A real HTTP server on 127.0.0.1: replies by path, and remembers each request's path and query."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                api.requests.append(self.path)
                reply = api.replies.get(urlsplit(self.path).path, Reply(b'{"title": "Not Found"}', status=404))
                time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def query(self, index: int = -1) -> tuple[str, dict[str, list[str]]]:
        parts = urlsplit(self.requests[index])
        return parts.path, parse_qs(parts.query)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fake = FakeApi()
    thread = threading.Thread(target=fake.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join(timeout=5)


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


SDK_FORECAST = "/sdk/emissions/forecasts/current"
SDK_BYLOCATION = "/sdk/emissions/bylocation"
UK_FROM = utc("2018-01-20T12:00")
UK_FW24H = "/intensity/2018-01-20T12:00Z/fw24h"


def test_carbon_aware_sdk_forecast_parses_the_documented_shape(api: FakeApi) -> None:
    api.replies[SDK_FORECAST] = Reply(fixture_bytes("carbon_aware_sdk_forecast.json"))
    sdk = CarbonAwareSdk(api.base_url + "/sdk/", "northeurope")
    points = sdk.forecast(utc("2022-07-19T14:05"), utc("2022-07-20T00:00"))
    start = utc("2022-07-19T14:00")
    assert points == [
        ForecastPoint(start, start + 600, 532.02293146),
        ForecastPoint(start + 600, start + 1200, 530.5),
        ForecastPoint(start + 1200, start + 1800, 527.25),
        ForecastPoint(utc("2022-07-19T18:45"), utc("2022-07-19T18:55"), 448.4451043375),
    ]
    assert api.query() == (SDK_FORECAST, {"location": ["northeurope"]})
    with pytest.raises(ForecastUnavailable, match="no forecast"):
        sdk.forecast(utc("2022-07-21T00:00"), utc("2022-07-22T00:00"))


def test_carbon_aware_sdk_rating_is_the_one_in_force(api: FakeApi) -> None:
    api.replies[SDK_BYLOCATION] = Reply(fixture_bytes("carbon_aware_sdk_bylocation.json"))
    sdk = CarbonAwareSdk(api.base_url + "/sdk", "eastus")
    at = utc("2022-05-17T20:42:00")
    assert sdk.grams_per_kwh(at) == 66
    assert api.query() == (
        SDK_BYLOCATION,
        {"location": ["eastus"], "time": ["2022-05-17T19:42:00Z"], "toTime": ["2022-05-17T21:42:00Z"]},
    )
    assert sdk.grams_per_kwh(utc("2022-05-17T21:00")) == 70
    assert sdk.grams_per_kwh(utc("2022-05-17T20:00")) == 70  # none yet in force: the latest


def test_uk_carbon_intensity_parses_the_documented_shape(api: FakeApi) -> None:
    api.replies[UK_FW24H] = Reply(fixture_bytes("uk_fw24h.json"))
    uk = UkCarbonIntensity(api.base_url, timeout_s=2)
    assert uk.forecast(UK_FROM, UK_FROM + 3600) == [
        ForecastPoint(UK_FROM, UK_FROM + 1800, 263.0),  # actual where known
        ForecastPoint(UK_FROM + 1800, UK_FROM + 3600, 259.0),  # else the forecast
    ]
    assert len(uk.forecast(UK_FROM, UK_FROM + 86_400)) == 4
    assert api.query() == (UK_FW24H, {})
    assert uk.grams_per_kwh(UK_FROM + 59) == 263.0  # same minute, same request


def test_uk_carbon_intensity_uses_the_forecast_when_actual_is_null(api: FakeApi) -> None:
    body = json.loads(fixture_bytes("uk_fw24h.json"))
    body["data"][0]["intensity"]["actual"] = None
    api.replies[UK_FW24H] = Reply(json.dumps(body).encode())
    assert UkCarbonIntensity(api.base_url).grams_per_kwh(UK_FROM) == 266.0


SourceCall = Callable[[str], float | list[ForecastPoint]]
CALLS: dict[str, tuple[str, SourceCall]] = {
    "sdk forecast": (
        SDK_FORECAST,
        lambda base: CarbonAwareSdk(base + "/sdk", "northeurope", timeout_s=0.2).forecast(0, 1),
    ),
    "sdk rating": (
        SDK_BYLOCATION,
        lambda base: CarbonAwareSdk(base + "/sdk", "eastus", timeout_s=0.2).grams_per_kwh(0),
    ),
    "uk forecast": (UK_FW24H, lambda base: UkCarbonIntensity(base, timeout_s=0.2).forecast(UK_FROM, UK_FROM + 1)),
    "uk rating": (UK_FW24H, lambda base: UkCarbonIntensity(base, timeout_s=0.2).grams_per_kwh(UK_FROM)),
}
FAILURES = {
    "a 500": (Reply(b'{"title": "boom"}', status=500), "500"),
    "a timeout": (Reply(b"[]", delay_s=0.6), "timed out"),
    "malformed JSON": (Reply(b'[{"forecastData": [{"timest'), "not JSON"),
    "an unexpected shape": (Reply(b'{"data": 3, "forecastData": 3}'), "unexpected response"),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("call", CALLS)
def test_api_failures_are_forecast_unavailable_naming_the_url(api: FakeApi, call: str, failure: str) -> None:
    path, ask = CALLS[call]
    reply, says = FAILURES[failure]
    api.replies[path] = reply
    with pytest.raises(ForecastUnavailable) as error:
        ask(api.base_url)
    assert says in str(error.value) and f"{api.base_url}{path}" in str(error.value)
    assert "?" not in str(error.value)  # no query string: a key could sit there


def test_an_oversized_body_is_refused(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forecasts, "MAX_BODY_BYTES", 500)
    api.replies[UK_FW24H] = Reply(fixture_bytes("uk_fw24h.json"))
    with pytest.raises(ForecastUnavailable, match="over 500 bytes"):
        UkCarbonIntensity(api.base_url).forecast(UK_FROM, UK_FROM + 1)


def test_an_unreachable_server_is_forecast_unavailable() -> None:
    source: ForecastSource = UkCarbonIntensity("http://127.0.0.1:9", timeout_s=0.5)
    with pytest.raises(ForecastUnavailable, match="127.0.0.1:9"):
        source.forecast(UK_FROM, UK_FROM + 1)
