"""Token streaming against a real Redis and real worker processes: text arrives while the batch decodes,
a late reader replays it, and a computation that starts over after its worker died streams no text twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from greenq.shared.results import JobResult, JobStatus
from tests.integration.gateways import Gateway
from tests.integration.harness import REPO, Stack, free_port, stack

SLOW_STEPS = {
    "GREENQ_GENERATION__REPLY__MAX_NEW_TOKENS": "40",
    "GREENQ_GENERATION__REPLY__MIN_NEW_TOKENS": "40",  # no early stop: 40 steps, each 50 ms
    "GREENQ_CHAOS__STEP_DELAY_S": "0.05",
    "GREENQ_VISIBILITY_TIMEOUT_S": "8",
    "GREENQ_MAX_BATCH_COMPUTE_S": "3",
    "GREENQ_CONSUMER_LEASE_S": "3",
}


@pytest.fixture(scope="module")
def slow(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    with stack(redis_port, tiny_model_dir, SLOW_STEPS) as s:
        yield s


def _read(s: Stack, job_id: str) -> tuple[list[tuple[float, str]], JobResult]:
    """Each streamed piece with the wall time it arrived, and the final result."""
    pieces: list[tuple[float, str]] = []
    for item in s.client.stream(job_id, timeout_s=120):
        if isinstance(item, str):
            pieces.append((time.time(), item))
        else:
            return pieces, item
    raise AssertionError("the stream ended without a result")


def test_text_arrives_while_the_batch_decodes_and_replays_later(slow: Stack, tmp_path: Path) -> None:
    port = free_port()
    worker = slow.start_worker(tmp_path / "worker.log", metrics_port=port)
    try:
        job_id = slow.client.submit("reply", {"customer_message": "Where is my parcel?"})
        pieces, result = _read(slow, job_id)  # connected before the job ran: follows it live

        assert result.status is JobStatus.succeeded and result.generated_tokens == 40
        assert "".join(p for _, p in pieces) == result.text
        assert len(pieces) >= 5, pieces  # about 2 s of decoding, written every 50 ms: many pieces
        first_at = pieces[0][0]
        assert first_at < result.finished_at - 1.0, "the first text came only with the result"
        t = result.timings
        assert t.first_token_s is not None and 0 < t.first_token_s < t.end_to_end_s - 1.0

        late, again = _read(slow, job_id)  # after the fact: the stream replays from its start
        assert again == result and "".join(p for _, p in late) == result.text

        cli = subprocess.run(  # what a developer at a terminal runs
            [sys.executable, "-m", "greenq.producers.cli", "stream", job_id],
            cwd=REPO,
            env={**os.environ, **slow.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert cli.returncode == 0, cli.stderr
        assert cli.stdout == result.text + "\n" and cli.stderr.startswith("succeeded (40 tokens, first text after")

        metrics = slow.metrics_text(port)
        count = re.search(r'^greenq_time_to_first_token_seconds_count\{job_type="reply"\} (\S+)$', metrics, re.M)
        assert count is not None and float(count[1]) == 1.0
    finally:
        slow.kill(worker)


def test_a_computation_that_starts_over_streams_no_text_twice(slow: Stack, tmp_path: Path) -> None:
    first = slow.start_worker(tmp_path / "first.log", node="first@test")
    job_id = slow.client.submit("reply", {"customer_message": "Can I change my address?"})
    pieces: list[str] = []
    done: list[JobResult] = []

    def follow() -> None:
        for item in slow.client.stream(job_id, timeout_s=120):
            (pieces.append(item) if isinstance(item, str) else done.append(item))

    reader = threading.Thread(target=follow)
    reader.start()
    slow.wait_for(lambda: len(pieces) >= 3, timeout_s=60, what="text from the first worker")
    slow.kill(first)  # mid-decode: its text so far is in the stream, its job goes back to the queue
    shown_before_kill = "".join(pieces)
    second = slow.start_worker(tmp_path / "second.log", node="second@test")
    try:
        reader.join(timeout=120)
        assert done, "no result"
        result = done[0]
        assert result.status is JobStatus.succeeded and result.worker == "second@test"
        # The second computation sent the text again from its start; the reader showed none of it twice.
        assert "".join(pieces) == result.text and result.text.startswith(shown_before_kill)
        entries = slow.redis.xrange(f"greenq:tokens:{job_id}")
        assert [e[1][b"type"] for e in entries].count(b"start") == 2
    finally:
        slow.kill(second)


def _events(api: Gateway, job_id: str, tenant: str = "acme", last_event_id: str | None = None) -> list[dict[str, str]]:
    """Every Server-Sent Event of one connection, as {id, event, data}, until the server closes it."""
    headers = {**api.auth(tenant), **({"Last-Event-ID": last_event_id} if last_event_id else {})}
    events: list[dict[str, str]] = []
    with api.http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(": ")
                current[field] = value
    return events


def test_the_gateway_streams_server_sent_events_and_resumes(slow: Stack, tmp_path: Path) -> None:
    worker = slow.start_worker(tmp_path / "worker.log")
    api = Gateway(slow, tmp_path)
    try:
        job_id = api.http.post("/v1/jobs/reply", json={"job": {"customer_message": "Hi"}}, headers=api.auth()).json()[
            "id"
        ]
        assert api.http.get(f"/v1/jobs/{job_id}/events", headers=api.auth("globex")).status_code == 404

        events = _events(api, job_id)
        kinds = [e["event"] for e in events]
        assert kinds[0] == "status" and kinds[-1] == "result" and kinds[-2] == "end" and "start" in kinds
        texts = [e for e in events if e["event"] == "text"]
        assert len(texts) >= 5
        result = json.loads(events[-1]["data"])
        assert result["status"] == "succeeded" and events[-1]["id"] == "result"
        assert "".join(json.loads(e["data"])["text"] for e in texts) == result["result"]["text"]

        # A reconnect names the last event it saw and gets only what came after it.
        resumed = _events(api, job_id, last_event_id=texts[2]["id"])
        rest = "".join(json.loads(e["data"])["text"] for e in resumed if e["event"] == "text")
        assert rest == "".join(json.loads(e["data"])["text"] for e in texts[3:])
        # After the result, a reconnect is told to stop.
        done = api.http.get(f"/v1/jobs/{job_id}/events", headers={**api.auth(), "Last-Event-ID": "result"})
        assert done.status_code == 204
    finally:
        api.process.terminate()
        slow.kill(worker)
