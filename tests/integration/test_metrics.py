"""Metrics from live processes: a real Prometheus scrapes a worker and the exporter."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from greenq.producers.client import JobSpec
from greenq.producers.report import report_from_metrics
from greenq.producers.samples import sample_mix
from greenq.shared import job_types
from greenq.shared.settings import Settings
from greenq.workers.commands.exporter import build_registry
from tests.integration.harness import Stack, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _query(port: int, promql: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]  # type: ignore[no-any-return]


def test_prometheus_scrapes_joules_per_job_by_type(live: Stack, tmp_path: Path) -> None:
    exporter_port, prom_port = free_port(), free_port()
    live.spawn(
        [sys.executable, "-m", "greenq.workers.commands.cli", "exporter", "--port", str(exporter_port)],
        tmp_path / "exporter.log",
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: greenq-workers\n    static_configs: [{{targets: ['127.0.0.1:{live.metrics_port}']}}]\n"
        f"  - job_name: greenq-exporter\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
    )
    prometheus = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=(tmp_path / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        job_ids = live.client.submit_many(JobSpec(t, p) for t, p in sample_mix(12))
        assert all(r.status.value == "succeeded" for r in live.client.as_completed(job_ids, timeout_s=120))

        per_job = (
            "sum by (job_type) (greenq_job_energy_joules_sum) / sum by (job_type) (greenq_job_energy_joules_count)"
        )
        deadline = time.monotonic() + 60
        values: dict[str, float] = {}
        while time.monotonic() < deadline and len(values) < len(job_types.names()):
            try:
                values = {r["metric"]["job_type"]: float(r["value"][1]) for r in _query(prom_port, per_job)}  # type: ignore[index]
            except OSError:
                pass
            time.sleep(1)
        assert set(values) == {t for t in job_types.names()}, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert all(v > 0 for v in values.values())
        print(f"\nJ/job by type (estimate meter, via PromQL): {values}")

        up = {r["metric"]["job"]: r["value"][1] for r in _query(prom_port, "up")}  # type: ignore[index]
        assert up == {"greenq-workers": "1", "greenq-exporter": "1"}
        assert _query(prom_port, 'greenq_queue_depth{queue="greenq.reply"}')
        assert _query(prom_port, "greenq_worker_ready")[0]["value"][1] == "1"  # type: ignore[index]
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)

    text = report_from_metrics([f"http://127.0.0.1:{live.metrics_port}/metrics"])
    assert all(t in text for t in job_types.names()) and "estimate" in text


def test_exporter_sees_backlog_with_no_worker(fresh: Stack) -> None:
    for _ in range(3):
        fresh.client.submit("strategy", {"period": "Q1", "metrics": {}}, priority=0)
    fresh.client.submit("strategy", {"period": "Q1", "metrics": {}}, priority=9)  # another priority sub-list
    time.sleep(0.3)
    objectives_s = Settings().latency_objective_s
    samples = {
        (s.name, s.labels.get("queue")): s.value
        for family in text_string_to_metric_families(
            generate_latest(build_registry(fresh.redis, objectives_s)).decode()
        )
        for s in family.samples
    }
    assert samples[("greenq_queue_depth", "greenq.strategy")] == 4
    assert samples[("greenq_queue_depth", "greenq.reply")] == 0
    assert samples[("greenq_queue_oldest_age_seconds", "greenq.strategy")] >= 0.3
    assert samples[("greenq_broker_up", None)] == 1
    assert samples[("greenq_latency_objective_seconds", "greenq.strategy")] == objectives_s["strategy"]
