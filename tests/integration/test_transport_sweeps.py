"""Processes that are not workers leave a live worker's held jobs alone (real Redis, real processes).

The scheduler, `greenq pool status` / `greenq top` and `celery inspect` each open a broker
connection and, while they wait for replies, run kombu's periodic sweep of unacknowledged
messages. Stock kombu's sweep requeues every unacked entry older than the visibility timeout,
even one a live worker owns, and leaves the owner's in-flight record behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from greenq.shared.keys import COMPUTATIONS_KEY, CONSUMERS_KEY, INFLIGHT_KEY_PREFIX, UNACKED_OWNER_KEY
from greenq.shared.queues import queue_name, redis_priority_lists
from greenq.shared.results import JobStatus
from tests.integration.harness import REPO, Stack, stack

VISIBILITY_TIMEOUT_S = 8
HOLD_S = 45  # every batch sleeps this long: the job is held well past the visibility timeout
ENV = {
    "GREENQ_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
    "GREENQ_MAX_BATCH_COMPUTE_S": "3",
    "GREENQ_CONSUMER_LEASE_S": "3",
    "GREENQ_CHAOS__BATCH_DELAY_S": str(HOLD_S),
    "GREENQ_CHAOS__LOG_COMPUTATIONS": "true",
    # One task thread each: the worker holding the job reserves nothing more, so a requeued copy
    # would go to the other worker (a second consumer), which is what strands the first one's record.
    "GREENQ_WORKER_THREADS": "1",
    "GREENQ_BATCH__REPLY__MODE": "fixed",
    "GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.1",
}

# A control call whose reply wait (0.5 s) ends before kombu's BRPOP (1 s) does: the poll comes back
# empty, which is when kombu sweeps the unacked messages (every time: `unacked_restore_throttle` 1).
GREENQ_APP_CONTROL_CALLS = """
from greenq.shared.celery_app import make_celery
from greenq.shared.settings import Settings
app = make_celery(Settings(), producer=True)
for _ in range(3):
    app.control.ping(timeout=0.5)
"""
STOCK_APP_CONTROL_CALLS = f"""
import sys
from celery import Celery
app = Celery(broker=sys.argv[1])
app.conf.broker_transport_options = {{"visibility_timeout": {VISIBILITY_TIMEOUT_S}, "unacked_restore_throttle": 1}}
for _ in range(3):
    app.control.ping(timeout=0.5)
"""


def _run(s: Stack, argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, env={**os.environ, **s.env}, capture_output=True, text=True, timeout=120, check=False
    )


def _held(s: Stack) -> dict[str, str]:
    """delivery tag → the consumer holding it."""
    return {k.decode(): v.decode() for k, v in s.redis.hgetall(UNACKED_OWNER_KEY).items()}  # broker = backend here


def _queued(s: Stack) -> int:
    return sum(int(s.redis.llen(name)) for name in redis_priority_lists(queue_name("reply")))


def _inflight(s: Stack) -> dict[str, set[str]]:
    return {
        key.decode(): {t.decode() for t in s.redis.smembers(key)}
        for key in s.redis.scan_iter(f"{INFLIGHT_KEY_PREFIX}*")
    }


def test_non_worker_processes_leave_a_live_workers_held_job_alone(
    redis_port: int, tiny_model_dir: Path, tmp_path: Path
) -> None:
    with stack(redis_port, tiny_model_dir, ENV) as s:
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        s.start_worker(logs[0], node="a@test", queues="reply")
        s.start_worker(logs[1], node="b@test", queues="reply")
        s.redis.delete(COMPUTATIONS_KEY)  # warm-up batches, if any, are not the job under test
        job_id = s.client.submit("reply", {"customer_message": "a long one"})
        s.wait_for(lambda: len(_held(s)) == 1, timeout_s=30, what="the job to be held")
        [(tag, owner)] = _held(s).items()
        held_since_s = float(s.redis.zscore("unacked_index", tag) or 0)
        s.wait_for(
            lambda: s.redis.time()[0] > held_since_s + VISIBILITY_TIMEOUT_S + 1,
            timeout_s=30,
            what="the visibility timeout to pass",
        )

        python = [sys.executable, "-c"]
        non_workers = {
            "greenq pool status": [sys.executable, "-m", "greenq.producers.cli", "pool", "status", "--json"],
            "greenq's app": [*python, GREENQ_APP_CONTROL_CALLS],
            # No greenq code at all: what `celery inspect` or Flower run, with the same visibility timeout.
            "a stock Celery app": [*python, STOCK_APP_CONTROL_CALLS, s.url],
        }
        for name, argv in non_workers.items():
            answer = _run(s, argv)
            assert answer.returncode == 0, (name, answer.stdout, answer.stderr)
            time.sleep(0.5)  # a requeued copy would be claimed by the idle worker within an idle poll
            assert _held(s) == {tag: owner} and _queued(s) == 0, f"{name} gave back a job a live worker holds"

        [result] = s.client.as_completed([job_id], timeout_s=HOLD_S * 3)
        assert result.status is JobStatus.succeeded
        s.wait_for(lambda: not _held(s), timeout_s=10, what="the ack")
        assert _inflight(s) == {} and int(s.redis.hlen("unacked")) == 0
        computations = [c.decode().split()[0] for c in s.redis.lrange(COMPUTATIONS_KEY, 0, -1)]
        assert computations.count(job_id) == 1
        # No consumer is left behind holding a record of a job it no longer has.
        time.sleep(4)  # more than a consumer lease: a stale in-flight set would be "given back" now
        text = "".join(log.read_text() for log in logs)
        assert "missed heartbeats" not in text
        assert all(
            s.redis.scard(f"{INFLIGHT_KEY_PREFIX}{c.decode()}") == 0 for c in s.redis.zrange(CONSUMERS_KEY, 0, -1)
        )
