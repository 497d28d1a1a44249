"""Callback delivery end to end: real gateways (uvicorn), real Redis, endpoints on 127.0.0.1.

No worker: a cancelled job stores its result at once, which is all a callback waits for. Strategy jobs
are used because nothing here consumes them, so no job ever finishes unless a test cancels it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from greenq.producers.gateway.addresses import AllowList, parse_callback_url
from greenq.producers.gateway.callbacks import verify_signature
from greenq.producers.gateway.sender import Outcome, post
from greenq.shared.keys import CALLBACK_JOB_KEY_PREFIX, CALLBACK_WAITING_KEY, OWNER_KEY_PREFIX
from tests.integration.gateways import LOOPBACK_ALLOWED, Gateway, Receiver
from tests.integration.harness import Stack, stack

STRATEGY = {"period": "Q1", "metrics": {}}
INTERNAL_URLS = [
    "http://127.0.0.1:9/hook",
    "http://localhost:9/hook",
    "http://[::1]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/hook",
    "http://172.16.0.1/hook",
    "http://192.168.0.10/hook",
    "http://100.64.0.1/hook",
    "http://[fc00::1]/hook",
    "http://[fd12:3456::1]/hook",
    "http://[fe80::1]/hook",
    "http://0.0.0.0/hook",
    "http://[::]/hook",
    "http://224.0.0.1/hook",
    "http://[ff02::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://2130706433/hook",
    "http://0x7f.0.0.1/hook",
]


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def finish(gateway: Gateway, tenant: str, callback_url: str) -> str:
    """Submit a job with a callback and cancel it, which stores its final result: the callback is due."""
    accepted = gateway.http.post(
        "/v1/jobs/strategy", json={"job": STRATEGY, "callback_url": callback_url}, headers=gateway.auth(tenant)
    )
    assert accepted.status_code == 202, accepted.text
    job_id: str = accepted.json()["id"]
    assert gateway.http.delete(f"/v1/jobs/{job_id}", headers=gateway.auth(tenant)).status_code == 200
    return job_id


@pytest.fixture
def fresh(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    with stack(redis_port, tiny_model_dir) as s:
        yield s


@pytest.fixture(scope="module")
def strict(redis_port: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with no allow-list, in a deployment where no job ever finishes: nothing is ever sent."""
    with stack(redis_port, tiny_model_dir) as s:
        yield Gateway(s, tmp_path_factory.mktemp("strict"))


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_callback_urls_to_internal_addresses_are_refused(strict: Gateway, url: str) -> None:
    response = strict.http.post("/v1/jobs/strategy", json={"job": STRATEGY, "callback_url": url}, headers=strict.auth())
    print(url, response.status_code, response.text[:300])
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["callback_url"]


def test_a_batch_names_the_job_whose_callback_is_refused(strict: Gateway) -> None:
    body = {
        "jobs": [
            {"type": "strategy", "job": STRATEGY},
            {"type": "strategy", "job": STRATEGY, "callback_url": "http://169.254.169.254/latest/meta-data/"},
        ]
    }
    response = strict.http.post("/v1/jobs:batch", json=body, headers=strict.auth())
    print(response.status_code, response.text[:400])
    entries = response.json()["jobs"]
    assert entries[0]["id"] and entries[1]["error"]["fields"][0]["field"] == "jobs.1.callback_url"


def test_a_tenant_without_a_callback_secret_cannot_ask_for_callbacks(fresh: Stack, tmp_path: Path) -> None:
    gateway = Gateway(fresh, tmp_path, LOOPBACK_ALLOWED)
    receiver = Receiver()
    try:
        body = {"job": STRATEGY, "callback_url": receiver.url}
        refused = gateway.http.post("/v1/jobs/strategy", json=body, headers=gateway.auth("nosecret"))
        print(refused.status_code, refused.text[:300])
        assert refused.status_code == 422
        field = refused.json()["error"]["fields"][0]
        assert field["field"] == "callback_url" and "callback_secret" in field["problem"]
        assert gateway.http.post(
            "/v1/jobs/strategy", json={"job": STRATEGY}, headers=gateway.auth("nosecret")
        ).is_success
    finally:
        receiver.close()


