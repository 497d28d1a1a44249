"""The README's wire contract, end to end: a producer that knows only the README enqueues jobs.

The producer is a fresh `Celery()` app configured from the README's "Wire contract" section alone
(broker URL, JSON, task name, queue, priority mapping), with envelopes built by hand; it imports
nothing from greenq. It reads results as raw JSON from the result backend, as a storefront in
another language would. A real worker computes the jobs.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery

from tests.integration.harness import Stack

REDIS_PRIORITY_SEP = "\x06\x16"  # kombu's: "<queue>\x06\x16<step>", as the README says
JOBS: list[tuple[str, dict[str, Any], int]] = [
    ("reply", {"customer_message": "Where is my parcel?", "order": {"order_id": "A-1", "status": "shipped"}}, 8),
    ("description", {"sku": "MUG-1", "title": "Stoneware mug", "category": "Kitchen"}, 5),
]


def storefront(broker_url: str) -> Celery:
    """Only what the README's wire contract names."""
    app = Celery("storefront", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"queue_order_strategy": "priority", "priority_steps": list(range(10))},
    )
    return app


def envelope(job_type: str, payload: dict[str, Any], priority: int) -> dict[str, Any]:
    now = time.time()
    return {
        "schema_version": 1,
        "job_id": str(uuid.uuid4()),
        "job_type": job_type,
        "payload": payload,
        "submitted_at": now,
        "deadline_at": now + 600,
        "priority": priority,
        "idempotency_key": None,
    }


def send(app: Celery, env: dict[str, Any]) -> str:
    job_type = env["job_type"]
    app.send_task(
        f"greenq.jobs.{job_type}",
        args=[env],
        task_id=env["job_id"],
        queue=f"greenq.{job_type}",
        priority=9 - env["priority"],  # Redis: 9 - greenq priority
    )
    return str(env["job_id"])


def stored(s: Stack, job_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """The raw result meta a non-Python client reads: GET celery-task-meta-<job id>."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = s.redis.get(f"celery-task-meta-{job_id}")
        if raw is not None:
            meta: dict[str, Any] = json.loads(raw)
            return meta
        time.sleep(0.2)
    raise AssertionError(f"no result for {job_id}")


def test_a_plain_celery_producer_enqueues_jobs_a_worker_computes(fresh: Stack, tmp_path: Path) -> None:
    app = storefront(fresh.url)
    try:
        sent = [(job_type, priority, send(app, envelope(job_type, p, priority))) for job_type, p, priority in JOBS]
        bad = send(app, envelope("reply", {"customer_message": ""}, 8))
    finally:
        app.close()
    # Before any worker runs: each job waits in its queue's list for step 9 - priority.
    assert fresh.redis.llen(f"greenq.reply{REDIS_PRIORITY_SEP}1") == 2  # the good reply and the bad one
    assert fresh.redis.llen(f"greenq.description{REDIS_PRIORITY_SEP}4") == 1

    fresh.start_worker(tmp_path / "worker.log", queues="reply,description")
    for job_type, _, job_id in sent:
        meta = stored(fresh, job_id)
        record = meta["result"]
        assert meta["status"] == "SUCCESS" and record["status"] == "succeeded", meta
        assert record["job_id"] == job_id and record["job_type"] == job_type and record["text"]
        assert record["energy_j"] > 0
    failure = stored(fresh, bad)
    assert failure["status"] == "FAILURE" and failure["result"]["exc_type"] == "JobNotComputed"
    record = failure["result"]["exc_message"][0]
    assert record["status"] == "failed" and "payload.customer_message" in record["error"]
