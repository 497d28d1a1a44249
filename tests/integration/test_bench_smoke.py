"""`greenq bench --quick` completes and writes its files (the figures are for humans, not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import REPO
from workers.bench.output import FILES


def test_bench_quick_writes_json_markdown_and_plots(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "bench"
    env = {**os.environ, "GREENQ_MODEL_CACHE_DIR": str(tmp_path / "models")}
    proc = subprocess.run(
        [sys.executable, "-m", "workers.cli", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "bench.json").read_text())
    assert set(result) >= {"ceiling", "greenq_saturation", "greenq_fixed_rate", "naive", "ratios", "commit"}
    assert result["greenq_saturation"]["succeeded"] == result["config"]["jobs"]
    assert result["naive"]["succeeded"] == result["config"]["jobs"]
    assert "(b)/(a) throughput" in (out / "summary.md").read_text()
    assert "(a) ceiling B=4" in proc.stderr  # progress is shown while it runs
