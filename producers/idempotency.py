"""Idempotency keys: one logical request → one job id, claimed atomically in Redis."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import redis

from shared.errors import IdempotencyConflict
from shared.jobs import JobType
from shared.queues import IDEMPOTENCY_KEY_PREFIX

_NAMESPACE = uuid.UUID("6f0f3c52-5d0e-4f55-9a43-0a6a7c1f8e21")


def job_id_for_key(job_type: JobType, key: str) -> str:
    """A deterministic job id, so even a lost claim cannot create a second, different job."""
    return str(uuid.uuid5(_NAMESPACE, f"{job_type.value}:{key}"))


def fingerprint(job_type: JobType, payload: dict[str, Any]) -> str:
    canonical = json.dumps({"type": job_type.value, "payload": payload}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def claim(self, job_type: JobType, key: str, payload: dict[str, Any]) -> tuple[str, bool]:
        """(job id, True if this caller must enqueue it). Raises IdempotencyConflict on a different payload."""
        job_id = job_id_for_key(job_type, key)
        print_ = fingerprint(job_type, payload)
        redis_key = f"{IDEMPOTENCY_KEY_PREFIX}{job_type.value}:{key}"
        if self._redis.set(redis_key, print_, nx=True, ex=self._ttl_s):
            return job_id, True
        stored = self._redis.get(redis_key)
        if stored is not None and stored.decode() != print_:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for a different {job_type.value} payload; "
                "use a new key for a new request"
            )
        return job_id, False

    def release(self, job_type: JobType, key: str) -> None:
        """Undo a claim whose job could not be enqueued, so a retry can enqueue it."""
        self._redis.delete(f"{IDEMPOTENCY_KEY_PREFIX}{job_type.value}:{key}")
