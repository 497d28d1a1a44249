"""A sick device: the worker's breaker hands every job back and restarts; no job is failed for it."""

from __future__ import annotations

import socket
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from celery import states

from greenq.producers.client import JobSpec
from greenq.shared.results import JobResult, JobStatus, result_from_meta
from tests.integration.harness import Stack, free_port

pytestmark = pytest.mark.chaos


def _stored(s: Stack, ids: list[str]) -> dict[str, JobResult]:
    """The final results stored so far, without waiting."""
    metas = {i: s.client.app.backend.get_task_meta(i, cache=False) for i in ids}
    return {i: result_from_meta(i, m) for i, m in metas.items() if m.get("status") in states.READY_STATES}


def _ready_probe(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None  # no process on the port: between the old worker's exit and the new one's start


def test_device_fault_hands_every_job_back_and_restarts_the_worker(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    sick = tmp_path / "device-is-sick"
    sick.touch()
    port = free_port()
    env = {
        "GREENQ_CHAOS__DEVICE_FAULT_FILE": str(sick),
        "GREENQ_METRICS_PORT": str(port),
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": "1",  # the six jobs form one batch
    }
    log = tmp_path / "launcher.log"
    launcher = s.spawn(
        [sys.executable, "-m", "greenq.workers.commands.cli", "worker", "--devices", "cpu"], log, env=env
    )
    s.wait_ready([f"cpu@{socket.gethostname()}"], launcher, log)
    assert _ready_probe(port) == 200

    probes: list[int | None] = []
    stop_watching = threading.Event()

    def watch_readiness() -> None:
        while not stop_watching.wait(0.02):
            probes.append(_ready_probe(port))

    watcher = threading.Thread(target=watch_readiness, daemon=True)
    watcher.start()
    ids = s.client.submit_many([JobSpec("reply", {"customer_message": f"sick question {i}"}) for i in range(6)])
    s.wait_for(
        lambda: "(device fault)" in log.read_text() or len(_stored(s, ids)) == len(ids),
        timeout_s=90,
        what="the breaker to stop the worker",
    )
    stop_watching.set()
    watcher.join()
    early = _stored(s, ids)
    assert not early, {i: (r.status.value, r.error) for i, r in early.items()}  # a device fault fails no job
    assert "exited with 75 (device fault)" in log.read_text()
    # Once the sick worker stopped answering ready (503 for the few ms before it exits, then no answer),
    # it never answered ready again; the unit tests check the 503 and the counter in-process.
    down = next((i for i, probe in enumerate(probes) if probe != 200), None)
    assert down is not None and 200 not in probes[down:], probes

    sick.unlink()  # the restarted worker finds a healthy device
    results = {r.job_id: r for r in s.client.as_completed(ids, timeout_s=180)}
    assert all(r.status is JobStatus.succeeded for r in results.values()), [r.error for r in results.values()]
    assert all(r.batch_size == 1 for r in results.values())  # the fault counted as an attempt: each runs alone
    assert "greenq_device_faults_total 1.0" in s.metrics_text(port)  # carried over by the launcher
