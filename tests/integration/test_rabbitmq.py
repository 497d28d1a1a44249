"""The core job path with RabbitMQ as the broker (Redis stays the result backend), when one runs here."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from greenq.producers.client import JobSpec
from greenq.producers.samples import sample_mix
from greenq.shared.results import JobStatus
from tests.integration.harness import stack

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_answers(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_mixed_burst_over_rabbitmq(redis_port: int, tiny_model_dir: Path, tmp_path: Path) -> None:
    backend = f"redis://127.0.0.1:{redis_port}/63"
    with stack(redis_port, tiny_model_dir, {"GREENQ_RESULT_BACKEND_URL": backend}, url=AMQP_URL) as s:
        s.start_worker(tmp_path / "worker.log", node="amqp@test")
        ids = s.client.submit_many(JobSpec(t, p) for t, p in sample_mix(30))
        results = list(s.client.as_completed(ids, timeout_s=180))
        assert sorted(r.job_id for r in results) == sorted(ids)
        assert all(r.status is JobStatus.succeeded and r.text.strip() for r in results)
        assert max(r.batch_size for r in results) > 1
