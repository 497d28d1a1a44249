"""The producer's calls to the result backend, retried with the same back-off as a push to the broker.

A submit with idempotency keys or deferral touches the result backend before and after the push; a
blip there must be ridden out as one of the broker is, and when it lasts, the error names the backend.

>>> claim = call_backend(lambda: store.claim("reply", "ticket-42", payload), settings.backend_url)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis

from greenq.shared.celery_app import PUBLISH_RETRY_POLICY
from greenq.shared.errors import ResultBackendUnavailable
from greenq.shared.redact import redact_text, redact_url

T = TypeVar("T")

# Errors that a moment later may be gone: a refused or dropped connection, a server still loading its
# data, a Sentinel master just demoted (READONLY).
TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, OSError)


def backoff_delays_s(policy: dict[str, float] = PUBLISH_RETRY_POLICY) -> list[float]:
    """The waits between tries, as kombu's retry_policy spaces a publish's (0.2, 0.7, 1.2, 1.7 s)."""
    start, step, cap = policy["interval_start"], policy["interval_step"], policy["interval_max"]
    return [min(cap, start + i * step) for i in range(int(policy["max_retries"]))]


def call_backend(call: Callable[[], T], backend_url: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, tried again after each of `backoff_delays_s` while the error is transient.

    Raises ResultBackendUnavailable naming the backend (its password masked) once the tries are spent,
    or at once for an error that waiting cannot cure.
    """
    delays = backoff_delays_s()
    server = redact_url(backend_url)
    for attempt in range(len(delays) + 1):
        try:
            return call()
        except TRANSIENT as exc:
            if attempt == len(delays):
                reason = f"could not reach the result backend at {server} after retries: {redact_text(str(exc))}"
                raise ResultBackendUnavailable(reason) from None
            sleep(delays[attempt])
        except redis.RedisError as exc:
            reason = f"the result backend at {server} refused: {redact_text(str(exc))}"
            raise ResultBackendUnavailable(reason) from None
    raise AssertionError("unreachable")  # the last try returns or raises