def test_the_address_is_checked_again_when_sending(fresh: Stack, tmp_path: Path) -> None:
    """Accepted where 127.0.0.1 was allowed, sent by a gateway where it is not (as after DNS rebinding)."""
    receiver = Receiver()
    try:
        lenient = Gateway(fresh, tmp_path, LOOPBACK_ALLOWED, name="lenient")
        accepted = lenient.http.post(
            "/v1/jobs/strategy", json={"job": STRATEGY, "callback_url": receiver.url}, headers=lenient.auth()
        )
        assert accepted.status_code == 202
        job_id = accepted.json()["id"]
        lenient.process.terminate()
        lenient.process.wait(timeout=30)
        strict = Gateway(fresh, tmp_path, name="strict")
        assert strict.http.delete(f"/v1/jobs/{job_id}", headers=strict.auth()).status_code == 200
        refused = wait_until(lambda: 'outcome="refused"' in strict.http.get("/metrics").text, 15)
        print("deliveries:", len(receiver.deliveries), "metrics:", strict.http.get("/metrics").text.count("refused"))
        assert not receiver.deliveries and refused
    finally:
        receiver.close()


def test_redirects_are_not_followed(fresh: Stack, tmp_path: Path) -> None:
    target = Receiver()
    redirecting = Receiver(lambda n: f"redirect:{target.url}")
    try:
        gateway = Gateway(fresh, tmp_path, LOOPBACK_ALLOWED)
        finish(gateway, "acme", redirecting.url)
        assert wait_until(lambda: len(redirecting.deliveries) >= 1, 15)
        time.sleep(3)
        print("redirecting:", len(redirecting.deliveries), "target:", len(target.deliveries))
        assert not target.deliveries
    finally:
        target.close()
        redirecting.close()


def test_a_slow_endpoint_does_not_delay_other_tenants(fresh: Stack, tmp_path: Path) -> None:
    slow = Receiver(lambda n: "drip")  # a byte a second, for ever: only a total deadline ends it
    fast = Receiver()
    env = {**LOOPBACK_ALLOWED, "GREENQ_GATEWAY_CALLBACK_TIMEOUT_S": "2", "GREENQ_GATEWAY_CALLBACK_CONCURRENCY": "2"}
    try:
        gateway = Gateway(fresh, tmp_path, env)
        slow_ids = [finish(gateway, "acme", slow.url) for _ in range(6)]
        assert wait_until(lambda: len(slow.deliveries) >= 1, 15)
        done_at = time.monotonic()
        fast_id = finish(gateway, "globex", fast.url)
        arrived = wait_until(lambda: len(fast.deliveries) >= 1, 20)
        delay_s = (fast.deliveries[0].at - done_at) if arrived else float("inf")
        print(f"globex callback {delay_s:.2f} s after its job finished; acme endpoint saw {len(slow.deliveries)}")
        assert arrived and delay_s < 3.0
        assert fast.job_ids() == [fast_id]
        retried = wait_until(lambda: len(slow.job_ids()) > len(set(slow.job_ids())), 15)
        print(
            f"acme attempts: {len(slow.deliveries)} for {len(set(slow.job_ids()))} jobs; "
            f"at most {slow.open_max} open at once"
        )
        assert retried, "an attempt that never ends was not cut off"
        assert set(slow.job_ids()) <= set(slow_ids) and slow.open_max == 2
    finally:
        slow.close()
        fast.close()


def test_a_callback_survives_a_gateway_killed_mid_send(fresh: Stack, tmp_path: Path) -> None:
    receiver = Receiver(lambda n: "hang" if n == 0 else "ok")
    env = {**LOOPBACK_ALLOWED, "GREENQ_GATEWAY_CALLBACK_TIMEOUT_S": "3"}
    try:
        first = Gateway(fresh, tmp_path, env, name="first")
        job_id = finish(first, "acme", receiver.url)
        assert wait_until(lambda: len(receiver.deliveries) == 1, 15), "the first gateway never sent"
        fresh.kill(first.process)  # SIGKILL while the endpoint holds the request open
        Gateway(fresh, tmp_path, env, name="second")
        delivered = wait_until(lambda: len(receiver.deliveries) >= 2, 45)
        print("deliveries:", receiver.job_ids())
        assert delivered, "the callback died with the gateway"
        second = receiver.deliveries[1]
        assert second.headers["x-greenq-job-id"] == job_id and json.loads(second.body)["status"] == "cancelled"
        assert verify_signature(
            "secret-acme", second.headers["x-greenq-timestamp"], second.body, second.headers["x-greenq-signature"]
        )
        time.sleep(3)
        assert len(receiver.deliveries) == 2  # delivered, and not again
    finally:
        receiver.close()


