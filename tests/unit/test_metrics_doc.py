"""Every metric the README documents is exported, and every exported metric is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from greenq.producers.gateway.metrics import GatewayMetrics
from greenq.shared.settings import Settings
from greenq.workers.commands.exporter import build_registry
from greenq.workers.edge.metrics import GPU_GAUGES, WorkerMetrics
from greenq.workers.scheduler.metrics import SchedulerMetrics

README = Path(__file__).resolve().parents[2] / "README.md"


class _EmptyRedis:
    """Answers an exporter scrape as an empty broker would (pure unit test: no network)."""

    def pipeline(self) -> _EmptyRedis:
        self._replies: list[Any] = []
        return self

    def llen(self, name: str) -> None:
        self._replies.append(0)

    def lindex(self, name: str, index: int) -> None:
        self._replies.append(None)

    def execute(self) -> list[Any]:
        return self._replies

    def hlen(self, name: str) -> None:
        self._replies.append(0)


def _exposed(families: Any) -> set[str]:
    names = set()
    for family in families:
        suffix = "_total" if isinstance(family, CounterMetricFamily) or family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def exported_names() -> set[str]:
    """Every greenq metric name a worker or the exporter can expose (counters with `_total`)."""
    worker = {n for n in _exposed(WorkerMetrics(CollectorRegistry()).registry.collect()) if n.startswith("greenq_")}
    gpu = {f"greenq_gpu_{key}" for key in GPU_GAUGES}
    exporter = _exposed(build_registry(_EmptyRedis(), Settings().latency_objective_s).collect())  # type: ignore[arg-type]
    gateway = _exposed(GatewayMetrics(CollectorRegistry()).registry.collect())
    scheduler = _exposed(SchedulerMetrics(CollectorRegistry()).registry.collect())
    return worker | gpu | exporter | gateway | scheduler


def test_readme_metrics_match_the_code() -> None:
    documented = set(re.findall(r"^\| `(greenq_[a-z0-9_]+)`", README.read_text(), flags=re.M))
    assert documented == exported_names()


def test_names_carry_units_and_counters_end_in_total() -> None:
    worker = WorkerMetrics(CollectorRegistry()).registry.collect()
    for family in [*worker, *SchedulerMetrics(CollectorRegistry()).registry.collect()]:
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        assert "job_id" not in {label for s in family.samples for label in s.labels}
