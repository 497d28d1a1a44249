"""`greenq bench --carbon` on a few hours of the trace: real scheduler, real Redis, output complete and sound."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from greenq.shared.settings import Settings
from greenq.workers.commands.bench.carbon_replay import ReplayConfig, run_carbon
from greenq.workers.commands.bench.carbon_replay_output import FILES, write_carbon_outputs
from greenq.workers.commands.cli import main

CARBON = Path(__file__).resolve().parents[3] / "shared" / "data" / "carbon"
pytestmark = [
    pytest.mark.skipif(not CARBON.exists(), reason=f"{CARBON} is missing"),
    pytest.mark.timeout(60),
]

RUN_FIELDS = {
    "slack_h",
    "forecast",
    "jobs",
    "released",
    "saving",
    "bound_saving",
    "ratio_to_bound",
    "uncapacitated_saving_these_jobs",
    "readme_bound_this_day",
    "deadlines_missed",
    "released_after_release_by",
    "duplicates",
    "peak_releases_per_slot",
    "capacity_per_slot",
    "wall_s",
    "virtual_days_per_real_minute",
}


def test_a_few_hours_replay_releases_every_job_once_and_in_time(tmp_path: Path) -> None:
    config = replace(
        ReplayConfig(trace=CARBON / "caiso_north_2023-06_5min.csv"),
        days=3 / 24,
        slacks_h=(1.0,),
        business_jobs_per_step=0.3,
        night_jobs_per_step=0.1,
        capacity_per_slot=2,
    )
    result = run_carbon(config, Settings())
    paths = write_carbon_outputs(result, tmp_path, "test")

    assert [p.name for p in paths] == list(FILES) and all(p.stat().st_size > 0 for p in paths)
    written = json.loads((tmp_path / "bench.json").read_text())
    assert 3 <= written["arrivals"]["jobs"] <= 30  # a handful
    assert [(r["slack_h"], r["forecast"]) for r in written["runs"]] == [(1.0, "perfect"), (1.0, "noisy")]
    for run in written["runs"]:
        assert RUN_FIELDS <= set(run)
        assert run["released"] == run["jobs"] == written["arrivals"]["jobs"] and run["still_waiting"] == 0
        assert run["duplicates"] == 0 and run["deadlines_missed"] == 0
        assert run["released_past_release_by_slot"] == 0
        assert run["peak_releases_per_slot"] <= run["capacity_per_slot"]
        assert run["saving"] <= run["bound_saving"] + 1e-9  # nothing beats the offline optimum
    assert "| 1 h | perfect |" in (tmp_path / "summary.md").read_text()


def test_the_command_runs_the_replay_and_refuses_a_slack_inside_the_release_guard(tmp_path: Path) -> None:
    out = tmp_path / "bench-carbon"
    assert main(["bench", "--carbon", "--slacks-h", "1", "--days", "0.05", "--out", str(out)]) == 0
    runs = json.loads((out / "bench.json").read_text())["runs"]
    assert len(runs) == 2 and all(r["duplicates"] == 0 == r["deadlines_missed"] for r in runs)
    assert main(["bench", "--carbon", "--slacks-h", "0.05", "--out", str(tmp_path / "no")]) != 0
