"""The reliable transport's in-flight records on a real redis-server: what each script leaves behind.

Each test names the interleaving it pins; the scripts are atomic, so an interleaving is a choice of
which side runs first, made here by calling things in that order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from greenq.shared import redis_transport, scripts
from greenq.shared.keys import CONSUMERS_KEY, UNACKED_OWNER_KEY
from greenq.shared.redis_transport import inflight_key
from tests.unit.redis_server import real_redis_fixture, server

real_redis = real_redis_fixture()
QUEUE = Queue("greenq.records", Exchange("greenq.records"), "greenq.records")
LEASE_S = 3.0


@pytest.fixture
def connections(real_redis: redis.Redis) -> Iterator[list[Connection]]:
    """Connections to the real server through the reliable transport; each channel is one consumer."""
    redis_transport.install()
    made: list[Connection] = []
    yield made
    for connection in made:
        connection.release()


def _channel(connections: list[Connection]) -> Any:
    connection = Connection(server().url, transport_options={"consumer_lease_s": LEASE_S})
    connections.append(connection)
    return connection.channel()


def _publish(connections: list[Connection], body: dict[str, Any]) -> None:
    channel = _channel(connections)
    channel.connection.client.Producer(channel).publish(
        body, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE]
    )


def _stock_sweep_requeue(real_redis: redis.Redis, tag: str) -> None:
    """What kombu's stock `restore_visible` does to an entry older than the visibility timeout."""
    raw = real_redis.hget("unacked", tag)
    assert raw is not None
    message, _, _ = kombu_redis.loads(raw)
    real_redis.zrem("unacked_index", tag)
    real_redis.hdel("unacked", tag)
    real_redis.lpush(QUEUE.name, kombu_redis.dumps(message))


def _age(real_redis: redis.Redis, consumer_id: str, seconds: float) -> None:
    now_s, micros = real_redis.time()
    real_redis.zadd(CONSUMERS_KEY, {consumer_id: now_s + micros / 1e6 - seconds})


def test_an_ack_after_a_stock_sweep_gave_the_message_to_another_consumer_leaves_no_stale_record(
    real_redis: redis.Redis, connections: list[Connection]
) -> None:
    """Finding 6: A holds a message, a stock sweep requeues it, B fetches the copy, A finishes and acks.
    A's ack must not delete B's record, and must not leave the tag in A's in-flight set: left there,
    every sweep after A stops says it missed heartbeats and gives back 1 job, forever."""
    _publish(connections, {"n": 1})
    a, b = _channel(connections), _channel(connections)
    held = QUEUE(a).get(no_ack=False)
    tag = held.delivery_tag
    _stock_sweep_requeue(real_redis, tag)
    copy = QUEUE(b).get(no_ack=False)
    assert copy is not None and copy.delivery_tag == tag

    held.ack()

    assert real_redis.smembers(inflight_key(a.consumer_id)) == set()
    assert real_redis.hget(UNACKED_OWNER_KEY, tag) == b.consumer_id.encode()  # B's copy is still recorded
    assert real_redis.smembers(inflight_key(b.consumer_id)) == {tag.encode()}
    copy.ack()
    assert real_redis.hlen("unacked") == 0 and real_redis.hlen(UNACKED_OWNER_KEY) == 0


def test_the_sweep_forgets_a_dead_consumer_whose_only_record_is_stale(
    real_redis: redis.Redis, connections: list[Connection]
) -> None:
    """A dead consumer's in-flight set names a tag another consumer holds now: the sweep drops the
    stale membership and the consumer, and leaves the live holder's message alone."""
    _publish(connections, {"n": 1})
    a, b, sweeper = _channel(connections), _channel(connections), _channel(connections)
    tag = QUEUE(a).get(no_ack=False).delivery_tag
    _stock_sweep_requeue(real_redis, tag)
    QUEUE(b).get(no_ack=False)
    _age(real_redis, a.consumer_id, LEASE_S * 10)  # A died without acking

    for _ in range(2):
        sweeper.qos.restore_visible(interval=1)

    assert real_redis.zscore(CONSUMERS_KEY, a.consumer_id) is None
    assert real_redis.scard(inflight_key(a.consumer_id)) == 0
    assert real_redis.hget(UNACKED_OWNER_KEY, tag) == b.consumer_id.encode()
    assert real_redis.llen(QUEUE.name) == 0  # B's message was not given back


