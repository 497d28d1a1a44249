"""Who gets a job first: a worker starting it, or a storefront cancelling it.

Both sides set the same key (`greenq:claim:<job id>`) only if it is absent; the first wins.
A worker that finds "cancelled" does not compute the job; a cancel that finds "received", or
a stored result, is refused ("already started") and writes nothing.
"""

from __future__ import annotations

from typing import Any

from shared.keys import CLAIM_KEY_PREFIX

RECEIVED = "received"
CANCELLED = "cancelled"


def claim_key(job_id: str) -> str:
    return f"{CLAIM_KEY_PREFIX}{job_id}"


def claim_for_worker(client: Any, job_id: str, ttl_s: int) -> bool:
    """True if the worker may compute the job (first claim, or its own earlier one on redelivery)."""
    if client.set(claim_key(job_id), RECEIVED, nx=True, ex=ttl_s):
        return True
    value = client.get(claim_key(job_id))
    return value is None or value.decode() == RECEIVED


# KEYS: claim, result. ARGV: CANCELLED, the encoded cancelled result, ttl in s. 1: cancelled (now or before).
CANCEL_SCRIPT = """
local claim = redis.call('GET', KEYS[1])
if claim == ARGV[1] then return 1 end
if claim then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[2])
return 1
"""


def cancel(client: Any, job_id: str, ttl_s: int, result_key: str, cancelled_result: bytes) -> bool:
    """True if the job was cancelled before any worker started it; then its cancelled result is stored.

    One script decides and writes: a job whose claim says a worker started it, or whose result is
    stored (its claim may have lapsed before its result), stays as it is. Callers go through
    `shared.result_store.ResultStore.cancel`, which encodes the result as Celery does."""
    return bool(client.eval(CANCEL_SCRIPT, 2, claim_key(job_id), result_key, CANCELLED, cancelled_result, ttl_s))


def state(client: Any, job_id: str) -> str | None:
    value = client.get(claim_key(job_id))
    return None if value is None else value.decode()
