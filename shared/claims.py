"""Who gets a job first: a worker starting it, or a storefront cancelling it.

Both sides `SET NX` the same key (`greenq:claim:<job id>`); the first wins. A worker that
finds "cancelled" does not compute the job; a cancel that finds "received" is refused
("already started").
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


def cancel(client: Any, job_id: str, ttl_s: int) -> bool:
    """True if the job was cancelled before any worker started it."""
    if client.set(claim_key(job_id), CANCELLED, nx=True, ex=ttl_s):
        return True
    value = client.get(claim_key(job_id))
    return value is not None and value.decode() == CANCELLED


def state(client: Any, job_id: str) -> str | None:
    value = client.get(claim_key(job_id))
    return None if value is None else value.decode()
