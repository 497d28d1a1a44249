"""The whole job path against a real Redis and a real worker subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from greenq.producers.client import JobSpec
from greenq.producers.samples import sample_mix
from greenq.shared import job_types
from greenq.shared.deadletter import DeadLetterStore
from greenq.shared.errors import InvalidJob
from greenq.shared.queues import queue_name
from greenq.shared.results import JobStatus
from tests.integration.harness import REPO, Stack


def test_mixed_burst_completes_in_batches(live: Stack) -> None:
    specs = [JobSpec(job_type, payload) for job_type, payload in sample_mix(60)]
    job_ids = live.client.submit_many(specs)
    results = list(live.client.as_completed(job_ids, timeout_s=240))

    assert sorted(r.job_id for r in results) == sorted(job_ids)
    assert all(r.status is JobStatus.succeeded for r in results), [r.error for r in results]
    assert all(r.text.strip() for r in results)
    assert {r.job_type for r in results} == set(job_types.names())
    assert all(r.generated_tokens >= 4 and r.prompt_tokens > 0 for r in results)
    assert all(r.worker == "cpu@test" and r.device == "cpu" for r in results)
    sizes = [r.batch_size for r in results]
    assert max(sizes) > 1
    energy = [r.energy_j for r in results if r.energy_j is not None]
    assert len(energy) == 60 and all(e >= 0 for e in energy)
    print(
        f"\n60-job burst: mean batch size {sum(sizes) / len(sizes):.2f}, largest {max(sizes)}, "
        f"{sum(energy) / 60:.3f} J/job ({results[0].energy_source})"
    )


def test_single_job_result_with_timings(live: Stack) -> None:
    before = time.time()
    job_id = live.client.submit("reply", {"customer_message": "Where is my parcel?"})
    result = live.client.result(job_id, timeout_s=60)
    measured_s = time.time() - before
    assert result.job_id == job_id and result.job_type == "reply"
    assert result.finish_reason in {"stop", "length"}
    t = result.timings
    # The stages split the job's time with no gap or overlap, and all of it lies within what this test saw.
    assert t.queue_s + t.batch_wait_s + t.compute_s == pytest.approx(t.end_to_end_s, abs=1e-6)
    assert t.compute_s > 0 and t.end_to_end_s <= measured_s
    assert result.energy_source == "estimate" and result.energy_j is not None and result.energy_j > 0
    assert result.co2e_g == pytest.approx(result.energy_j * 400 / 3.6e6)


def test_invalid_payload_rejected_at_producer(live: Stack) -> None:
    with pytest.raises(InvalidJob) as info:
        live.client.submit("description", {"sku": "X", "title": "", "category": "c", "colour": "red"})
    fields = dict(info.value.errors)
    assert "payload.title" in fields and "payload.colour" in fields
    assert "unknown field" in fields["payload.colour"]
    assert live.queued("description") == 0


def test_malformed_messages_do_not_stop_the_worker(live: Stack) -> None:
    queue = queue_name("reply")
    live.redis.lpush(queue, b"\x80not json at all")
    live.redis.lpush(
        queue,
        json.dumps(
            {
                "body": "e30=",
                "headers": {"task": "no.such.task", "id": "x1"},
                "properties": {
                    "delivery_tag": "t1",
                    "body_encoding": "base64",
                    "delivery_info": {"exchange": queue, "routing_key": queue},
                },
                "content-type": "application/json",
                "content-encoding": "utf-8",
            }
        ),
    )
    # A well-formed task whose envelope is wrong: it fails alone with a field-level reason.
    bad_id = live.client.app.send_task("greenq.jobs.reply", args=[{"job_id": "x"}], queue=queue).id
    good = live.client.submit("reply", {"customer_message": "Still there?"})
    assert live.client.result(good, timeout_s=60).status is JobStatus.succeeded
    dead = DeadLetterStore(live.redis).list()
    assert any("undecodable" in d.reason and "not json" in (d.raw or "") for d in dead)
    bad = live.client.result(bad_id, timeout_s=60)
    assert bad.status is JobStatus.failed and "envelope." in (bad.error or "")


def test_idempotency_key_one_job_one_result(fresh: Stack, tmp_path: Path) -> None:
    payload = {"customer_message": "Refund please", "language": "en"}
    ids: list[str] = []

    def submit() -> None:
        ids.append(fresh.client.submit("reply", payload, idempotency_key="order-77-refund"))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1
    assert fresh.queued("reply") == 1  # one message: one computation

    fresh.start_worker(tmp_path / "worker.log")
    result = fresh.client.result(ids[0], timeout_s=60)
    assert result.status is JobStatus.succeeded
    assert fresh.client.submit("reply", payload, idempotency_key="order-77-refund") == ids[0]
    assert fresh.queued("reply") == 0


def test_deadline_passed_while_queued_expires(fresh: Stack, tmp_path: Path) -> None:
    expiring = fresh.client.submit("strategy", {"period": "2026-Q4", "metrics": {"units_sold": 5}}, deadline_s=0.5)
    lasting = fresh.client.submit("strategy", {"period": "2026-Q4", "metrics": {"units_sold": 5}}, deadline_s=600)
    time.sleep(1.0)
    fresh.start_worker(tmp_path / "worker.log")
    expired = fresh.client.result(expiring, timeout_s=60)
    assert expired.status is JobStatus.expired
    assert expired.generated_tokens == 0 and expired.timings.compute_s == 0
    assert fresh.client.result(lasting, timeout_s=60).status is JobStatus.succeeded


def test_cli_submit_reports_bad_lines_and_writes_results(live: Stack, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(
        "\n".join(
            [
                json.dumps({"sku": "A", "title": "Mug", "category": "Kitchen"}),
                json.dumps({"sku": "B", "title": "Bowl"}),
                "{not json",
                json.dumps({"job": {"sku": "C", "title": "Cup", "category": "Kitchen"}, "priority": 9}),
            ]
        )
        + "\n"
    )
    out = tmp_path / "results.jsonl"
    env = {**os.environ, **live.env}
    proc = subprocess.run(
        [sys.executable, "-m", "greenq.producers.cli", "submit", "description", str(jobs), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stderr
    assert "line 2: payload.category: Field required" in proc.stderr
    assert "line 3: (line): is not valid JSON" in proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    by_line = {r["line"]: r for r in records}
    assert by_line[1]["status"] == by_line[4]["status"] == "succeeded"
    assert by_line[2]["status"] == by_line[3]["status"] == "rejected"
