"""Idempotency keys: one logical request → one job id, named by its key only once the job is enqueued.

A key is *reserved* in two phases, each step one script in `shared/scripts/`. `reserve`
(`reserve_idempotency_key.lua`) sets it to a pending reservation with a new job id; the producer
pushes the job; `confirm` (`confirm_idempotency_key.lua`) then sets the payload's fingerprint and
that job id with the full TTL, and `release` (`release_idempotency_key.lua`) deletes the reservation
of a job that was certainly not pushed; `abandon` (`abandon_idempotency_key.lua`) makes stale at once
the reservation of a job whose push failed but may have reached the broker (a lost reply), so a retry
with the same payload takes it over with the same job id instead of waiting or running the job twice.
A producer that finds another's pending reservation waits for it to settle; one that finds a pending
reservation older than PENDING_TTL_S (its producer died or stalled, perhaps after pushing) takes it
over, keeping its job id for the same payload, so a job pushed twice is still one job.

The job id is new for each fresh reservation, not derived from the key: a key expires one TTL after
its submit, the job's result one TTL after it ran, and a key reserved again in between (for any
payload) must not name the old job, its result, attempts, cancel state or token stream.

Why not one Lua script that reserves the key and LPUSHes the job together: it would work only with a
Redis broker on the same server as this store, and it would have to write kombu's message format by
hand. Two phases work with any broker (RabbitMQ included) and keep kombu in charge of the message.

>>> store = IdempotencyStore(redis_client, ttl_s=86400)
>>> reserved = store.reserve("reply", "ticket-42", payload)      # ReservationState.MINE: push the job, then
>>> store.confirm([reserved])           # (store.release([reserved]) if not pushed, store.abandon if unsure)
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

from greenq.shared import scripts
from greenq.shared.errors import IdempotencyConflict
from greenq.shared.job_types import JobType
from greenq.shared.keys import IDEMPOTENCY_KEY_PREFIX

_NAMESPACE = uuid.UUID("6f0f3c52-5d0e-4f55-9a43-0a6a7c1f8e21")
# Longer than a push takes with retries (about 4 s); a crashed producer blocks its keys for this long.
PENDING_TTL_S = 30
PENDING_POLL_S = 0.05
# A pending reservation holds "pending:<fingerprint>:<job id>:<token>:<stale at, Redis ms>"; a confirmed key
# "<fingerprint>:<job id>". Keys written before job ids were stored hold "<fingerprint>" (confirmed) or
# "pending:<fingerprint>:<token>", and name the job `job_id_for_key` gives.
_PENDING = "pending:"


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


class ReservationState(Enum):
    MINE = "mine"  # this caller holds the pending reservation: push the job, then confirm or release
    ENQUEUED = "enqueued"  # the key already names an enqueued job: nothing to push
    BUSY = "busy"  # another producer is pushing the same job: wait_settled, then reserve again


@dataclass(frozen=True)
class ReservationTicket:
    """The job id and token one reservation writes. Made once per reservation, outside its retries, so a
    retry after a lost reply finds its own reservation (`mine`) rather than a stranger's pending one."""

    job_id: str
    token: str

    @classmethod
    def new(cls) -> ReservationTicket:
        return cls(str(uuid.uuid4()), uuid.uuid4().hex)


@dataclass(frozen=True)
class Reservation:
    job_id: str
    state: ReservationState
    redis_key: str
    fingerprint: str
    value: str  # what the key held (or, for MINE, was set to) when reserved
    extra_ttl_s: int = 0  # a deferred job: kept this much longer than the result TTL (until its run_by)
    settles_in_s: float = 0.0  # BUSY: when the other producer's reservation becomes stale, at the latest

    @property
    def confirmed_value(self) -> str:
        return f"{self.fingerprint}:{self.job_id}"


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_s: int, pending_ttl_s: float | None = None) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        # Read here, not as a default argument, so a test that shortens PENDING_TTL_S sees it.
        self._pending_ms = int(1000 * (PENDING_TTL_S if pending_ttl_s is None else pending_ttl_s))
        self._reserve = scripts.register(client, "reserve_idempotency_key")
        self._confirm = scripts.register(client, "confirm_idempotency_key")
        self._release = scripts.register(client, "release_idempotency_key")
        self._abandon = scripts.register(client, "abandon_idempotency_key")

    def reserve(
        self, job_type: JobType, key: str, payload: dict[str, Any], ticket: ReservationTicket | None = None
    ) -> Reservation:
        """Reserve `key` for this payload. Raises IdempotencyConflict if it is held for a different payload.

        Pass the same `ticket` to each retry of one reservation (a new one is made if none is given).
        """
        print_ = fingerprint(job_type, payload)
        redis_key = f"{IDEMPOTENCY_KEY_PREFIX}{job_type}:{key}"
        # The pending reservation lives as long as a confirmed key, so a takeover still finds its job id.
        hold_s = max(self._ttl_s, 1 + self._pending_ms // 1000)
        ticket = ticket or ReservationTicket.new()
        state, raw, settles_in_ms = self._reserve(
            keys=[redis_key], args=[print_, ticket.job_id, ticket.token, self._pending_ms, hold_s], client=self._redis
        )
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        state = state.decode() if isinstance(state, bytes) else str(state)
        if state == "conflict":
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different {job_type} payload; "
                "use a new key for a new request"
            )
        job_id = job_id_held(value, job_id_for_key(job_type, key))
        return Reservation(
            job_id, ReservationState(state), redis_key, print_, value, settles_in_s=int(settles_in_ms) / 1000
        )

    def confirm(self, reservations: list[Reservation]) -> None:
        """Make each key name its job, now that the broker holds it (only this caller's own reservations)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for reservation in reservations:
                self._confirm(
                    keys=[reservation.redis_key],
                    args=[reservation.value, reservation.confirmed_value, self._ttl_s + reservation.extra_ttl_s],
                    client=pipe,
                )
            pipe.execute()

    def release(self, reservations: list[Reservation]) -> None:
        """Undo reservations whose jobs were not enqueued, so a retry can enqueue them."""
        with self._redis.pipeline(transaction=False) as pipe:
            for reservation in reservations:
                self._release(keys=[reservation.redis_key], args=[reservation.value], client=pipe)
            pipe.execute()

    def abandon(self, reservations: list[Reservation]) -> None:
        """Give up reservations whose jobs may be on the broker (a push that raised): each stays, stale at
        once, so a retry with the same payload takes it over with the same job id and no wait."""
        with self._redis.pipeline(transaction=False) as pipe:
            for reservation in reservations:
                self._abandon(keys=[reservation.redis_key], args=[reservation.value], client=pipe)
            pipe.execute()

    def wait_settled(self, reservation: Reservation) -> None:
        """Wait until another producer's pending reservation is confirmed, released, expired or stale."""
        deadline = time.monotonic() + reservation.settles_in_s + PENDING_POLL_S
        while time.monotonic() < deadline:
            if self._read(reservation.redis_key) != reservation.value:
                return
            time.sleep(PENDING_POLL_S)

    def _read(self, redis_key: str) -> str | None:
        stored = self._redis.get(redis_key)
        return stored.decode() if isinstance(stored, bytes) else stored
