"""Celery's Redis result backend, without a pub/sub subscription per submitted job.

Stock Celery subscribes to each task's result channel at `send_task`, for
`AsyncResult.get()`. greenq's client reads results by polling (`get_many`), so for
thousands of jobs those subscriptions are pure overhead, and when Redis goes away the
subscriber thread gives up for good ("the Celery application must be restarted").
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend, SentinelBackend


class PollingRedisBackend(RedisBackend):  # type: ignore[misc]  # celery ships no types: a base of type Any
    def on_task_call(self, producer: Any, task_id: str) -> None:
        pass


class PollingSentinelBackend(SentinelBackend):  # type: ignore[misc]  # (as above)
    def on_task_call(self, producer: Any, task_id: str) -> None:
        pass


POLLING_BACKENDS = {"redis": PollingRedisBackend, "rediss": PollingRedisBackend, "sentinel": PollingSentinelBackend}


def polling_backend_url(url: str) -> str:
    """The backend URL for producers: a polling class for Redis and Sentinel URLs, anything else unchanged."""
    backend = POLLING_BACKENDS.get(url.split("://", 1)[0])
    return f"{__name__}.{backend.__name__}+{url}" if backend else url
