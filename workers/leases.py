"""At most one live computation per job: a lease in Redis that the computing worker keeps alive.

A job's message can reach a second worker while its first holder is still computing it
(a connection loss gives held messages back; a stock consumer's visibility timeout
redelivers them). Before computing, a task takes `greenq:lease:<job id>` with a token of
its own; a worker that finds another live holder waits for that holder's result instead of
computing. One thread per worker renews every lease it holds, so a lease outlives a slow
batch but lapses within `ttl_s` of its worker dying.

>>> leases = JobLeases(redis_client, ttl_s=30).start()
>>> token = leases.acquire("job-1")      # None: someone else is computing it
>>> ...; leases.release("job-1", token)
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from shared.keys import LEASE_KEY_PREFIX

log = logging.getLogger(__name__)

# KEYS: lease. ARGV: token, ttl in ms. Renews the lease only if the token still holds it.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: lease. ARGV: token.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lease_key(job_id: str) -> str:
    return f"{LEASE_KEY_PREFIX}{job_id}"


class JobLeases:
    def __init__(self, client: Any, ttl_s: float, owner: str = "") -> None:
        self._redis = client
        self._ttl_ms = int(ttl_s * 1000)
        self._owner = owner
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name="greenq-leases", daemon=True)

    def start(self) -> JobLeases:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def acquire(self, job_id: str) -> str | None:
        """A token if this caller may compute the job now; None while another live holder has it."""
        token = f"{self._owner}:{uuid.uuid4().hex}"
        if not self._redis.set(lease_key(job_id), token, nx=True, px=self._ttl_ms):
            return None
        with self._lock:
            self._held[job_id] = token
        return token

    def release(self, job_id: str, token: str) -> None:
        with self._lock:
            if self._held.get(job_id) == token:
                del self._held[job_id]
        self._redis.eval(RELEASE_SCRIPT, 1, lease_key(job_id), token)

    def holder(self, job_id: str) -> str | None:
        value = self._redis.get(lease_key(job_id))
        return None if value is None else value.decode()

    def _renew_loop(self) -> None:
        interval_s = self._ttl_ms / 3000
        while not self._stop.wait(interval_s):
            with self._lock:
                held = list(self._held.items())
            try:
                pipe = self._redis.pipeline(transaction=False)
                for job_id, token in held:
                    pipe.eval(RENEW_SCRIPT, 1, lease_key(job_id), token, self._ttl_ms)
                lost = [job_id for (job_id, _), ok in zip(held, pipe.execute(), strict=True) if not ok]
            except Exception as exc:  # Redis unreachable: try again next round
                log.warning("could not renew %d job leases: %s", len(held), exc)
                continue
            if lost:
                log.warning("lost the lease on %d jobs (Redis unreachable for longer than the lease?)", len(lost))
