"""Counting attempts per job id, so a job that keeps killing its worker is given up on.

Redis' transport has no delivery count: a message restored after its worker died looks
new. greenq counts *unfinished attempts* in Redis (`greenq:attempts:<job id>`): +1 when
the job's batch starts, −1 when that batch returns or raises. What is left counts the
batches that took their worker down with them. A job that was only waiting in a buffer,
or whose batch had finished when another batch crashed the worker, is not charged.

Counting is bookkeeping, not the job's work: when Redis cannot be reached, `record` and
`finished` log and go on (the job is not failed for it); only poison-job detection is
weaker for that batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from shared.keys import ATTEMPTS_KEY_PREFIX

log = logging.getLogger(__name__)


class AttemptCounter:
    def __init__(self, client: Any, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def attempts(self, job_id: str) -> int:
        """How many times this job's batch has started before."""
        return int(self._redis.get(f"{ATTEMPTS_KEY_PREFIX}{job_id}") or 0)

    def record(self, job_ids: Sequence[str]) -> None:
        """One more attempt for each job of a batch about to start."""
        pipe = self._redis.pipeline()
        for job_id in job_ids:
            key = f"{ATTEMPTS_KEY_PREFIX}{job_id}"
            pipe.incr(key)
            pipe.expire(key, self._ttl_s)
        self._execute(pipe, "record")

    def finished(self, job_ids: Sequence[str]) -> None:
        """The batch returned or raised: it did not take the worker down."""
        pipe = self._redis.pipeline()
        for job_id in job_ids:
            pipe.decr(f"{ATTEMPTS_KEY_PREFIX}{job_id}")
        self._execute(pipe, "close")

    def _execute(self, pipe: Any, what: str) -> None:
        try:
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("could not %s attempts (Redis unreachable: %s); the batch goes on", what, exc)

    def reset(self, job_id: str) -> None:
        self._redis.delete(f"{ATTEMPTS_KEY_PREFIX}{job_id}")
