"""Slow DNS for one tenant's callback hosts must not slow any other tenant: a real gateway process whose
`socket.getaddrinfo` is made slow (by a sitecustomize on its path) for names under `.slow.test` and `.later.test`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.gateways import Gateway, Receiver
from tests.integration.harness import stack

REPLY = {"customer_message": "Where is my parcel?"}
SLOW_DNS_S = 6.0  # each lookup of a .slow.test name: like a nameserver that never answers, then a failure
RESOLVE_TIMEOUT_S = 1.0
SLOW_SUBMITS = 60  # more than AnyIO's 40 worker threads, so blocking lookups would take them all
OTHER_TENANT_BOUND_S = 2.0  # generous for a noisy 2-core machine; blocked threads cost SLOW_DNS_S

LATER_DNS_S = 20.0  # a .later.test name: its first lookup answers 127.0.0.1 at once, every later one hangs
CALLBACK_TIMEOUT_S = 1.0

SLOW_RESOLVER = f"""
import socket, threading, time
_real = socket.getaddrinfo
_seen = set()
_lock = threading.Lock()
def _getaddrinfo(host, port, *args, **kwargs):
    name = (host.decode() if isinstance(host, bytes) else str(host)).rstrip(".")
    if name.endswith(".slow.test"):
        time.sleep({SLOW_DNS_S})
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    if name.endswith(".later.test"):
        with _lock:
            first = name not in _seen
            _seen.add(name)
        if first:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        time.sleep({LATER_DNS_S})
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    return _real(host, port, *args, **kwargs)
socket.getaddrinfo = _getaddrinfo
"""


def _slow_dns_env(tmp: Path) -> dict[str, str]:
    """A gateway whose getaddrinfo is slow for the test's names: a sitecustomize on its PYTHONPATH."""
    (tmp / "sitecustomize.py").write_text(SLOW_RESOLVER)
    return {
        "PYTHONPATH": os.pathsep.join(p for p in (str(tmp), os.environ.get("PYTHONPATH", "")) if p),
        "GREENQ_GATEWAY_CALLBACK_ALLOW": '["127.0.0.1/32", "localhost"]',
        "GREENQ_GATEWAY_CALLBACK_RESOLVE_TIMEOUT_S": str(RESOLVE_TIMEOUT_S),
        "GREENQ_GATEWAY_CALLBACK_RESOLVE_CONCURRENCY": "4",
        "GREENQ_GATEWAY_CALLBACK_TIMEOUT_S": str(CALLBACK_TIMEOUT_S),
    }


@pytest.fixture(scope="module")
def slow_dns_gateway(
    redis_port: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("slow-dns")
    with stack(redis_port, tiny_model_dir) as s:  # no worker: jobs stay queued, which is all a GET needs
        yield Gateway(s, tmp, _slow_dns_env(tmp))


def test_slow_dns_of_one_tenant_does_not_slow_another(slow_dns_gateway: Gateway) -> None:
    api = slow_dns_gateway
    own = api.http.post("/v1/jobs/reply", json={"job": REPLY}, headers=api.auth("globex"))
    assert own.status_code == 202, own.text
    job_id = own.json()["id"]
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def slow_submit(n: int) -> None:
        with httpx.Client(base_url=api.url, timeout=120) as http:
            body = {"job": REPLY, "callback_url": f"https://h{n}-{time.monotonic_ns()}.slow.test/hook"}
            response = http.post("/v1/jobs/reply", json=body, headers=api.auth("acme"))
        with lock:
            answers.append(response)

    flood = [threading.Thread(target=slow_submit, args=(n,)) for n in range(SLOW_SUBMITS)]
    for thread in flood:
        thread.start()
    time.sleep(0.5)  # the flood is in: its lookups have started
    latencies_s: list[float] = []
    other_submit_s = 0.0
    with httpx.Client(base_url=api.url, timeout=120) as http:
        until = time.monotonic() + 3.0
        while time.monotonic() < until:
            start = time.monotonic()
            seen = http.get(f"/v1/jobs/{job_id}", headers=api.auth("globex"))
            latencies_s.append(time.monotonic() - start)
            assert seen.status_code == 200 and seen.json()["status"] == "queued", seen.text
            time.sleep(0.1)
        start = time.monotonic()  # the other tenant's own callback host resolves (through /etc/hosts) meanwhile
        other = http.post(
            "/v1/jobs/reply",
            json={"job": REPLY, "callback_url": "http://localhost:9/hook"},
            headers=api.auth("globex"),
        )
        other_submit_s = time.monotonic() - start
    for thread in flood:
        thread.join(timeout=120)
    print(f"globex GET: max {max(latencies_s):.3f} s over {len(latencies_s)}; globex submit {other_submit_s:.3f} s")
    assert max(latencies_s) < OTHER_TENANT_BOUND_S
    assert other.status_code == 202, other.text
    assert other_submit_s < OTHER_TENANT_BOUND_S
    assert len(answers) == SLOW_SUBMITS
    for response in answers:  # the slow tenant's own submissions are refused, naming the field
        assert response.status_code == 422, response.text
        assert response.json()["error"]["fields"][0]["field"] == "callback_url"


def test_slow_dns_of_one_tenants_callbacks_does_not_delay_anothers(
    redis_port: int, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Attempts resolve in each tenant's own lookup slots, not in the executor that claims and records every
    tenant's callbacks: acme's hanging lookups must not hold up globex's delivery."""
    receiver = Receiver()
    try:
        with stack(redis_port, tiny_model_dir) as s:
            s.start_worker(tmp_path / "worker.log", queues="reply")
            api = Gateway(s, tmp_path, _slow_dns_env(tmp_path))
            acme_ids = []
            for n in range(8):  # each accepted at submit (its first lookup is quick); every attempt's lookup hangs
                body = {"job": REPLY, "callback_url": f"http://a{n}-{time.monotonic_ns()}.later.test:{receiver.port}/"}
                accepted = api.http.post("/v1/jobs/reply", json=body, headers=api.auth())
                assert accepted.status_code == 202, accepted.text
                acme_ids.append(accepted.json()["id"])
            for job_id in acme_ids:
                done = api.http.get(f"/v1/jobs/{job_id}", params={"wait": 60}, headers=api.auth()).json()
                assert done["status"] == "succeeded", done
            time.sleep(4 * CALLBACK_TIMEOUT_S)  # acme's attempts fail, are retried, and their lookups pile up
            body = {"job": REPLY, "callback_url": f"http://localhost:{receiver.port}/hook"}
            own = api.http.post("/v1/jobs/reply", json=body, headers=api.auth("globex"))
            assert own.status_code == 202, own.text
            job_id = own.json()["id"]
            done = api.http.get(f"/v1/jobs/{job_id}", params={"wait": 60}, headers=api.auth("globex")).json()
            assert done["status"] == "succeeded", done
            finished_at = time.monotonic()
            while job_id not in receiver.job_ids() and time.monotonic() < finished_at + 60:
                time.sleep(0.05)
            delivered_s = next(d.at for d in receiver.deliveries if d.headers.get("x-greenq-job-id") == job_id)
            print(f"globex's callback arrived {delivered_s - finished_at:.2f} s after its result")
            assert delivered_s - finished_at < OTHER_TENANT_BOUND_S
            assert not set(acme_ids) & set(receiver.job_ids())  # acme's names never resolved a second time
    finally:
        receiver.close()
