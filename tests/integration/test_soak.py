"""Chaos soak: several hundred jobs while workers are SIGKILLed at random moments, broker
connections are killed and the result backend restarts. Afterwards every job has exactly one
final result, none is lost, and only jobs whose worker died were computed more than once."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from greenq.producers.client import JobSpec
from greenq.shared.errors import BrokerUnavailable
from greenq.shared.keys import COMPUTATIONS_KEY
from greenq.shared.local_redis import LocalRedis, start_redis
from greenq.shared.results import JobResult, JobStatus
from tests.integration.harness import Stack, free_port, stack

pytestmark = pytest.mark.chaos

JOBS = 360
WAVES = 12
WORKERS = 2
SEED = 20261129


@pytest.fixture
def backend() -> Iterator[LocalRedis]:
    server = start_redis(free_port(), persistent=True)  # appendonly yes, appendfsync always
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker() -> Iterator[LocalRedis]:
    server = start_redis(free_port())
    try:
        yield server
    finally:
        server.stop()


def _specs(wave: int, n: int) -> list[JobSpec]:
    specs = []
    for i in range(n):
        if i % 3 == 2:
            specs.append(
                JobSpec("description", {"sku": f"S-{wave}-{i}", "title": f"Mug {wave}.{i}", "category": "kitchen"})
            )
        else:
            specs.append(JobSpec("reply", {"customer_message": f"soak wave {wave} message {i}"}))
    return specs


def _collect(s: Stack, ids: list[str], timeout_s: float) -> dict[str, JobResult]:
    results: dict[str, JobResult] = {}
    deadline = time.monotonic() + timeout_s
    while len(results) < len(ids) and time.monotonic() < deadline:
        missing = [i for i in ids if i not in results]
        try:
            for r in s.client.as_completed(missing, timeout_s=max(1.0, deadline - time.monotonic())):
                results[r.job_id] = r
        except BrokerUnavailable:  # the backend is restarting
            time.sleep(0.5)
    return results


def test_soak_kills_restarts_and_outages_lose_and_duplicate_nothing(
    broker: LocalRedis, backend: LocalRedis, tiny_model_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    env = {
        "GREENQ_RESULT_BACKEND_URL": backend.url,
        # Leases outlive the ~2 s backend restart below (renewed every third of the lease): a lease
        # shorter than a Redis outage lapses, and a waiting copy may then compute the job a second time.
        "GREENQ_CONSUMER_LEASE_S": "6",
        "GREENQ_VISIBILITY_TIMEOUT_S": "30",
        "GREENQ_MAX_BATCH_COMPUTE_S": "10",
        "GREENQ_MAX_ATTEMPTS": "20",  # random kills may hit one job's batch a few times; none is poison
        "GREENQ_CHAOS__LOG_COMPUTATIONS": "true",
        "GREENQ_CHAOS__BATCH_DELAY_S": "0.4",  # so that kills land in the middle of batches
        "GREENQ_BATCH__REPLY__MAX_WAIT_S": "0.1",
        "GREENQ_BATCH__DESCRIPTION__MAX_WAIT_S": "0.1",
    }
    killed_pids: set[int] = set()
    events: list[str] = []
    with stack(broker.port, tiny_model_dir, env, url=broker.url) as s:
        workers = [s.start_worker(tmp_path / f"w{n}.log", node=f"w{n}@soak") for n in range(WORKERS)]
        generation = [0]
        stop = threading.Event()

        def fault(action: str) -> None:
            if action == "kill":
                n = rng.randrange(WORKERS)
                victim = workers[n]
                killed_pids.add(victim.pid)
                s.kill(victim)
                generation[0] += 1
                events.append(f"SIGKILL w{n} (pid {victim.pid})")
                log, node = tmp_path / f"w{n}.{generation[0]}.log", f"w{n}@soak"
                try:
                    workers[n] = s.start_worker(log, node=node)
                except Exception:  # its readiness ping was cut by a connection kill: it is up, ask again
                    workers[n] = s.processes[-1]
                    for attempt in range(3):
                        try:
                            s.wait_ready([node], workers[n], log)
                            break
                        except Exception:
                            if attempt == 2 or workers[n].poll() is not None:
                                raise
            elif action == "connections":
                killed = redis.Redis(port=broker.port).execute_command("CLIENT", "KILL", "TYPE", "normal")
                events.append(f"killed {killed} broker connections")
            else:
                backend.halt()
                time.sleep(1.5)
                backend.start()
                events.append("restarted the result backend")

        def chaos() -> None:
            # Every kind of fault at least once, in a random order, then random kills and connection kills.
            first = ["kill", "kill", "connections", "backend"]
            rng.shuffle(first)
            while first or not stop.is_set():
                time.sleep(rng.uniform(1.0, 2.5))
                action = first.pop() if first else rng.choice(["kill", "kill", "connections"])
                try:
                    fault(action)
                except Exception as exc:  # e.g. a readiness ping cut by the connection kill: note it, go on
                    events.append(f"{action} raised {exc!r}")

        chaos_thread = threading.Thread(target=chaos, name="chaos")
        chaos_thread.start()
        ids: list[str] = []
        try:
            for wave in range(WAVES):
                ids += s.client.submit_many(_specs(wave, JOBS // WAVES))
                time.sleep(rng.uniform(0.5, 2.0))
            results = _collect(s, ids, timeout_s=150)
        finally:
            stop.set()
            chaos_thread.join()
        print(f"\nsoak: {len(ids)} jobs, events: {'; '.join(events)}")

        missing = [i for i in ids if i not in results]
        assert not missing, f"{len(missing)} jobs lost"
        not_succeeded = {
            i: (r.status.value, r.error) for i, r in results.items() if r.status is not JobStatus.succeeded
        }
        assert not not_succeeded, not_succeeded
        assert sum(e.startswith("SIGKILL") for e in events) >= 2 and "restarted the result backend" in events

        computations: dict[str, list[int]] = defaultdict(list)
        for entry in s.redis.lrange(COMPUTATIONS_KEY, 0, -1):
            job_id, pid = entry.decode().split()
            computations[job_id].append(int(pid))
        assert set(computations) == set(ids)  # every job was computed ...
        duplicated = {j: pids for j, pids in computations.items() if len(pids) > 1}
        unexplained = {j: pids for j, pids in duplicated.items() if not set(pids[:-1]) <= killed_pids}
        print(f"soak: {len(duplicated)} jobs computed again after their worker was killed; unexplained: {unexplained}")
        assert not unexplained  # ... and again only where the worker computing it died
        # One final result each: the stored record is the one a computing worker made.
        for job_id, result in results.items():
            assert result.job_id == job_id and result.worker and result.worker.endswith("@soak")
