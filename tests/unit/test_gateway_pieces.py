"""Gateway logic that needs no server: keys, tenant lookup, callback signatures and retries, long-poll waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from greenq.producers import cli
from greenq.producers.gateway.app import create_app
from greenq.producers.gateway.callbacks import retry_after_s, sign, verify_signature
from greenq.producers.gateway.sender import parse_status_line
from greenq.producers.gateway.tenants import Tenant, TenantRegistry, hash_key, new_key
from greenq.producers.gateway.waiting import ResultWaiter
from greenq.shared import job_types
from greenq.shared.settings import Settings


def test_keys_are_random_and_only_their_hash_is_kept() -> None:
    key = new_key()
    assert key.startswith("gq_") and len(key) > 40 and new_key() != key
    tenant = Tenant(name="acme", key_sha256=hash_key(key))
    registry = TenantRegistry([tenant, Tenant(name="globex", key_sha256=hash_key(new_key()))])
    assert registry.authenticate(key) == tenant
    assert registry.authenticate(key + "x") is None
    assert key not in tenant.model_dump_json()


def test_signatures_verify_and_reject_tampering_and_staleness() -> None:
    body = b'{"job_id": "j1", "status": "succeeded"}'
    now = int(time.time())
    signature = sign("s3cret", now, body)
    assert signature.startswith("sha256=")
    assert verify_signature("s3cret", str(now), body, signature)
    assert not verify_signature("s3cret", str(now), body + b" ", signature)
    assert not verify_signature("other", str(now), body, signature)
    assert not verify_signature("s3cret", str(now - 3600), body, sign("s3cret", now - 3600, body))
    assert not verify_signature("s3cret", "not-a-time", body, signature)


def test_callback_retries_back_off_exponentially_to_a_minute() -> None:
    assert [retry_after_s(n) for n in (1, 2, 3, 4, 5, 6, 7, 30)] == [2, 4, 8, 16, 32, 60, 60, 60]


def test_only_an_http_status_line_counts_as_an_answer() -> None:
    assert parse_status_line(b"HTTP/1.1 204 No Content\r\n") == 204
    assert parse_status_line(b"HTTP/1.0 302\r\n") == 302
    for junk in (b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 20\r\n", b"HTTP/2 200\r\n", b"\r\n"):
        with pytest.raises(ValueError):
            parse_status_line(junk)


def test_a_long_poll_ends_when_the_result_is_stored() -> None:
    stored: dict[str, bytes] = {}

    class Backend:  # the three calls the waiter makes, over a dict
        def get_key_for_task(self, job_id: str) -> str:
            return job_id

        def mget(self, keys: list[str]) -> list[bytes | None]:
            return [stored.get(k) for k in keys]

        def decode_result(self, raw: bytes) -> dict[str, str]:
            return {"status": raw.decode()}

    async def scenario() -> tuple[bool, bool, bool]:
        waiter = ResultWaiter(Backend(), poll_s=0.01)
        stored["running"] = b"STARTED"
        finishing = asyncio.create_task(waiter.wait("soon", 5))
        await asyncio.sleep(0.05)
        stored["soon"] = b"SUCCESS"
        return await finishing, await waiter.wait("running", 0.1), await waiter.wait("never", 0.05)

    assert asyncio.run(scenario()) == (True, False, False)


def test_gateway_key_makes_a_callback_secret_and_prints_it_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["gateway-key", "acme"]) == 0
    out = capsys.readouterr().out
    entry = Tenant.model_validate_json(next(line for line in out.splitlines() if line.strip().startswith("{")))
    key = next(line.strip() for line in out.splitlines() if line.strip().startswith("gq_"))
    assert entry.key_sha256 == hash_key(key) and out.count(key) == 1
    assert len(entry.callback_secret) >= 32 and out.count(entry.callback_secret) == 1


UNREACHABLE = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every Redis call is refused at once


@pytest.fixture
def gateway() -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The real app over a broker and backend that refuse connections: what it answers before reaching them."""
    key = new_key()
    tenants = TenantRegistry([Tenant(name="acme", key_sha256=hash_key(key), callback_secret="s")])
    app = create_app(Settings(broker_url=UNREACHABLE, backend_url=UNREACHABLE), tenants, dispatch_callbacks=False)
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http, {"Authorization": f"Bearer {key}"}


def test_the_app_refuses_before_it_reaches_redis(gateway: tuple[TestClient, dict[str, str]]) -> None:
    http, auth = gateway
    anonymous = http.post("/v1/jobs/reply", json={"job": {"customer_message": "hi"}})
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.json()["error"]["code"] == "unauthorized"
    unknown = http.post("/v1/jobs/poem", json={"job": {}}, headers=auth).json()["error"]
    assert unknown["code"] == "invalid_request" and unknown["fields"][0]["field"] == "path.job_type"
    assert http.get("/v1/jobs/a b", headers=auth).status_code == 422
    assert http.get("/healthz").text == "ok\n"


def test_an_unreachable_queue_is_a_503_to_retry(gateway: tuple[TestClient, dict[str, str]]) -> None:
    http, auth = gateway
    for method, path in (("POST", "/v1/jobs/reply"), ("GET", "/v1/jobs/j1"), ("DELETE", "/v1/jobs/j1")):
        response = http.request(method, path, json={"job": {"customer_message": "hi"}}, headers=auth)
        assert response.status_code == 503 and response.headers["Retry-After"] == "5", (method, path)
        assert response.json()["error"]["code"] == "broker_unavailable"
    assert http.get("/readyz").status_code == 503


def test_every_type_s_submissions_are_one_metric_series(gateway: tuple[TestClient, dict[str, str]]) -> None:
    http, _ = gateway
    for job_type in job_types.names():
        http.post(f"/v1/jobs/{job_type}", json={"job": {}})
    exported = http.get("/metrics").text
    one_series = 'greenq_gateway_requests_total{code="401",method="POST",route="/v1/jobs/{job_type}"}'
    assert f"{one_series} {float(len(job_types.names()))}" in exported
