"""`GET /v1/jobs/{id}/events` at scale, against a real gateway and Redis: each tenant has a cap on open streams
(over it: 429), and open streams cost Redis a few commands a second in all, not ~80 each (one shared reader).

No worker: strategy jobs never finish here, so every stream stays open (sending keepalives) until closed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.integration.gateways import Gateway
from tests.integration.harness import Stack, stack

STRATEGY = {"period": "Q1", "metrics": {}}


@pytest.fixture
def fresh(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    with stack(redis_port, tiny_model_dir) as s:
        yield s


def submit(gateway: Gateway, tenant: str) -> str:
    accepted = gateway.http.post("/v1/jobs/strategy", json={"job": STRATEGY}, headers=gateway.auth(tenant))
    assert accepted.status_code == 202, accepted.text
    job_id: str = accepted.json()["id"]
    return job_id


def open_stream(gateway: Gateway, exits: ExitStack, job_id: str, tenant: str = "acme") -> httpx.Response:
    """An open event stream whose first event (status) has arrived; closed when `exits` closes."""
    client = exits.enter_context(httpx.Client(base_url=gateway.url, timeout=30))
    response = exits.enter_context(client.stream("GET", f"/v1/jobs/{job_id}/events", headers=gateway.auth(tenant)))
    if response.status_code == 200:
        lines = response.iter_lines()
        while not next(lines).startswith("event: status"):
            pass
        exits.callback(lines.close)  # held until then: a collected line iterator closes the stream
    return response


def test_open_event_streams_are_capped_per_tenant(fresh: Stack, tmp_path: Path) -> None:
    gateway = Gateway(fresh, tmp_path, {"GREENQ_GATEWAY_MAX_STREAMS_PER_TENANT": "2"})
    jobs = [submit(gateway, "acme") for _ in range(3)]
    with ExitStack() as exits:
        first = open_stream(gateway, exits, jobs[0])
        second = open_stream(gateway, exits, jobs[1])
        third = open_stream(gateway, exits, jobs[2])
        print("acme's streams:", first.status_code, second.status_code, third.status_code)
        assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
        print(third.read()[:300])
        error = third.json()["error"]
        assert error["code"] == "too_many_streams" and "2" in error["message"] and third.headers["retry-after"]
        other = open_stream(gateway, exits, submit(gateway, "globex"), "globex")
        assert other.status_code == 200  # another tenant is not held back by acme's streams
    with ExitStack() as exits:  # acme's streams closed: their slots are given back
        deadline = time.monotonic() + 30
        again = open_stream(gateway, exits, jobs[2])
        while again.status_code == 429 and time.monotonic() < deadline:
            time.sleep(0.5)
            again = open_stream(gateway, exits, jobs[2])
        assert again.status_code == 200


def test_open_event_streams_cost_redis_a_few_commands_a_second_in_all(fresh: Stack, tmp_path: Path) -> None:
    gateway = Gateway(fresh, tmp_path)
    jobs = [submit(gateway, "acme") for _ in range(20)]
    with ExitStack() as exits:
        for job_id in jobs:
            assert open_stream(gateway, exits, job_id).status_code == 200
        time.sleep(1)
        before = int(fresh.redis.info("stats")["total_commands_processed"])
        started = time.monotonic()
        time.sleep(4)
        per_s = (int(fresh.redis.info("stats")["total_commands_processed"]) - before) / (time.monotonic() - started)
    print(f"Redis commands per second with 20 idle event streams open (the dispatcher's polls included): {per_s:.0f}")
    assert per_s < 100