def test_an_attempt_connects_to_the_address_it_checked() -> None:
    """The sender itself: a name is resolved once per attempt, checked, and that address is the one used."""
    receiver = Receiver()
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    try:
        target = parse_callback_url(f"http://hooks.test:{receiver.port}/hook?k=1")
        allowed = asyncio.run(post(target, b"{}", {}, AllowList.parse(["127.0.0.1/32"]), 2, resolver))
        refused = asyncio.run(post(target, b"{}", {}, AllowList(), 2, resolver))
        print(allowed, refused, asked)
        assert allowed.outcome is Outcome.delivered and refused.outcome is Outcome.refused
        assert asked == ["hooks.test", "hooks.test"] and len(receiver.deliveries) == 1
        assert receiver.deliveries[0].headers["host"] == f"hooks.test:{receiver.port}"
    finally:
        receiver.close()


def test_a_deferred_jobs_callback_outlives_the_result_ttl_and_an_expired_result_is_not_waiting(
    fresh: Stack, tmp_path: Path
) -> None:
    """Finding 1: result TTL 60 s, jobs deferred 4 h. One finishes after the TTL has passed (its callback must
    still go out); one finishes at once, and once its result has expired it must not read `queued`."""
    receiver = Receiver()
    env = {**LOOPBACK_ALLOWED, "GREENQ_RESULT_TTL_S": "60"}
    deferred = {"job": STRATEGY, "run_by": 4 * 3600, "carbon_aware": True}
    try:
        gateway = Gateway(fresh, tmp_path, env)
        late = gateway.http.post(
            "/v1/jobs/strategy", json={**deferred, "callback_url": receiver.url}, headers=gateway.auth()
        )
        early = gateway.http.post("/v1/jobs/strategy", json=deferred, headers=gateway.auth())
        assert late.status_code == early.status_code == 202 and late.json()["status"] == "deferred", late.text
        late_id, early_id = late.json()["id"], early.json()["id"]
        assert gateway.http.delete(f"/v1/jobs/{early_id}", headers=gateway.auth()).status_code == 200
        time.sleep(63)  # past the result TTL: the early job's result is gone; the late job has not finished
        expired = gateway.http.get(f"/v1/jobs/{early_id}", headers=gateway.auth())
        print("early job after its result expired:", expired.status_code, expired.text[:300])
        assert expired.status_code == 404 and "expired" in expired.json()["error"]["message"]
        assert gateway.http.delete(f"/v1/jobs/{late_id}", headers=gateway.auth()).status_code == 200
        delivered = wait_until(lambda: len(receiver.deliveries) >= 1, 20)
        print("late job's callbacks:", receiver.job_ids(), gateway.http.get("/metrics").text.count("callbacks_total"))
        assert delivered, "the deferred job's callback was dropped"
        assert receiver.job_ids() == [late_id] and json.loads(receiver.deliveries[0].body)["status"] == "cancelled"
    finally:
        receiver.close()


