from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from greenq.shared.local_redis import LocalRedis, start_redis
from tests.integration.harness import Stack, free_port, stack

HERE = Path(__file__).parent
# Each Stack takes a database of its own and never gives it back: room for every stack of a whole run
# (about 70 today), with a wide margin, since an empty database costs Redis almost nothing.
SESSION_DATABASES = 1024


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here starts redis-server, worker processes or servers: all are `slow`, so
    `-m "not chaos and not slow"` is the fast unit suite."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    """A private redis-server for the whole session; each Stack takes its own database in it."""
    server = start_redis(free_port(), databases=SESSION_DATABASES)
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def live(redis_port: int, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One warm worker serving every queue, shared by a module's tests."""
    with stack(redis_port, tiny_model_dir) as s:
        s.metrics_port = free_port()
        s.start_worker(tmp_path_factory.mktemp("logs") / "worker.log", metrics_port=s.metrics_port)
        yield s


FAST_REDELIVERY = {
    "GREENQ_VISIBILITY_TIMEOUT_S": "8",
    "GREENQ_MAX_BATCH_COMPUTE_S": "3",
    "GREENQ_CONSUMER_LEASE_S": "3",
}


@pytest.fixture
def fast_redelivery(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    """A stack whose held jobs come back about 3 s after their worker died."""
    with stack(redis_port, tiny_model_dir, FAST_REDELIVERY) as s:
        yield s


@pytest.fixture
def fresh(redis_port: int, tiny_model_dir: Path) -> Iterator[Stack]:
    """A stack with no worker yet: the test starts what it needs."""
    with stack(redis_port, tiny_model_dir) as s:
        yield s


@pytest.fixture
def own_redis() -> Iterator[LocalRedis]:
    """A redis-server of the test's own, persistent (AOF always), for tests that halt or restart it."""
    server = start_redis(free_port(), persistent=True)
    try:
        yield server
    finally:
        server.stop()
