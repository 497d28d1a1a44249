"""Celery's Redis result backend, without a pub/sub subscription per submitted job.

Stock Celery subscribes to each task's result channel at `send_task`, for
`AsyncResult.get()`. greenq's client reads results by polling (`get_many`), so for
thousands of jobs those subscriptions are pure overhead, and when Redis goes away the
subscriber thread gives up for good ("the Celery application must be restarted").
"""

from __future__ import annotations

from typing import Any

from celery.backends.redis import RedisBackend


class PollingRedisBackend(RedisBackend):  # type: ignore[misc]
    def on_task_call(self, producer: Any, task_id: str) -> None:
        pass


def polling_backend_url(url: str) -> str:
    """The backend URL for producers: this class for Redis URLs, anything else unchanged."""
    if url.split("://", 1)[0] in {"redis", "rediss"}:
        return f"{__name__}.PollingRedisBackend+{url}"
    return url
