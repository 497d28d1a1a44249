"""Idempotency keys: one logical request → one job id, named by its key only once the job is enqueued.

A key is claimed in two phases. `claim` sets it to "pending" with a new job id; the producer pushes the
job; `confirm` then sets the payload's fingerprint and that job id with the full TTL, and `release`
deletes the claim of a job that was certainly not pushed; `abandon` makes stale at once the claim of a
job whose push failed but may have reached the broker (a lost reply), so a retry with the same payload
takes it over with the same job id instead of waiting or running the job twice. A producer that finds
another's pending claim waits for it to settle; one that finds a pending claim older than PENDING_TTL_S
(its producer died or stalled, perhaps after pushing) takes it over, keeping its job id for the same
payload, so a job pushed twice is still one job.

The job id is new for each fresh claim, not derived from the key: a key expires one TTL after its
submit, the job's result one TTL after it ran, and a key claimed again in between (for any payload)
must not name the old job, its result, attempts, cancel state or token stream.

Why not one Lua script that claims the key and LPUSHes the job together: it would work only with a
Redis broker on the same server as this store, and it would have to write kombu's message format by
hand. Two phases work with any broker (RabbitMQ included) and keep kombu in charge of the message.

>>> store = IdempotencyStore(redis_client, ttl_s=86400)
>>> claim = store.claim("reply", "ticket-42", payload)         # ClaimState.MINE: push the job, then
>>> store.confirm([claim])              # (store.release([claim]) if not pushed, store.abandon if unsure)
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
# A pending key holds "pending:<fingerprint>:<job id>:<claim token>:<stale at, Redis ms>"; a confirmed key
# "<fingerprint>:<job id>". Keys written before job ids were stored hold "<fingerprint>" (confirmed) or
# "pending:<fingerprint>:<claim token>", and name the job `job_id_for_key` gives.
_PENDING = "pending:"

# Decides on Redis' clock, so producers' clocks need not agree. Returns {state, value, ms until stale}.
_CLAIM = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local value = redis.call('GET', KEYS[1])
local job = ARGV[2]
if value then
  local print_, held, token, stale_at = string.match(value, '^pending:([^:]*):([^:]*):([^:]*):(%d+)$')
  if not print_ then
    local legacy = string.match(value, '^pending:([^:]*):')
    local state = legacy and 'busy' or 'enqueued'
    if (legacy or string.match(value, '^([^:]*)')) ~= ARGV[1] then state = 'conflict' end
    return {state, value, legacy and math.max(0, redis.call('PTTL', KEYS[1])) or 0}
  end
  -- This very claim, set by a call whose reply was lost: the caller's retry carries the same token.
  if token == ARGV[3] then return {'mine', value, math.max(0, tonumber(stale_at) - now_ms)} end
  if tonumber(stale_at) > now_ms then
    return {print_ == ARGV[1] and 'busy' or 'conflict', value, tonumber(stale_at) - now_ms}
  end
  -- Its producer died or stalled, perhaps after pushing: the same payload keeps that job's id.
  if print_ == ARGV[1] then job = held end
end
local claim = 'pending:' .. ARGV[1] .. ':' .. job .. ':' .. ARGV[3] .. ':' .. (now_ms + tonumber(ARGV[4]))
redis.call('SET', KEYS[1], claim, 'EX', ARGV[5])
return {'mine', claim, tonumber(ARGV[4])}
"""
# Both act only on the caller's own pending claim. confirm also sets a claim that vanished meanwhile
# (a Redis restart without persistence): the job is on the broker, so the key must name it.
_CONFIRM = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] or not value then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
# Marks the caller's own pending claim stale now, keeping its job id and TTL, for the next claim to take over.
_ABANDON = """
local value = redis.call('GET', KEYS[1])
if value ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = string.match(value, '^(pending:[^:]*:[^:]*:[^:]*:)%d+$')
if not head then return 0 end
redis.call('SET', KEYS[1], head .. now_ms, 'KEEPTTL')
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def job_id_for_key(job_type: JobType, key: str) -> str:
    """The job id of a key confirmed before keys stored their job's id (read for such keys only)."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_type}:{key}"))