def test_an_idempotent_resubmit_leaves_the_owner_record_and_a_delivered_callback_alone(
    fresh: Stack, tmp_path: Path
) -> None:
    """Review finding 3: a deferred job with a key and a callback finishes at once; its callback is sent. A retry
    of the POST names the same job and must not send that callback again nor keep the owner record past the
    result; once the result is gone (its expiry simulated by deleting it), a retry must not make GET say queued."""
    receiver = Receiver()
    env = {**LOOPBACK_ALLOWED, "GREENQ_RESULT_TTL_S": "60"}
    body = {"job": STRATEGY, "run_by": 4 * 3600, "carbon_aware": True, "callback_url": receiver.url}
    try:
        gateway = Gateway(fresh, tmp_path, env)
        headers = {"Idempotency-Key": "order-7", **gateway.auth()}
        first = gateway.http.post("/v1/jobs/strategy", json=body, headers=headers)
        assert first.status_code == 202 and first.json()["status"] == "deferred", first.text
        job_id = first.json()["id"]
        assert gateway.http.delete(f"/v1/jobs/{job_id}", headers=gateway.auth()).status_code == 200
        assert wait_until(lambda: len(receiver.deliveries) == 1, 20), "the callback was never sent"
        again = gateway.http.post("/v1/jobs/strategy", json=body, headers=headers)
        assert again.status_code == 202 and again.json()["id"] == job_id, again.text
        owner_key, result_key = f"{OWNER_KEY_PREFIX}{job_id}", fresh.client.app.backend.get_key_for_task(job_id)
        owner_ttl_s, result_ttl_s = fresh.redis.ttl(owner_key), fresh.redis.ttl(result_key)
        time.sleep(4)  # time for a callback registered again to be claimed and sent
        print("deliveries:", receiver.job_ids(), "owner TTL:", owner_ttl_s, "result TTL:", result_ttl_s)
        assert len(receiver.deliveries) == 1, "a delivered callback was sent again"
        assert 0 < owner_ttl_s <= result_ttl_s, "the retry kept the owner record past the result"
        fresh.redis.delete(result_key, owner_key)  # as if both had expired
        late = gateway.http.post("/v1/jobs/strategy", json=body, headers=headers)
        assert late.status_code == 202 and late.json()["id"] == job_id, late.text
        expired = gateway.http.get(f"/v1/jobs/{job_id}", headers=gateway.auth())
        print("after the result expired:", expired.status_code, expired.text[:200])
        assert expired.status_code == 404
    finally:
        receiver.close()


def test_a_callback_is_kept_while_its_job_waits_in_a_backlog_longer_than_the_result_ttl(
    fresh: Stack, tmp_path: Path
) -> None:
    """Review finding 6: a job with no run_by and no deadline waits in the queue (no worker runs). Its callback
    record and owner record are shortened to 1.5 s, as if GREENQ_RESULT_TTL_S had nearly passed; the sweep of
    waiting callbacks (every second here) must keep both while the job has no result, and the callback go out."""
    receiver = Receiver()
    env = {**LOOPBACK_ALLOWED, "GREENQ_RESULT_TTL_S": "60", "GREENQ_GATEWAY_CALLBACK_SWEEP_S": "1"}
    try:
        gateway = Gateway(fresh, tmp_path, env)
        accepted = gateway.http.post(
            "/v1/jobs/strategy", json={"job": STRATEGY, "callback_url": receiver.url}, headers=gateway.auth()
        )
        assert accepted.status_code == 202 and accepted.json()["status"] == "queued", accepted.text
        job_id = accepted.json()["id"]
        assert wait_until(lambda: fresh.redis.zscore(CALLBACK_WAITING_KEY, job_id) is not None, 20)
        record_key, owner_key = f"{CALLBACK_JOB_KEY_PREFIX}{job_id}", f"{OWNER_KEY_PREFIX}{job_id}"
        assert fresh.redis.pexpire(record_key, 1500) and fresh.redis.pexpire(owner_key, 1500)
        time.sleep(5)  # past both shortened TTLs: several sweeps
        ttls_s = fresh.redis.ttl(record_key), fresh.redis.ttl(owner_key)
        print("callback record and owner record TTLs after the backlog:", ttls_s)
        assert min(ttls_s) >= 30, "the waiting job's callback or owner record was let expire"
        assert gateway.http.get(f"/v1/jobs/{job_id}", headers=gateway.auth()).json()["status"] == "queued"
        assert gateway.http.delete(f"/v1/jobs/{job_id}", headers=gateway.auth()).status_code == 200
        assert wait_until(lambda: len(receiver.deliveries) >= 1, 20), "the callback was dropped"
        assert receiver.job_ids() == [job_id]
    finally:
        receiver.close()
