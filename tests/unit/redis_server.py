"""A real redis-server for the unit tests whose point is what Redis itself does (Lua scripts, TTLs, atomicity).

One server per test process, started on first use and stopped at exit; each test gets a client on a
flushed database. A module uses it as a fixture with `real_redis = real_redis_fixture()`.
"""

from __future__ import annotations

import atexit
import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from greenq.shared.local_redis import LocalRedis, free_port, start_redis


@functools.cache
def server() -> LocalRedis:
    started = start_redis(free_port(), databases=1)
    atexit.register(started.stop)
    return started


def real_redis_fixture() -> Callable[..., Any]:
    """A pytest fixture: a redis-py client (bytes, as greenq's own) on a freshly flushed real server."""

    @pytest.fixture
    def real_redis() -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(server().url)
        client.flushdb()
        try:
            yield client
        finally:
            client.close()

    return real_redis


class FlakyClient:
    """A real client whose next `fail_next(n)` commands raise redis.ConnectionError, as FakeRedis' do
    (a pipeline's execute counts once): Redis going away, for the code that must retry."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._failures = 0

    def fail_next(self, count: int) -> None:
        self._failures = count

    def _fail(self) -> None:
        if self._failures:
            self._failures -= 1
            raise redis.ConnectionError("flaky Redis: connection refused")

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._client.pipeline(*args, **kwargs)
        execute = pipe.execute

        def flaky_execute(*a: Any, **kw: Any) -> Any:
            self._fail()
            return execute(*a, **kw)

        pipe.execute = flaky_execute  # type: ignore[method-assign]
        return pipe

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def flaky(*args: Any, **kwargs: Any) -> Any:
            self._fail()
            return attribute(*args, **kwargs)

        return flaky