class _FetchBeforeForgetting:
    """A client that lets `consumer` fetch a message just before the sweep removes it from
    `greenq:consumers`, whichever way the sweep does that (a ZREM, or one script)."""

    def __init__(self, client: redis.Redis, consumer: Any) -> None:
        self._client, self._consumer, self.fetched = client, consumer, False
        self._forget_sha = scripts.register(client, "forget_idle_consumer").sha

    def _maybe_fetch(self, args: tuple[Any, ...]) -> None:
        if not self.fetched and CONSUMERS_KEY in args and self._consumer.consumer_id in args:
            self.fetched = QUEUE(self._consumer).get(no_ack=False) is not None

    def zrem(self, *args: Any) -> Any:
        self._maybe_fetch(args)
        return self._client.zrem(*args)

    def evalsha(self, sha: str, *args: Any) -> Any:
        if sha == self._forget_sha:
            self._maybe_fetch(args)
        return self._client.evalsha(sha, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_consumer_that_fetches_while_the_sweep_forgets_it_stays_registered(
    real_redis: redis.Redis, connections: list[Connection]
) -> None:
    """Finding 10: the sweep read SCARD (0) and then ran ZREM; a fetch in between left a consumer that
    holds a message outside `greenq:consumers`, where no sweep would ever give that message back."""
    _publish(connections, {"n": 1})
    slow, sweeper = _channel(connections), _channel(connections)
    real_redis.zadd(CONSUMERS_KEY, {slow.consumer_id: 0})  # registered, silent for ages, holding nothing
    client = _FetchBeforeForgetting(real_redis, slow)

    now_s, micros = real_redis.time()
    sweeper.qos._restore_dead_consumers(client, now_s + micros / 1e6)

    assert client.fetched
    assert real_redis.scard(inflight_key(slow.consumer_id)) == 1
    assert real_redis.zscore(CONSUMERS_KEY, slow.consumer_id) is not None


def test_a_fetch_that_fails_while_recording_leaves_the_message_queued(
    real_redis: redis.Redis, connections: list[Connection]
) -> None:
    """Finding 10: the fetch popped the message and then wrote its record; an error in between (here
    `unacked` holds a string) dropped the message. Now it records first and pops last."""
    _publish(connections, {"n": 1})
    real_redis.set("unacked", "not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        QUEUE(_channel(connections)).get(no_ack=False)
    assert real_redis.llen(QUEUE.name) == 1


def test_the_fetch_reads_the_clock_before_its_first_write() -> None:
    """On a server that refuses writes after TIME (script replication, Redis < 5) the fetch fails
    before it has changed anything, instead of after the pop."""
    script = scripts.source("fetch_message")
    first_write = min(script.index(f"redis.call('{cmd}'") for cmd in ("RPOP", "HSET", "ZADD", "SADD"))
    assert script.index("redis.call('TIME')") < first_write


def test_a_no_ack_consumer_leaves_no_in_flight_record(real_redis: redis.Redis, connections: list[Connection]) -> None:
    """A control reply queue is consumed without acks: recording its replies would leave records that
    nobody acks (now that producers use the transport too)."""
    _publish(connections, {"n": 1})
    _publish(connections, {"n": 2})
    channel = _channel(connections)
    got: list[Any] = []
    channel.basic_consume(QUEUE.name, True, got.append, "reply-consumer")
    channel.connection.client.drain_events(timeout=5)
    assert QUEUE(channel).get(no_ack=True) is not None
    assert len(got) == 1
    assert real_redis.hlen("unacked") == 0 and real_redis.scard(inflight_key(channel.consumer_id)) == 0
    assert real_redis.zscore(CONSUMERS_KEY, channel.consumer_id) is None


def test_a_heartbeat_keeps_held_messages_out_of_a_stock_sweep(
    real_redis: redis.Redis, connections: list[Connection]
) -> None:
    """A stock kombu sweep requeues `unacked_index` entries older than the visibility timeout; each
    heartbeat moves the scores of the messages its consumer holds to now."""
    _publish(connections, {"n": 1})
    channel = _channel(connections)
    tag = QUEUE(channel).get(no_ack=False).delivery_tag
    real_redis.zadd("unacked_index", {tag: 1.0})  # held since 1970, as a stock sweep sees it
    channel.heartbeat()
    now_s, _ = real_redis.time()
    assert (real_redis.zscore("unacked_index", tag) or 0) >= now_s - 1
