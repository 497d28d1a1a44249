"""Redis Sentinel: broker, result backend and greenq's own keys behind `sentinel://` URLs, through a failover.

Replication is asynchronous, so a failover keeps only what reached the replica. The claims
below are the ones Sentinel can back: every job whose enqueue the replica had acknowledged
before the failover (`WAIT`) ends with exactly one stored final result, and so does every job
submitted once the failover is over. "Over" matters for SENTINEL FAILOVER: the old master stays
up and keeps taking writes until Sentinel demotes it, about 10 s later, and every write it took
after the promotion is thrown away (jobs submitted then are lost, work done then is redone; see
the README's "Redis Sentinel"). The test does not count on those writes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from greenq.shared import job_types
from greenq.shared.errors import ResultTimeout
from greenq.shared.keys import CONSUMERS_KEY, LEASE_KEY_PREFIX, UNACKED_OWNER_KEY
from greenq.shared.queues import queue_name, redis_priority_lists
from greenq.shared.redis_client import redis_client
from greenq.shared.results import JobResult, JobStatus, result_from_meta
from greenq.shared.start_marks import start_mark_key
from greenq.workers.commands.exporter import QueueCollector
from tests.integration.harness import Stack, free_port, replies, stack
from tests.integration.sentinel_group import SentinelGroup

pytestmark = pytest.mark.chaos

ENV = {
    "GREENQ_VISIBILITY_TIMEOUT_S": "8",
    "GREENQ_MAX_BATCH_COMPUTE_S": "3",
    "GREENQ_CONSUMER_LEASE_S": "3",
    "GREENQ_BATCH__REPLY__MAX_BATCH_SIZE": "4",
    "GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.2",
    "GREENQ_CHAOS__BATCH_DELAY_S": "0.4",  # a run of several seconds, so the failover lands mid-run
}


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    g = SentinelGroup(free_port(), free_port(), [free_port(), free_port()]).start()
    try:
        yield g
    finally:
        g.stop()


def _stored(s: Stack, master: redis.Redis, job_id: str) -> JobResult | None:
    raw = master.get(s.client.app.backend.get_key_for_task(job_id))
    return None if raw is None else result_from_meta(job_id, json.loads(raw))


def _scrape(collector: QueueCollector) -> dict[str, float]:
    """The exporter's values, summed over labels."""
    values: dict[str, float] = {}
    for family in collector.collect():
        values[family.name] = sum(sample.value for sample in family.samples)
    return values


def _diagnosis(
    s: Stack, port: int, before: list[str], after: list[str], results: dict[str, JobResult], log: Path
) -> str:
    """What a failure needs to be understood without rerunning it: where the missing jobs are, and the worker's log."""
    master = redis.Redis(port=port, decode_responses=True)
    missing = [j for j in before + after if j not in results]
    queues = {q: master.llen(q) for t in job_types.names() for q in redis_priority_lists(queue_name(t))}
    now = float(master.time()[0])
    consumers = {c: round(now - score, 1) for c, score in master.zrange(CONSUMERS_KEY, 0, -1, withscores=True)}
    per_job = {
        j: {
            "when": "before" if j in before else "after",
            "claim": master.get(start_mark_key(j)),
            "lease": master.get(f"{LEASE_KEY_PREFIX}{j}"),
        }
        for j in missing
    }
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    noise = ("succeeded in", "storing its result", "could not record attempts", "could not close attempts")
    kept = [line for line in lines if line.strip() and not any(n in line for n in noise)]
    return (
        f"{len(missing)} of {len(before) + len(after)} jobs have no result on the master at :{port}\n"
        f"jobs: {json.dumps(per_job, indent=1)}\nqueues: {queues}\nunacked: {master.hlen('unacked')}, "
        f"owners: {master.hgetall(UNACKED_OWNER_KEY)}\nconsumers (s since heartbeat): {consumers}\n"
        "worker log (last 80 lines, routine retries left out):\n" + "\n".join(kept[-80:])
    )


def _computations(s: Stack, port: int) -> float:
    match = re.search(r"^greenq_batch_size_sum\{[^}]*\} (\S+)$", s.metrics_text(port), flags=re.M)
    return float(match[1]) if match else 0.0


@pytest.mark.parametrize("fault", ["sentinel-failover", "kill-master"])
def test_jobs_survive_a_master_failover(group: SentinelGroup, tiny_model_dir: Path, tmp_path: Path, fault: str) -> None:
    env = {**ENV, "GREENQ_SENTINEL_MASTER": group.name}
    with stack(0, tiny_model_dir, env, url=group.url) as s:
        metrics_port = free_port()
        s.start_worker(tmp_path / "worker.log", metrics_port=metrics_port)
        exporter = QueueCollector(redis_client(group.url, sentinel_master=group.name))
        assert _scrape(exporter)["greenq_broker_up"] == 1
        before = s.client.submit_many(replies(24, "before"))
        group.wait_replicated()  # the claim below covers these: the replica holds every enqueue
        keys = [s.client.app.backend.get_key_for_task(job_id) for job_id in before]
        s.wait_for(lambda: 0 < int(s.redis.exists(*keys)) < len(keys) // 2, what="the run to be under way")

        started = time.monotonic()
        new_port = group.fail_over() if fault == "sentinel-failover" else group.kill_master()
        failover_s = time.monotonic() - started
        after = s.client.submit_many(replies(8, "after"))

        results: dict[str, JobResult] = {}
        try:
            for r in s.client.as_completed(before + after, timeout_s=180):
                results[r.job_id] = r
        except ResultTimeout:
            pytest.fail(_diagnosis(s, new_port, before, after, results, tmp_path / "worker.log"))
        assert set(results) == set(before + after)
        assert all(r.status is JobStatus.succeeded for r in results.values()), [r.error for r in results.values()]

        master = redis.Redis(port=new_port)
        queues = [name for t in job_types.names() for name in redis_priority_lists(queue_name(t))]
        s.wait_for(
            lambda: sum(int(master.llen(q)) for q in queues) == 0 and not master.hlen("unacked"),
            timeout_s=60,
            what="every copy of every message to be acked on the new master",
        )
        scraped = _scrape(exporter)  # its client was made before the failover
        assert scraped["greenq_broker_up"] == 1 and scraped["greenq_queue_depth"] == 0
        # Exactly one stored final result each, the one the client saw, still there after every redelivery.
        for job_id, seen in results.items():
            assert _stored(s, master, job_id) == seen, job_id
        computed = _computations(s, metrics_port)
        print(f"{fault}: failover took {failover_s:.1f} s; {len(results)} jobs, {computed:.0f} computations")
