"""Unit-test fixtures: a fake Redis on a clock the test moves."""

from __future__ import annotations

import pytest

from tests.unit.fake_redis import Clock, FakeRedis


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock: Clock) -> FakeRedis:
    """An in-memory Redis whose keys expire on `clock`."""
    return FakeRedis(clock=clock)
