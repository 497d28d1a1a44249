"""Continuous batching in real worker processes (GREENQ_RUNTIME_MODE=continuous): the guarantees hold as for
static batches (late ack after the stored result, one bad job fails alone, out-of-memory splits, warm
shutdown), and a reply overtakes long descriptions instead of waiting behind them."""

from __future__ import annotations

import json
import re
import signal
import time
from pathlib import Path

import pytest

from greenq.producers.client import JobSpec
from greenq.shared.results import JobResult, JobStatus
from tests.integration.conftest import FAST_REDELIVERY
from tests.integration.harness import Stack, free_port, replies, stack

pytestmark = pytest.mark.chaos

CONTINUOUS = {
    **FAST_REDELIVERY,
    "GREENQ_RUNTIME_MODE": "continuous",
    "GREENQ_GENERATION__REPLY__MAX_NEW_TOKENS": "24",
    "GREENQ_GENERATION__REPLY__MIN_NEW_TOKENS": "24",
    "GREENQ_GENERATION__DESCRIPTION__MAX_NEW_TOKENS": "120",
    "GREENQ_GENERATION__DESCRIPTION__MIN_NEW_TOKENS": "120",
    "GREENQ_CHAOS__STEP_DELAY_S": "0.03",  # a slow device: a 120-token row takes about 4 s
}
DESCRIPTION = {"sku": "SH-1", "title": "Linen shirt", "category": "Apparel", "attributes": {"colour": "white"}}


@pytest.fixture
def cont(redis_port: int, tiny_model_dir: Path) -> Stack:
    with stack(redis_port, tiny_model_dir, CONTINUOUS) as s:
        yield s  # type: ignore[misc]


def _running_rows(s: Stack, port: int) -> float:
    match = re.search(r"^greenq_current_batch_size (\S+)$", s.metrics_text(port), flags=re.M)
    return float(match[1]) if match else 0.0


def test_a_reply_overtakes_long_descriptions(cont: Stack, tmp_path: Path) -> None:
    port = free_port()
    cont.start_worker(tmp_path / "w.log", metrics_port=port)
    long = cont.client.submit_many([JobSpec("description", {**DESCRIPTION, "sku": f"SH-{i}"}) for i in range(3)])
    cont.wait_for(lambda: _running_rows(cont, port) >= 3, what="the descriptions to decode")
    reply = cont.client.submit("reply", {"customer_message": "Where is my parcel?"}, priority=9)
    pieces = list(cont.client.stream(reply, timeout_s=60))  # a chat widget follows it as it decodes
    assert isinstance(pieces[-1], JobResult) and "".join(p for p in pieces if isinstance(p, str)) == pieces[-1].text
    assert len(pieces) >= 4
    results = cont.results([*long, reply])
    assert all(r.status is JobStatus.succeeded for r in results.values())
    assert results[reply].finished_at < min(results[j].finished_at for j in long)
    first = results[reply].timings.first_token_s
    assert first is not None and first < 2.0  # the next step, not after 4 s of descriptions


def test_kill9_mid_decode_then_a_second_worker_completes_each_job_once(cont: Stack, tmp_path: Path) -> None:
    port = free_port()
    busy = cont.start_worker(tmp_path / "a.log", node="a@test", metrics_port=port)
    ids = cont.client.submit_many(replies(6, "computing"))
    cont.wait_for(lambda: _running_rows(cont, port) >= 4, what="rows to decode")
    cont.kill(busy)
    cont.start_worker(tmp_path / "b.log", node="b@test")
    results = cont.results(ids)
    assert all(r.status is JobStatus.succeeded for r in results.values())
    assert any(r.worker == "b@test" for r in results.values())