def fingerprint(job_type: JobType, payload: dict[str, Any]) -> str:
    canonical = json.dumps({"type": job_type, "payload": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_id_held(value: str, legacy_job_id: str) -> str:
    """The job id a key's value names (`legacy_job_id` for a value written before ids were stored)."""
    pending = value.startswith(_PENDING)
    parts = value[len(_PENDING) :].split(":") if pending else value.split(":")
    return parts[1] if len(parts) == (4 if pending else 2) else legacy_job_id


class ClaimState(Enum):
    MINE = "mine"  # this caller holds the pending claim: push the job, then confirm or release
    ENQUEUED = "enqueued"  # the key already names an enqueued job: nothing to push
    BUSY = "busy"  # another producer is pushing the same job: wait_settled, then claim again


@dataclass(frozen=True)
class ClaimTicket:
    """The job id and token one claim writes. Made once per claim, outside its retries, so a retry after a
    lost reply finds its own claim (`mine`) rather than a stranger's pending one to wait for."""

    job_id: str
    token: str

    @classmethod
    def new(cls) -> ClaimTicket:
        return cls(str(uuid.uuid4()), uuid.uuid4().hex)


@dataclass(frozen=True)
class Claim:
    job_id: str
    state: ClaimState
    redis_key: str
    fingerprint: str
    value: str  # what the key held (or, for MINE, was set to) when claimed
    extra_ttl_s: int = 0  # a deferred job: kept this much longer than the result TTL (until its run_by)
    settles_in_s: float = 0.0  # BUSY: when the other producer's claim becomes stale, at the latest

    @property
    def confirmed_value(self) -> str:
        return f"{self.fingerprint}:{self.job_id}"


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_s: int, pending_ttl_s: float | None = None) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        # Read here, not as a default argument, so a test that shortens PENDING_TTL_S sees it.
        self._pending_ms = int(1000 * (PENDING_TTL_S if pending_ttl_s is None else pending_ttl_s))
        self._claim = client.register_script(_CLAIM)
        self._confirm = client.register_script(_CONFIRM)
        self._release = client.register_script(_RELEASE)
        self._abandon = client.register_script(_ABANDON)

    def claim(self, job_type: JobType, key: str, payload: dict[str, Any], ticket: ClaimTicket | None = None) -> Claim:
        """Claim `key` for this payload. Raises IdempotencyConflict if it is held for a different payload.

        Pass the same `ticket` to each retry of one claim (a new one is made if none is given).
        """
        print_ = fingerprint(job_type, payload)
        redis_key = f"{IDEMPOTENCY_KEY_PREFIX}{job_type}:{key}"
        # The pending claim lives as long as a confirmed key, so a takeover still finds its job id.
        hold_s = max(self._ttl_s, 1 + self._pending_ms // 1000)
        ticket = ticket or ClaimTicket.new()
        state, raw, settles_in_ms = self._claim(
            keys=[redis_key], args=[print_, ticket.job_id, ticket.token, self._pending_ms, hold_s]
        )
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state == "conflict":
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different {job_type} payload; "
                "use a new key for a new request"
            )
        job_id = job_id_held(value, job_id_for_key(job_type, key))
        return Claim(job_id, ClaimState(state), redis_key, print_, value, settles_in_s=int(settles_in_ms) / 1000)

    def confirm(self, claims: list[Claim]) -> None:
        """Make each key name its job, now that the broker holds it (only this caller's own claims)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                self._confirm(
                    keys=[claim.redis_key],
                    args=[claim.value, claim.confirmed_value, self._ttl_s + claim.extra_ttl_s],
                    client=pipe,
                )
            pipe.execute()

    def release(self, claims: list[Claim]) -> None:
        """Undo claims whose jobs were not enqueued, so a retry can enqueue them."""
        with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                self._release(keys=[claim.redis_key], args=[claim.value], client=pipe)
            pipe.execute()

    def abandon(self, claims: list[Claim]) -> None:
        """Give up claims whose jobs may be on the broker (a push that raised): each stays, stale at once,
        so a retry with the same payload takes it over with the same job id and no wait."""
        with self._redis.pipeline(transaction=False) as pipe:
            for claim in claims:
                self._abandon(keys=[claim.redis_key], args=[claim.value], client=pipe)
            pipe.execute()

    def wait_settled(self, claim: Claim) -> None:
        """Wait until another producer's pending claim is confirmed, released, expired or stale."""
        deadline = time.monotonic() + claim.settles_in_s + PENDING_POLL_S
        while time.monotonic() < deadline:
            if self._read(claim.redis_key) != claim.value:
                return
            time.sleep(PENDING_POLL_S)

    def _read(self, redis_key: str) -> str | None:
        stored = self._redis.get(redis_key)
        return stored.decode() if isinstance(stored, bytes) else stored
