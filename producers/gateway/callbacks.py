"""Completion callbacks: signed with HMAC-SHA256 so the storefront can trust them, and kept in Redis
until delivered so a gateway that dies mid-send does not lose one (at-least-once).

Each POST carries `X-Greenq-Timestamp` (Unix seconds) and
`X-Greenq-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`. Verify with
`verify_signature` (or the same three lines in any language) and reject old timestamps.

In Redis, each callback is a hash (url, tenant, attempts) and a member of one sorted set scored by when
a gateway should next look at it. A gateway claims a due callback by moving its score past the attempt's
deadline (a lease); if it dies, the lease runs out and another gateway sends it again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.keys import (
    CALLBACK_DUE_KEY,
    CALLBACK_JOB_KEY_PREFIX,
    LEGACY_CALLBACK_KEY_PREFIX,
    LEGACY_PENDING_KEY,
)
from shared.results import is_final, result_from_meta

log = logging.getLogger(__name__)
RECHECK_S = 0.5  # how often an unfinished job's callback is looked at again
BUSY_S = 0.5  # how long a due callback waits when its tenant already has its attempts in flight
FIRST_RETRY_S = 2.0
MAX_RETRY_S = 60.0
CLAIM_BATCH = 500

# KEYS: due set, job hash. ARGV: job id, now, new score, 1 to count an attempt. Returns the attempt count
# (0 when not counting), -1 if the callback is not due (another gateway holds it), -2 if its record is gone.
_CLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return -1 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return -2
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if ARGV[4] == '1' then return redis.call('HINCRBY', KEYS[2], 'attempts', 1) end
return 0
"""


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


def retry_after_s(attempts: int) -> float:
    """Wait before the next attempt after `attempts` failed ones: 2 s, 4 s, 8 s … at most 60 s."""
    return min(MAX_RETRY_S, FIRST_RETRY_S * 2.0 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Claim:
    """A callback this gateway holds the lease on: send it, then report with `delivered`, `failed` or `drop`."""

    job_id: str
    url: str
    tenant: str
    attempt: int  # 1 for the first
    result: dict[str, Any]


class CallbackQueue:
    """Durable callbacks in Redis, shared by every gateway."""

    def __init__(self, client: Any, backend: Any, ttl_s: int) -> None:
        self._redis = client
        self._backend = backend
        self._ttl_s = ttl_s
        self._claim = client.register_script(_CLAIM)

    def register(self, job_id: str, url: str, tenant: str) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(f"{CALLBACK_JOB_KEY_PREFIX}{job_id}", mapping={"url": url, "tenant": tenant, "attempts": 0})
        pipe.expire(f"{CALLBACK_JOB_KEY_PREFIX}{job_id}", self._ttl_s)
        pipe.zadd(CALLBACK_DUE_KEY, {job_id: time.time()})
        pipe.execute()

    def claim_due(
        self, now: float, lease_s: float, free: Mapping[str, int], default_free: int, most: int
    ) -> list[Claim]:
        """Take up to `most` callbacks whose job has finished, at most free[tenant] (or default_free) per tenant."""
        if most <= 0:
            return []
        job_ids = [j.decode() for j in self._redis.zrangebyscore(CALLBACK_DUE_KEY, "-inf", now, 0, CLAIM_BATCH)]
        if not job_ids:
            return []
        pipe = self._redis.pipeline()
        for job_id in job_ids:
            pipe.hgetall(f"{CALLBACK_JOB_KEY_PREFIX}{job_id}")
        records = pipe.execute()
        metas = self._backend.mget([self._backend.get_key_for_task(j) for j in job_ids])
        room = dict(free)
        pipe = self._redis.pipeline(transaction=False)
        wanted: list[tuple[str, dict[bytes, bytes], Any]] = []
        for job_id, record, raw in zip(job_ids, records, metas, strict=True):
            keys = [CALLBACK_DUE_KEY, f"{CALLBACK_JOB_KEY_PREFIX}{job_id}"]
            if not record:
                pipe.zrem(CALLBACK_DUE_KEY, job_id)  # expired with its job
                continue
            meta = self._backend.decode_result(raw) if raw is not None else None
            tenant = record[b"tenant"].decode()
            if meta is None or not is_final(meta):
                self._claim(keys=keys, args=[job_id, now, now + RECHECK_S, 0], client=pipe)
            elif len(wanted) >= most or room.get(tenant, default_free) <= 0:
                self._claim(keys=keys, args=[job_id, now, now + BUSY_S, 0], client=pipe)
            else:
                room[tenant] = room.get(tenant, default_free) - 1
                wanted.append((job_id, record, meta))
        for job_id, _, _ in wanted:
            keys = [CALLBACK_DUE_KEY, f"{CALLBACK_JOB_KEY_PREFIX}{job_id}"]
            self._claim(keys=keys, args=[job_id, now, now + lease_s, 1], client=pipe)
        answers = pipe.execute()
        claims: list[Claim] = []
        for (job_id, record, meta), attempt in zip(wanted, answers[len(answers) - len(wanted) :], strict=True):
            if int(attempt) <= 0:
                continue  # another gateway has it
            result = result_from_meta(job_id, meta).to_json()
            claims.append(Claim(job_id, record[b"url"].decode(), record[b"tenant"].decode(), int(attempt), result))
        return claims

    def delivered(self, claim: Claim) -> None:
        self.drop(claim)

    def failed(self, claim: Claim, retry_at: float) -> None:
        self._redis.zadd(CALLBACK_DUE_KEY, {claim.job_id: retry_at}, xx=True)

    def drop(self, claim: Claim) -> None:
        pipe = self._redis.pipeline()
        pipe.zrem(CALLBACK_DUE_KEY, claim.job_id)
        pipe.delete(f"{CALLBACK_JOB_KEY_PREFIX}{claim.job_id}")
        pipe.execute()

    def adopt_legacy(self) -> int:
        """Move callbacks queued by a gateway from before the due set (a set plus JSON records) into it."""
        moved = 0
        while (raw_id := self._redis.spop(LEGACY_PENDING_KEY)) is not None:
            job_id = raw_id.decode()
            raw = self._redis.get(f"{LEGACY_CALLBACK_KEY_PREFIX}{job_id}")
            if raw is not None:
                record = json.loads(raw)
                self.register(job_id, record["url"], record["tenant"])
                self._redis.delete(f"{LEGACY_CALLBACK_KEY_PREFIX}{job_id}")
                moved += 1
        return moved