def test_sigterm_finishes_the_running_rows_and_hands_back_the_rest(cont: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {"GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": "4"}  # four rows at most: the rest wait in the batcher
    first = cont.start_worker(tmp_path / "a.log", node="a@test", metrics_port=port, env=env)
    ids = cont.client.submit_many(replies(12, "sigterm"))
    cont.wait_for(lambda: _running_rows(cont, port) >= 4, what="four rows to decode")
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert time.monotonic() - stopped_at < 10  # the running rows (about 1 s), not all twelve jobs
    cont.start_worker(tmp_path / "b.log", node="b@test")
    results = cont.results(ids)
    assert all(r.status is JobStatus.succeeded for r in results.values())
    by_a = [r for r in results.values() if r.worker == "a@test"]
    assert 4 <= len(by_a) < 12 and any(r.worker == "b@test" for r in results.values())


def test_out_of_memory_splits_and_one_bad_job_fails_alone(cont: Stack, tmp_path: Path) -> None:
    port = free_port()
    env = {"GREENQ_CHAOS__OOM_ABOVE_BATCH_SIZE": "2", "GREENQ_CHAOS__FAIL_MARKER": "FAIL-ALONE"}
    cont.start_worker(tmp_path / "w.log", metrics_port=port, env=env)
    ids = cont.client.submit_many(replies(7, "oom") + [JobSpec("reply", {"customer_message": "FAIL-ALONE"})])
    results = cont.results(ids)
    failed = [r for r in results.values() if r.status is JobStatus.failed]
    assert len(failed) == 1 and "injected failure" in (failed[0].error or "")
    assert sum(r.status is JobStatus.succeeded for r in results.values()) == 7
    later = cont.results(cont.client.submit_many(replies(6, "after")))
    assert all(r.status is JobStatus.succeeded and r.batch_size <= 2 for r in later.values())
    text = cont.metrics_text(port)
    cap = re.search(r"^greenq_batch_size_cap (\S+)$", text, flags=re.M)
    assert cap is not None and 1 <= float(cap[1]) <= 2  # 2: one row fewer than the 3 that failed; 1: a static half
    ooms = re.search(r"^greenq_out_of_memory_total (\S+)$", text, flags=re.M)
    assert ooms is not None and float(ooms[1]) >= 1


def test_auto_measures_both_modes_and_reports_its_choice(cont: Stack, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "w.log"
    cont.start_worker(log, metrics_port=port, env={"GREENQ_RUNTIME_MODE": "auto", "GREENQ_CHAOS__STEP_DELAY_S": "0"})
    mode = re.search(r'^greenq_batching_mode\{mode="(static|continuous)"\} 1\.0$', cont.metrics_text(port), re.M)
    assert mode is not None
    measured = re.search(
        r"runtime auto: static (\d+) tokens/s, continuous (\d+) tokens/s on the probe workload: (\w+)", log.read_text()
    )
    assert measured is not None and measured[3] == mode[1]
    faster = "continuous" if int(measured[2]) > int(measured[1]) else "static"
    assert mode[1] == faster
    results = cont.results(cont.client.submit_many(replies(4, "auto")))
    assert all(r.status is JobStatus.succeeded for r in results.values())


def test_a_continuous_worker_runs_adaptive_as_fixed_and_refuses_it(cont: Stack, tmp_path: Path) -> None:
    """Nothing is held open in continuous mode, so the adaptive policy (the default) cannot apply: `pool status`
    shows the fixed rule in force and `set-policy --mode adaptive` is refused, naming the field (issue 21)."""
    cont.start_worker(tmp_path / "w.log", node="a@test")
    status = json.loads(cont.cli("pool", "status", "--json").stdout)["a@test"]
    assert status["runtime_mode"] == "continuous"
    assert {p["mode"] for p in status["policy"].values()} == {"fixed"}
    assert {s["mode"] for s in status["adaptive"].values()} == {"fixed"}
    refused = cont.cli("pool", "set-policy", "a@test", "reply", "--mode", "adaptive")
    assert refused.returncode == 2 and "mode: adaptive does not apply in continuous batching" in refused.stdout
    assert cont.cli("pool", "set-policy", "a@test", "reply", "--max-batch-size", "3").returncode == 0
    results = cont.results(cont.client.submit_many(replies(4, "fixed")))
    assert all(r.status is JobStatus.succeeded for r in results.values())
    assert "run by the fixed rule" in (tmp_path / "w.log").read_text()  # said once, at start
