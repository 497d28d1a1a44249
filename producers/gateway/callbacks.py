"""Completion callbacks: signed with HMAC-SHA256 so the storefront can trust them.

Each POST carries `X-Greenq-Timestamp` (Unix seconds) and
`X-Greenq-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`. Verify with
`verify_signature` (or the same three lines in any language) and reject old timestamps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.request
from typing import Any

from shared.results import result_from_meta

log = logging.getLogger(__name__)
PENDING_KEY = "greenq:callbacks:pending"
CALLBACK_KEY_PREFIX = "greenq:callback:"
POLL_S = 0.5
TIMEOUT_S = 5.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, timestamp: str, body: bytes, signature: str, tolerance_s: float = 300.0) -> bool:
    """What a storefront runs on each callback: the signature matches and is recent."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def register(client: Any, job_id: str, url: str, tenant: str, ttl_s: int) -> None:
    client.set(f"{CALLBACK_KEY_PREFIX}{job_id}", json.dumps({"url": url, "tenant": tenant, "attempts": 0}), ex=ttl_s)
    client.sadd(PENDING_KEY, job_id)


class CallbackDispatcher:
    """A thread that posts each finished job's result to its callback URL, with retries.

    Several gateways may run: SREM decides which one sends a given callback.
    """

    def __init__(
        self, client: Any, backend: Any, secrets_by_tenant: dict[str, str], max_attempts: int, on_outcome: Any = None
    ) -> None:
        self._outcomes = on_outcome  # a Counter labelled by outcome, or None
        self._redis = client
        self._backend = backend
        self._secrets = secrets_by_tenant
        self._max_attempts = max_attempts
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="greenq-callbacks", daemon=True)
        self.sent = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.dispatch_ready()
            except Exception:
                log.exception("callback dispatch failed")

    def dispatch_ready(self) -> None:
        job_ids = [j.decode() for j in self._redis.srandmember(PENDING_KEY, 200) or []]
        if not job_ids:
            return
        metas = self._backend.mget([self._backend.get_key_for_task(j) for j in job_ids])
        for job_id, raw in zip(job_ids, metas, strict=True):
            if raw is None:
                continue
            meta = self._backend.decode_result(raw)
            if meta.get("status") not in ("SUCCESS", "FAILURE"):
                continue
            if not self._redis.srem(PENDING_KEY, job_id):
                continue  # another gateway took it
            self._send(job_id, result_from_meta(job_id, meta).to_json())

    def _send(self, job_id: str, result: dict[str, Any]) -> None:
        key = f"{CALLBACK_KEY_PREFIX}{job_id}"
        record_raw = self._redis.get(key)
        if record_raw is None:
            return
        record = json.loads(record_raw)
        if time.time() < record.get("next_at", 0):
            self._redis.sadd(PENDING_KEY, job_id)  # backing off
            return
        body = json.dumps(result, ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Greenq-Timestamp": str(timestamp),
            "X-Greenq-Signature": sign(self._secrets.get(record["tenant"], ""), timestamp, body),
            "X-Greenq-Job-Id": job_id,
        }
        request = urllib.request.Request(record["url"], data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (tenant's URL)
                ok = 200 <= response.status < 300
        except OSError as exc:
            log.warning("callback for %s failed: %s", job_id, exc)
            ok = False
        if ok:
            self.sent += 1
            if self._outcomes is not None:
                self._outcomes.labels("sent").inc()
            self._redis.delete(key)
            return
        record["attempts"] += 1
        if record["attempts"] >= self._max_attempts:
            self.failed += 1
            if self._outcomes is not None:
                self._outcomes.labels("gave_up").inc()
            log.error("giving up on the callback for %s after %d attempts", job_id, record["attempts"])
            self._redis.delete(key)
            return
        record["next_at"] = time.time() + min(60.0, 2.0 ** record["attempts"])
        self._redis.set(key, json.dumps(record), keepttl=True)
        self._redis.sadd(PENDING_KEY, job_id)  # retried on a later pass
