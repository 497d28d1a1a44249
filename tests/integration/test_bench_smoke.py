"""`greenq bench --quick` completes and writes its files (the figures are for humans, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from greenq.workers.commands.bench.load_output import FILES as LOAD_FILES
from greenq.workers.commands.bench.output import FILES
from tests.integration.harness import REPO


def _bench(args: list[str], model_cache: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenq.workers.commands.cli", "bench", *args],
        cwd=REPO,
        env={**os.environ, "GREENQ_MODEL_CACHE_DIR": str(model_cache)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_bench_quick_writes_json_markdown_and_plots(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "bench"
    proc = _bench(["--quick", "--out", str(out)], tmp_path / "models", timeout_s=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "bench.json").read_text())
    assert set(result) >= {"ceiling", "greenq_saturation", "greenq_fixed_rate", "naive", "ratios", "commit"}
    assert result["greenq_saturation"]["succeeded"] == result["config"]["jobs"]
    assert result["naive"]["succeeded"] == result["config"]["jobs"]
    assert "(b)/(a) throughput" in (out / "summary.md").read_text()
    assert "(a) ceiling B=4" in proc.stderr  # progress is shown while it runs


def test_bench_load_quick_writes_both_policies_at_every_fraction(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "bench-load"
    # local:tiny is already built in the fixture's cache
    proc = _bench(["--load", "--quick", "--out", str(out)], tiny_model_dir.parent, timeout_s=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in LOAD_FILES:
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "bench.json").read_text())
    assert set(result["policies"]) == {"fixed", "adaptive"}
    for policy in result["policies"].values():
        saturation = policy["saturation"]
        assert saturation["succeeded"] == saturation["jobs"] == 4 * result["config"]["batch_size"]
        assert set(policy["fractions"]) == {"0.25", "0.5", "1"}
        for window in policy["fractions"].values():
            assert window["succeeded"] == window["jobs"] > 0
            assert set(window["by_type"]) == {"reply", "description", "strategy"}
            assert window["energy_source"] == "estimate" and window["total_joules_per_job"] > 0
    assert set(result["ratios"]["energy"]["adaptive"]) == {"0.25", "0.5"}
    assert result["ratios"]["adaptive_over_fixed_throughput_at_1"] > 0
    summary = (out / "summary.md").read_text()
    assert "bench-scaled" in summary and "no idle draw" in summary
    assert summary.count("× ceiling |") == 2 * 3 + 2 * 2  # every window's row, and each energy ratio's
