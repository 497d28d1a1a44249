"""Counting attempts per job id, so a job that keeps killing its worker is given up on.

Redis' transport has no delivery count: a message restored after its worker died looks
new. greenq counts *unfinished attempts* in Redis: when a job's batch starts, its worker
adds a token of that attempt to `greenq:attempts:<job id>` (a set, with a TTL); when the
batch returns or raises, it removes the token. What is left counts the batches that took
their worker down with them. A job that was only waiting in a buffer, or whose batch had
finished when another batch crashed the worker, is not charged.

Each change is one Lua script per job (`scripts/change_open_attempts.lua`: add or remove one
token, and set the TTL), so a count is never negative and never lives without a TTL, and sending
a call again after a blip (its reply lost: did Redis apply it?) charges nothing twice: adding or
removing the same token twice is the same as once.

Counting is bookkeeping, not the job's work: when Redis cannot be reached, `record` and
`finished` try a few times, then log and go on (the job is not failed for it). A close
that could not be sent is kept and sent with the next call, so a batch that returned is
not charged for a blip; only poison-job detection is weaker for a batch whose start was
never counted.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import redis

from greenq.shared import scripts
from greenq.shared.keys import ATTEMPTS_KEY_PREFIX

log = logging.getLogger(__name__)

SEND_TRIES = 3
RETRY_FIRST_S = 0.05  # then doubled: the batch thread waits at most ~0.15 s for a blip to pass
MAX_UNSENT_CLOSES = 10_000  # a worker cut off from Redis for long forgets the oldest (each costs one attempt)


def attempts_key(job_id: str) -> str:
    return f"{ATTEMPTS_KEY_PREFIX}{job_id}"


class AttemptCounter:
    """One per worker process: it remembers the token of each attempt it opened until that attempt is closed.

    >>> attempts = AttemptCounter(redis_client, ttl_s=86400)
    >>> attempts.record(["job-1"]); ...; attempts.finished(["job-1"])   # the batch returned: not charged
    """

    def __init__(self, client: Any, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._change = scripts.register(client, "change_open_attempts")
        self._count = scripts.register(client, "count_open_attempts")
        self._lock = threading.Lock()
        self._open: dict[str, str] = {}  # job id → the token of its attempt open here
        self._unsent: dict[tuple[str, str], None] = {}  # (job id, token) closes Redis has not confirmed, oldest first

    def attempts(self, job_id: str) -> int:
        """How many times this job's batch has started before without returning."""
        return int(self._count(keys=[attempts_key(job_id)], client=self._redis))

    def record(self, job_ids: Sequence[str]) -> None:
        """One more attempt for each job of a batch about to start."""
        token = uuid.uuid4().hex
        with self._lock:
            opening = [(job_id, self._open.setdefault(job_id, token)) for job_id in job_ids]
            closing = list(self._unsent)
        if self._send(closing, opening, "record"):
            self._confirmed(closing)

    def finished(self, job_ids: Sequence[str]) -> None:
        """The batch returned or raised: it did not take the worker down."""
        with self._lock:
            for job_id in job_ids:
                token = self._open.pop(job_id, None)
                if token is not None:  # none: its start was never recorded here
                    self._unsent[(job_id, token)] = None
            while len(self._unsent) > MAX_UNSENT_CLOSES:
                del self._unsent[next(iter(self._unsent))]
            closing = list(self._unsent)
        if self._send(closing, [], "close"):
            self._confirmed(closing)

    def reset(self, job_id: str) -> None:
        self._redis.delete(attempts_key(job_id))

    def _confirmed(self, closed: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            for pair in closed:
                self._unsent.pop(pair, None)

    def _send(self, closing: Sequence[tuple[str, str]], opening: Sequence[tuple[str, str]], what: str) -> bool:
        """Apply the closes and opens in Redis; True once it went through. Safe to repeat: tokens are idempotent."""
        if not closing and not opening:
            return True
        delay_s = RETRY_FIRST_S
        for attempt in range(1, SEND_TRIES + 1):
            pipe = self._redis.pipeline(transaction=False)
            for change, pairs in (("close", closing), ("open", opening)):
                for job_id, token in pairs:
                    self._change(keys=[attempts_key(job_id)], args=[change, token, self._ttl_s], client=pipe)
            try:
                pipe.execute()
                return True
            except (redis.RedisError, OSError) as exc:
                if attempt == SEND_TRIES:
                    log.warning("could not %s attempts (Redis unreachable: %s); the batch goes on", what, exc)
                    return False
                time.sleep(delay_s)
                delay_s *= 2
        return False
