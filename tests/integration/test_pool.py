"""`greenq pool` and `greenq top` against live workers, through Celery remote control."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from greenq.producers.client import JobSpec
from greenq.shared.results import JobStatus
from tests.integration.harness import REPO, Stack


def _greenq(s: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "greenq.producers.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, **s.env},
        timeout=120,
    )


def test_pool_status_queues_policy_drain_and_top(fresh: Stack, tmp_path: Path) -> None:
    s = fresh
    s.start_worker(tmp_path / "a.log", node="a@test", queues="reply")
    s.start_worker(tmp_path / "b.log", node="b@test", queues="description,strategy")

    status = json.loads(_greenq(s, "pool", "status", "--json").stdout)
    assert set(status) == {"a@test", "b@test"}
    assert status["a@test"]["queues"] == ["greenq.reply"] and status["a@test"]["ready"] is True
    assert status["b@test"]["policy"]["strategy"]["max_batch_size"] == 8
    table = _greenq(s, "pool", "status").stdout
    assert "a@test" in table and "reply" in table

    assert _greenq(s, "pool", "add-queue", "a@test", "strategy").returncode == 0
    assert status["a@test"]["policy"]["reply"]["mode"] == "adaptive"  # the default
    change = ("set-policy", "all", "reply", "--mode", "fixed", "--max-batch-size", "3", "--max-wait-s", "0.5")
    assert _greenq(s, "pool", *change).returncode == 0
    status = json.loads(_greenq(s, "pool", "status", "--json").stdout)
    assert status["a@test"]["queues"] == ["greenq.reply", "greenq.strategy"]
    assert status["a@test"]["policy"]["reply"] == {
        "mode": "fixed",
        "max_batch_size": 3,
        "max_wait_s": 0.5,
        "max_hold_s": 600.0,
        "max_batch_tokens": 32768,
    }
    refused = _greenq(s, "pool", "set-policy", "a@test", "reply", "--max-hold-s", "-1")
    assert refused.returncode == 2 and "max_hold_s" in refused.stdout, refused.stdout

    ids = s.client.submit_many([JobSpec("reply", {"customer_message": f"q{i}"}) for i in range(6)])
    results = list(s.client.as_completed(ids, timeout_s=60))
    assert all(r.status is JobStatus.succeeded and r.batch_size <= 3 for r in results)
    assert max(r.batch_size for r in results) == 3  # the new policy, applied at runtime
    learned = json.loads(_greenq(s, "pool", "status", "--json").stdout)["a@test"]["adaptive"]["reply"]
    assert learned["learned_cost_by_size"]["3"]["batches"] >= 1  # measured per worker, whatever the mode
    assert "learned B3:" in _greenq(s, "pool", "status").stdout

    assert _greenq(s, "pool", "remove-queue", "b@test", "description").returncode == 0
    assert json.loads(_greenq(s, "pool", "status", "--json").stdout)["b@test"]["queues"] == ["greenq.strategy"]

    assert _greenq(s, "pool", "drain", "a@test").returncode == 0
    drained = json.loads(_greenq(s, "pool", "status", "--json").stdout)["a@test"]
    assert drained["queues"] == [] and drained["ready"] is False
    s.client.submit("reply", {"customer_message": "nobody serves reply now"})

    top = _greenq(s, "top", "--iterations", "2", "--interval-s", "0.2").stdout
    assert top.count("greenq top") == 2
    assert "greenq.reply" in top and "a@test" in top and "b@test" in top
    reply_line = next(line for line in top.splitlines() if line.startswith("greenq.reply"))
    assert reply_line.split()[1] == "1"  # the job no worker consumes is visible as backlog
    assert "reply" in top
