"""The lease check on the batcher thread never waits long on Redis (issue 20 review, finding 4), on a real
redis-server that the test black-holes with SIGSTOP: the connection stays open and nothing answers, as when
the result backend's host or network freezes. The check runs inside the continuous decode loop each time a job
joins; a call there that waited the backend's socket timeout would stall every running row that long."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from greenq.shared.local_redis import LocalRedis, free_port, start_redis
from greenq.workers.edge.leases import JobLeases
from tests.unit.fake_redis import Clock

SOCKET_TIMEOUT_S = 5.0  # stands in for the backend's 120 s; long enough that a call that waits for it shows
BOUND_S = 1.0  # generous: the check gives up on Redis after a fraction of that
ROUNDS = 10


@pytest.fixture
def frozen_redis() -> Iterator[tuple[LocalRedis, redis.Redis]]:
    """A redis-server of this test's own, and a client on it; `freeze` / `thaw` it with SIGSTOP / SIGCONT."""
    server = start_redis(free_port(), databases=1)
    client = redis.Redis.from_url(server.url, socket_timeout=SOCKET_TIMEOUT_S)
    try:
        yield server, client
    finally:
        thaw(server)
        client.close()
        server.stop()


def freeze(server: LocalRedis) -> None:
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)


def thaw(server: LocalRedis) -> None:
    assert server.process is not None
    if server.process.poll() is None:
        os.kill(server.process.pid, signal.SIGCONT)


def timed_lost(leases: JobLeases, job_ids: list[str]) -> tuple[set[str], float]:
    started = time.monotonic()
    lost = leases.lost(job_ids)
    return lost, time.monotonic() - started


def test_while_renewals_fail_the_check_decides_without_asking_redis(
    frozen_redis: tuple[LocalRedis, redis.Redis],
) -> None:
    server, client = frozen_redis
    ttl_s = 6.0  # renews every 2 s; its first renewal after the freeze fails SOCKET_TIMEOUT_S later
    leases = JobLeases(client, ttl_s, owner="a@host")
    assert leases.acquire("job-1") is not None
    freeze(server)
    leases.start()
    try:
        deadline = time.monotonic() + 60
        while leases.failing_for_s() is None:  # the renewer has seen its calls fail
            assert time.monotonic() < deadline, "the renewer never saw a failure"
            time.sleep(0.1)
        for _ in range(ROUNDS):
            lost, took_s = timed_lost(leases, ["job-1"])
            assert took_s < BOUND_S, f"lost() waited {took_s:.1f} s on a black-holed Redis"
            assert lost == {"job-1"}  # confirmed over 2/3 of the lease ago: another worker may hold it by now
    finally:
        leases.stop()


def test_before_renewals_are_known_to_fail_the_check_gives_up_on_redis_soon(
    frozen_redis: tuple[LocalRedis, redis.Redis],
) -> None:
    server, client = frozen_redis
    clock = Clock()
    leases = JobLeases(client, 30.0, owner="a@host", clock=clock, check_timeout_s=0.2)  # renewer not started
    assert leases.acquire("job-1") is not None
    clock.now += 30.0 * 0.6  # stale: lost() renews it on the way, if Redis answers
    freeze(server)
    for _ in range(ROUNDS):
        lost, took_s = timed_lost(leases, ["job-1"])
        assert took_s < BOUND_S, f"lost() waited {took_s:.1f} s on a black-holed Redis"
        assert lost == set()  # its key lives 12 s more from its last confirmation: still ours
    clock.now += 30.0 * 0.2
    lost, took_s = timed_lost(leases, ["job-1"])
    assert took_s < BOUND_S and lost == {"job-1"}
    thaw(server)
    clock.now = 1000.0 + 30.0 * 0.6  # back to a lease still ours: once Redis answers, the check renews it
    deadline = time.monotonic() + 30
    while True:  # the call that timed out while Redis was frozen may still hold the one check slot
        lost, _ = timed_lost(leases, ["job-1"])
        if lost == set() and client.pttl("greenq:lease:job-1") > 25_000:
            break
        assert time.monotonic() < deadline, "the check never renewed the lease once Redis answered"
        time.sleep(0.2)
