"""Idempotency keys: one logical request → one job id, named by its key only once the job is enqueued.

A key is claimed in two phases. `claim` sets it to "pending" (SET NX) for PENDING_TTL_S; the producer
pushes the job; `confirm` then sets the payload's fingerprint with the full TTL, and `release` deletes
the claim of a job that was not pushed. A producer killed between claim and push leaves only a pending
claim, which expires by itself; a producer that finds another's pending claim waits for it to settle.

Why not one Lua script that claims the key and LPUSHes the job together: it would work only with a
Redis broker on the same server as this store, and it would have to write kombu's message format by
hand. Two phases work with any broker (RabbitMQ included) and keep kombu in charge of the message.

>>> store = IdempotencyStore(redis_client, ttl_s=86400)
>>> claim = store.claim("reply", "ticket-42", payload)         # ClaimState.MINE: push the job, then
>>> store.confirm([claim])                                     # (or store.release([claim]) if it failed)
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis

from shared.errors import IdempotencyConflict
from shared.job_types import JobType
from shared.keys import IDEMPOTENCY_KEY_PREFIX

_NAMESPACE = uuid.UUID("6f0f3c52-5d0e-4f55-9a43-0a6a7c1f8e21")
# Longer than a push takes with retries (about 4 s); a crashed producer blocks its keys for this long.
PENDING_TTL_S = 30
PENDING_POLL_S = 0.05
_PENDING = "pending:"  # "pending:<fingerprint>:<claim token>"; a confirmed key holds "<fingerprint>"

# Both act only on the caller's own pending claim. confirm also sets a claim that expired meanwhile:
# the job is on the broker, so the key must name it.
_CONFIRM = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or not value then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def job_id_for_key(job_type: JobType, key: str) -> str:
    """A deterministic job id, so even a lost claim cannot create a second, different job."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_type}:{key}"))


def fingerprint(job_type: JobType, payload: dict[str, Any]) -> str:
    canonical = json.dumps({"type": job_type, "payload": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ClaimState(Enum):
    MINE = "mine"  # this caller holds the pending claim: push the job, then confirm or release
    ENQUEUED = "enqueued"  # the key already names an enqueued job: nothing to push
    BUSY = "busy"  # another producer is pushing the same job: wait_settled, then claim again


@dataclass(frozen=True)
class Claim:
    job_id: str
    state: ClaimState
    redis_key: str
    fingerprint: str
    value: str  # what the key held (or, for MINE, was set to) when claimed
    extra_ttl_s: int = 0  # a deferred job: kept this much longer than the result TTL (until its run_by)


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._confirm = client.register_script(_CONFIRM)
        self._release = client.register_script(_RELEASE)

    def claim(self, job_type: JobType, key: str, payload: dict[str, Any]) -> Claim:
        """Claim `key` for this payload. Raises IdempotencyConflict if it is held for a different payload."""
        job_id = job_id_for_key(job_type, key)
        print_ = fingerprint(job_type, payload)
        redis_key = f"{IDEMPOTENCY_KEY_PREFIX}{job_type}:{key}"
        pending = f"{_PENDING}{print_}:{uuid.uuid4().hex}"
        while True:
            if self._redis.set(redis_key, pending, nx=True, ex=PENDING_TTL_S):
                return Claim(job_id, ClaimState.MINE, redis_key, print_, pending)
            value = self._read(redis_key)
            if value is not None:  # else it expired or was released just now: claim again
                break
        if _fingerprint_of(value) != print_:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different {job_type} payload; "
                "use a new key for a new request"
            )
        state = ClaimState.BUSY if value.startswith(_PENDING) else ClaimState.ENQUEUED
        return Claim(job_id, state, redis_key, print_, value)

    def confirm(self, claims: list[Claim]) -> None:
        """Make each key name its job, now that the broker holds it (only this caller's own claims)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                self._confirm(
                    keys=[claim.redis_key],
                    args=[claim.value, claim.fingerprint, self._ttl_s + claim.extra_ttl_s],
                    client=pipe,
                )
            pipe.execute()

    def release(self, claims: list[Claim]) -> None:
        """Undo claims whose jobs were not enqueued, so a retry can enqueue them."""
        with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                self._release(keys=[claim.redis_key], args=[claim.value], client=pipe)
            pipe.execute()

    def wait_settled(self, claim: Claim) -> None:
        """Wait until another producer's pending claim is confirmed, released or expired."""
        deadline = time.monotonic() + PENDING_TTL_S
        while time.monotonic() < deadline:
            if self._read(claim.redis_key) != claim.value:
                return
            time.sleep(PENDING_POLL_S)

    def _read(self, redis_key: str) -> str | None:
        stored = self._redis.get(redis_key)
        return stored.decode() if isinstance(stored, bytes) else stored


def _fingerprint_of(value: str) -> str:
    return value[len(_PENDING) :].split(":", 1)[0] if value.startswith(_PENDING) else value
