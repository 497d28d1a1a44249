"""Completion callbacks: signed with HMAC-SHA256 so the storefront can trust them, and kept in Redis
until delivered so a gateway that dies mid-send does not lose one (at-least-once).

Each POST carries `X-Greenq-Timestamp` (Unix seconds) and
`X-Greenq-Signature: sha256=<hex of HMAC(secret, "<timestamp>.<body>")>`. Verify with
`verify_signature` (or the same three lines in any language) and reject old timestamps.

In Redis, each callback is a hash (url, tenant, attempts, and the result once it is seen) in one of two
sorted sets, indexed by readiness so that a gateway reads only callbacks it can act on:

* `due`: to look at now or at its score: just registered, its job has a result, a retry's time, or an
  attempt's deadline. A gateway starts an attempt on a due callback by moving its score past the attempt's
  deadline (`scripts/start_callback_attempt.lua`), so no other gateway takes it meanwhile; if it dies, the
  deadline passes and another gateway sends it again.
* `waiting`: its job has no result yet (`scripts/park_callback.lua` moves it here). A result's notification
  (`wake`, from finished.py's feed: `scripts/wake_callbacks.lua`) moves it to `due`; `sweep` looks at each
  one again every `sweep_s` (`scripts/sweep_waiting_callbacks.lua`), for notifications missed while no
  gateway listened.

A callback's record lives as long as its job can finish (`live_s` at register: a deferred job's run_by
plus the result TTL; and each sweep keeps it, with its job's owner record, while the job has no result and
that owner record lives, so a backlog longer than the result TTL does not end it), and from its first attempt
it holds the result itself, so the result's own TTL cannot end it between attempts. A record that expires
unsent is logged and counted (`expired`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from greenq.shared import scripts
from greenq.shared.keys import (
    CALLBACK_DUE_KEY,
    CALLBACK_JOB_KEY_PREFIX,
    CALLBACK_WAITING_KEY,
    LEGACY_CALLBACK_KEY_PREFIX,
    LEGACY_PENDING_KEY,
    OWNER_KEY_PREFIX,
)
from greenq.shared.results import is_final, result_from_meta

log = logging.getLogger(__name__)
RECHECK_S = 0.5  # a due callback whose job's stored state is not final (not greenq's): looked at again after this
BUSY_S = 0.5  # how long a due callback waits when its tenant already has its attempts in flight
FIRST_RETRY_S = 2.0
MAX_RETRY_S = 60.0
READ_BATCH = 500  # due or waiting callbacks read per call
SWEEP_S = 30.0
KEEP_MARGIN_S = 60.0


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
class CallbackAttempt:
    """A callback attempt this gateway has started: send it before the attempt's deadline, then report with
    `delivered`, `failed` or `drop`."""

    job_id: str
    url: str
    tenant: str
    attempt: int  # 1 for the first
    result: dict[str, Any]


class CallbackQueue:
    """Durable callbacks in Redis, shared by every gateway.

    `outcomes` (a Counter labelled by outcome, or None) counts callbacks dropped here: `expired`.
    """

    def __init__(self, client: Any, backend: Any, ttl_s: int, sweep_s: float = SWEEP_S, outcomes: Any = None) -> None:
        self._redis = client
        self._backend = backend
        self._ttl_s = ttl_s
        self._sweep_s = sweep_s
        self._outcomes = outcomes
        self._start_attempt = scripts.register(client, "start_callback_attempt")
        self._postpone = scripts.register(client, "postpone_due_callback")
        self._park = scripts.register(client, "park_callback")
        self._wake = scripts.register(client, "wake_callbacks")
        self._sweep = scripts.register(client, "sweep_waiting_callbacks")

    def register(self, job_id: str, url: str, tenant: str, live_s: int | None = None) -> None:
        """Keep a callback for `live_s` (default: the result TTL): as long as its job can finish, plus that TTL."""
        key = f"{CALLBACK_JOB_KEY_PREFIX}{job_id}"
        pipe = self._redis.pipeline()
        pipe.hset(key, mapping={"url": url, "tenant": tenant, "attempts": 0})
        pipe.expire(key, max(self._ttl_s, live_s or 0))
        pipe.zadd(CALLBACK_DUE_KEY, {job_id: time.time()})  # its job may have finished already: look once
        pipe.execute()

    def wake(self, job_ids: Sequence[str], now: float) -> int:
        """Jobs whose results were just stored: their waiting callbacks become due. Returns how many."""
        woken = 0
        for start in range(0, len(job_ids), READ_BATCH):
            chunk = job_ids[start : start + READ_BATCH]
            keys = [CALLBACK_WAITING_KEY, CALLBACK_DUE_KEY]
            woken += int(self._wake(keys=keys, args=[now, *chunk], client=self._redis))
        return woken

    def sweep(self, now: float) -> list[str]:
        """Look again at waiting callbacks whose sweep time has come (a notification may have been missed), and
        keep those of jobs still pending (no result, owner record alive) and their owner records a TTL longer.

        Returns the job ids whose callbacks were dropped because their record expired first.
        """
        job_ids = [j.decode() for j in self._redis.zrangebyscore(CALLBACK_WAITING_KEY, "-inf", now, 0, READ_BATCH)]
        if not job_ids:
            return []
        keys = [CALLBACK_WAITING_KEY, CALLBACK_DUE_KEY]
        for job_id in job_ids:
            keys += [
                f"{CALLBACK_JOB_KEY_PREFIX}{job_id}",
                self._backend.get_key_for_task(job_id),
                f"{OWNER_KEY_PREFIX}{job_id}",
            ]
        keep_s = int(max(self._ttl_s, 2 * self._sweep_s + KEEP_MARGIN_S))  # past the next sweep, with room
        args = [now, now + self._sweep_s, keep_s, *job_ids]
        gone = [j.decode() for j in self._sweep(keys=keys, args=args, client=self._redis)]
        self._expired(gone)
        return gone

    def start_attempts(
        self, now: float, attempt_s: float, free: Mapping[str, int], default_free: int, most: int
    ) -> list[CallbackAttempt]:
        """Start attempts on up to `most` due callbacks whose job has finished, at most free[tenant] (or
        default_free) per tenant; each attempt's deadline is `attempt_s` from `now`."""
        self.sweep(now)
        if most <= 0:
            return []
        job_ids = [j.decode() for j in self._redis.zrangebyscore(CALLBACK_DUE_KEY, "-inf", now, 0, READ_BATCH)]
        if not job_ids:
            return []
        pipe = self._redis.pipeline()
        for job_id in job_ids:
            pipe.hgetall(f"{CALLBACK_JOB_KEY_PREFIX}{job_id}")
        records = pipe.execute()
        unread = [j for j, record in zip(job_ids, records, strict=True) if record and b"result" not in record]
        raws = self._backend.mget([self._backend.get_key_for_task(j) for j in unread]) if unread else []
        metas = {
            j: (self._backend.decode_result(raw) if raw is not None else None)
            for j, raw in zip(unread, raws, strict=True)
        }
        room = dict(free)
        pipe = self._redis.pipeline(transaction=False)
        wanted: list[tuple[str, dict[bytes, bytes], dict[str, Any]]] = []
        gone: list[str] = []
        for job_id, record in zip(job_ids, records, strict=True):
            keys = [CALLBACK_DUE_KEY, f"{CALLBACK_JOB_KEY_PREFIX}{job_id}"]
            if not record:
                pipe.zrem(CALLBACK_DUE_KEY, job_id)
                gone.append(job_id)
                continue
            result = _stored_result(job_id, record, metas.get(job_id))
            tenant = record[b"tenant"].decode()
            if result is None:
                park_keys = [CALLBACK_DUE_KEY, CALLBACK_WAITING_KEY, keys[1], self._backend.get_key_for_task(job_id)]
                self._park(keys=park_keys, args=[job_id, now, now + RECHECK_S, now + self._sweep_s], client=pipe)
            elif len(wanted) >= most or room.get(tenant, default_free) <= 0:
                self._postpone(keys=keys, args=[job_id, now, now + BUSY_S], client=pipe)
            else:
                room[tenant] = room.get(tenant, default_free) - 1
                wanted.append((job_id, record, result))
        keep_s = int(max(self._ttl_s, attempt_s + MAX_RETRY_S + KEEP_MARGIN_S))
        for job_id, _, result in wanted:
            keys = [CALLBACK_DUE_KEY, f"{CALLBACK_JOB_KEY_PREFIX}{job_id}"]
            body = json.dumps(result, ensure_ascii=False)
            self._start_attempt(keys=keys, args=[job_id, now, now + attempt_s, body, keep_s], client=pipe)
        answers = pipe.execute()
        self._expired(gone)
        started: list[CallbackAttempt] = []
        for (job_id, record, result), attempt in zip(wanted, answers[len(answers) - len(wanted) :], strict=True):
            if int(attempt) <= 0:
                continue  # another gateway has it
            started.append(
                CallbackAttempt(job_id, record[b"url"].decode(), record[b"tenant"].decode(), int(attempt), result)
            )
        return started

    def _expired(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            log.error(
                "dropping the callback for %s: its record expired before its job finished (it is kept for the "
                "job's run_by, if deferred, plus GREENQ_RESULT_TTL_S, and longer while its job is pending and "
                "a gateway sweeps; here no gateway did, or the job's owner record was gone)",
                job_id,
            )
        if job_ids and self._outcomes is not None:
            self._outcomes.labels("expired").inc(len(job_ids))

    def delivered(self, attempt: CallbackAttempt) -> None:
        self.drop(attempt)

    def failed(self, attempt: CallbackAttempt, retry_at: float) -> None:
        self._redis.zadd(CALLBACK_DUE_KEY, {attempt.job_id: retry_at}, xx=True)

    def drop(self, attempt: CallbackAttempt) -> None:
        pipe = self._redis.pipeline()
        pipe.zrem(CALLBACK_DUE_KEY, attempt.job_id)
        pipe.delete(f"{CALLBACK_JOB_KEY_PREFIX}{attempt.job_id}")
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


def _stored_result(job_id: str, record: Mapping[bytes, bytes], meta: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The result to send: the one the record kept at its first attempt, else the job's final stored one."""
    if b"result" in record:
        kept: dict[str, Any] = json.loads(record[b"result"])
        return kept
    if meta is None or not is_final(meta):
        return None
    return result_from_meta(job_id, dict(meta)).to_json()
