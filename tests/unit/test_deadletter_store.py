"""The dead-letter store's bounds on a real redis-server: a cap (oldest dropped, counted) and a retention."""

from __future__ import annotations

import json
import time

import redis

from greenq.shared.deadletter import DeadLetter, DeadLetterStore
from greenq.shared.keys import DEAD_LETTER_INDEX_KEY, DEAD_LETTER_KEY
from greenq.shared.settings import DeadLetterSettings
from tests.unit.redis_server import real_redis_fixture

real_redis = real_redis_fixture()


def test_the_store_keeps_the_newest_records_up_to_its_cap_and_counts_the_rest(real_redis: redis.Redis) -> None:
    """`greenq:dead` had no cap: a producer sending garbage filled Redis, which with `noeviction`
    stops the queues themselves."""
    store = DeadLetterStore(real_redis, DeadLetterSettings(max_records=3))
    now = time.time()
    ids = [store.add(DeadLetter(reason=f"bad {i}", at=now + i)) for i in range(5)]
    assert [r.id for r in store.list()] == ids[2:]
    assert store.dropped() == 2
    assert real_redis.hlen(DEAD_LETTER_KEY) == 3 and real_redis.zcard(DEAD_LETTER_INDEX_KEY) == 3


def test_records_older_than_the_retention_are_dropped_and_the_store_expires(real_redis: redis.Redis) -> None:
    store = DeadLetterStore(real_redis, DeadLetterSettings(retention_s=3600))
    old = store.add(DeadLetter(reason="last month", at=time.time() - 30 * 86_400))
    new = store.add(DeadLetter(reason="just now"))
    assert [r.id for r in store.list()] == [new] and old not in {r.id for r in store.list()}
    assert store.dropped() == 1
    assert 0 < real_redis.ttl(DEAD_LETTER_KEY) <= 3600  # nothing written for the retention: all of it goes


def test_records_written_before_the_index_count_against_the_cap(real_redis: redis.Redis) -> None:
    """A store from before the bounds has no index: listing indexes its records, the next write trims."""
    legacy = [DeadLetter(reason=f"legacy {i}", at=time.time() - 100 + i) for i in range(4)]
    real_redis.hset(DEAD_LETTER_KEY, mapping={r.id: r.to_json() for r in legacy})
    store = DeadLetterStore(real_redis, DeadLetterSettings(max_records=2))
    assert len(store.list()) == 4
    newest = store.add(DeadLetter(reason="now"))
    assert [r.id for r in store.list()] == [legacy[3].id, newest]
    assert store.dropped() == 3


def test_remove_and_purge_keep_the_index_in_step(real_redis: redis.Redis) -> None:
    store = DeadLetterStore(real_redis)
    first, second = store.add(DeadLetter(reason="a")), store.add(DeadLetter(reason="b"))
    assert store.remove(first) and real_redis.zscore(DEAD_LETTER_INDEX_KEY, first) is None
    assert json.loads(real_redis.hget(DEAD_LETTER_KEY, second) or "{}")["reason"] == "b"
    assert store.purge() == 1 and real_redis.zcard(DEAD_LETTER_INDEX_KEY) == 0
