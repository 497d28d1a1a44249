"""kombu's Redis transport with a reliable fetch: no message is lost when a worker dies at any moment.

Stock kombu consumes with BRPOP: Redis removes the message when it sends the reply, and the
client records it as unacked only after it has read that reply. A process killed (or too
busy to read) in between loses the message for good. Here a Lua script (`scripts/fetch_message.lua`)
moves a message from its queue into the in-flight record in one atomic step (the reliable-queue
pattern), so a message is always either queued or recorded as held by a named consumer:

* `unacked` / `unacked_index` keep kombu's own layout, so acks, rejects, `celery inspect`
  and Flower see what they expect; greenq adds `greenq:unacked:owner` (tag → consumer) and
  one set per consumer (`greenq:inflight:<consumer>`).
* Each consumer (one per channel) heartbeats into `greenq:consumers` (a sorted set scored
  by Redis' own clock). A sweep in every worker gives back the messages of consumers silent for
  longer than the heartbeat timeout (the `consumer_lease_s` option): a dead worker's jobs come back
  in about that long, and a live worker's jobs are never redelivered, however long they take.
* Acks and requeues are conditional on the owner: when a copy was given back and fetched by
  another consumer (same delivery tag), a late ack of the old copy no longer deletes the new
  copy's record (and drops the old owner's stale membership). Messages recorded by stock kombu
  consumers (no owner) still come back after `visibility_timeout`, as before.
* Every process that builds greenq's Celery app installs this transport (shared/celery_app.py).
  For those that cannot (`celery inspect`, Flower), the layout itself is safe: each heartbeat
  moves its held messages' `unacked_index` scores to now, and a stock kombu sweep requeues only
  entries older than the visibility timeout, so it leaves a live consumer's messages alone.

The fetch cannot block (Lua scripts never do), so an idle channel polls every `idle_poll_s`
(Sidekiq's reliable fetch does the same); a channel that found a message fetches again at once.
Each poll is an EVALSHA of the registered script; after Redis lost its scripts (a restart, `SCRIPT
FLUSH`) the poll that meets NOSCRIPT loads the script and the channel polls again at once.
A list item that is not a JSON message object is dead-lettered, not fatal.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
import weakref
from queue import Empty
from typing import Any, cast

import kombu.transport as kombu_transport
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from redis.exceptions import NoScriptError

from greenq.shared import scripts
from greenq.shared.broker_compat import MIN_REDIS_VERSION, UnsupportedDependency, check_libraries, redis_problem
from greenq.shared.deadletter import DeadLetter, DeadLetterStore, truncate
from greenq.shared.keys import CONSUMERS_KEY, INFLIGHT_KEY_PREFIX, UNACKED_OWNER_KEY
from greenq.shared.settings import DeadLetterSettings

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0  # the `consumer_lease_s` option's default
DEFAULT_IDLE_POLL_S = 0.05

EVER = "1e308"  # a silence bound every heartbeat passes: forget_consumer then forgets if nothing is held
UNOWNED = ""  # restore_by_tag's `owner` for a record that no greenq consumer holds


def inflight_key(consumer_id: str) -> str:
    return f"{INFLIGHT_KEY_PREFIX}{consumer_id}"


def new_consumer_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def server_time_s(client: Any) -> float:
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1e6


class QoS(kombu_redis.QoS):
    channel: Channel

    def append(self, message: Any, delivery_tag: str) -> None:
        # The fetch script has already recorded the message in Redis.
        VirtualQoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if self._channel_open("ack", delivery_tag):
            self.channel.drop_held_record(delivery_tag)
        VirtualQoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if self._channel_open("requeue" if requeue else "reject", delivery_tag):
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=True, owner=self.channel.consumer_id)
            else:
                self.channel.drop_held_record(delivery_tag)
        VirtualQoS.ack(self, delivery_tag)

    def _channel_open(self, what: str, delivery_tag: str) -> bool:
        """False once the channel is closed (a lost connection: Celery closed it to reconnect).

        Its connection and pool are gone, and kombu would raise AttributeError out of the event loop,
        which Celery treats as unrecoverable: the worker exited. The message's in-flight record stays
        under this channel's consumer id, which no longer heartbeats, so the sweep gives it back once the
        heartbeat timeout (`consumer_lease_s`) has passed; its redelivery finds the stored result (or runs
        the job, for a requeue)."""
        if not self.channel.closed and self.channel.connection is not None:
            return True
        log.warning(
            "cannot %s message %s: its channel was closed by a lost connection; "
            "it is given back once its consumer's heartbeats have stopped for consumer_lease_s",
            what,
            delivery_tag,
        )
        return False

    def restore_unacked(self, client: Any = None) -> None:
        """On close: give back what this consumer holds. When Redis or the connection is already gone
        (kombu then fails even to build a client), the sweep gives them back once this consumer's
        heartbeats stop for `consumer_lease_s`: the worker must not die of it (it did, with
        "Unrecoverable error: AttributeError", when Redis restarted while acks were failing)."""
        try:
            with self.channel.conn_or_acquire(client) as client:
                for tag in self._delivered:
                    self.restore_by_tag(tag, client=client, owner=self.channel.consumer_id)
            self._delivered.clear()
            self.channel.forget_consumer()
        except Exception as exc:  # noqa: BLE001 - kombu raises AttributeError on a closed connection
            log.warning(
                "could not give back %d held jobs on close (%s: %s); they come back once this consumer's "
                "heartbeats have stopped for consumer_lease_s",
                len(self._delivered),
                type(exc).__name__,
                exc,
            )

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False, owner: str = UNOWNED) -> None:
        """Put a held message back on its queue, only if `owner` (or nobody, for UNOWNED) still holds it."""
        tag = bytes_to_str(tag)

        def restore_transaction(pipe: Any) -> None:
            payload = pipe.hget(self.unacked_key, tag)
            holder = pipe.hget(UNACKED_OWNER_KEY, tag)
            if (bytes_to_str(holder) if holder is not None else UNOWNED) != owner:
                # Another consumer holds this copy now (or a stock kombu sweep requeued it and it was
                # acked): not ours to give back, and `owner`'s membership of it is stale.
                if owner:
                    pipe.multi()
                    pipe.srem(inflight_key(owner), tag)
                return
            pipe.multi()
            pipe.zrem(self.unacked_index_key, tag).hdel(self.unacked_key, tag).hdel(UNACKED_OWNER_KEY, tag)
            if owner:
                pipe.srem(inflight_key(owner), tag)
            if payload:
                message, exchange, routing_key = loads(bytes_to_str(payload))
                # kombu's own method, unannotated:
                self.channel._do_restore_message(message, exchange, routing_key, pipe, leftmost)  # type: ignore[no-untyped-call]

        with self.channel.conn_or_acquire(client) as client:
            client.transaction(restore_transaction, self.unacked_key, UNACKED_OWNER_KEY)

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        """The periodic sweep: give back the messages of dead consumers, and old unowned ones."""
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        with self.channel.conn_or_acquire() as client:
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key, self.unacked_mutex_expire):
                    now = server_time_s(client)
                    self._restore_dead_consumers(client, now)
                    self._restore_unowned(client, now, num)
            except kombu_redis.MutexHeld:
                pass

    def _restore_dead_consumers(self, client: Any, now: float) -> None:
        timeout_s = self.channel.consumer_lease_s  # the heartbeat timeout
        for raw in client.zrangebyscore(CONSUMERS_KEY, "-inf", now - timeout_s):
            dead = bytes_to_str(raw)
            tags = client.smembers(inflight_key(dead))
            if tags:
                log.warning("consumer %s missed heartbeats for %.0f s: giving back %d jobs", dead, timeout_s, len(tags))
            for tag in tags:
                self.restore_by_tag(tag, client=client, owner=dead)
            self.channel.forget_consumer(dead, silent_since=repr(now - timeout_s), client=client)

    def _restore_unowned(self, client: Any, now: float, num: int) -> None:
        ceiling = now - self.visibility_timeout
        limit = {"offset": 0, "num": num} if num else {}
        old = client.zrange(self.unacked_index_key, ceiling, 0, desc=True, byscore=True, **limit)
        for tag in old or []:
            if not client.hexists(UNACKED_OWNER_KEY, tag):
                self.restore_by_tag(tag, client=client, owner=UNOWNED)


# Transport options this transport reads besides kombu's (set by shared/celery_app.py).
GREENQ_OPTIONS = ("consumer_lease_s", "idle_poll_s", "dead_letter_max_records", "dead_letter_retention_s")


class Channel(kombu_redis.Channel):
    QoS = QoS
    # mypy reads kombu's tuple as fixed-length, so a longer one (as kombu's own subclasses make) is "incompatible".
    from_transport_options = kombu_redis.Channel.from_transport_options + GREENQ_OPTIONS  # type: ignore[assignment]
    consumer_lease_s = DEFAULT_HEARTBEAT_TIMEOUT_S  # the heartbeat timeout
    idle_poll_s = DEFAULT_IDLE_POLL_S
    dead_letter_max_records = DeadLetterSettings().max_records
    dead_letter_retention_s = DeadLetterSettings().retention_s

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.consumer_id = new_consumer_id()
        self._idle_until = 0.0
        self._no_ack_queues: set[str] = set()
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # kombu's, unannotated
        # Registered once per channel, called with whichever client each call uses (kombu makes a new one
        # per `conn_or_acquire`): a script's SHA depends on its text only.
        self._fetch = scripts.register(self.client, "fetch_message")
        self._ack = scripts.register(self.client, "ack_message")
        self._heartbeat = scripts.register(self.client, "heartbeat_consumer")
        self._forget = scripts.register(self.client, "forget_idle_consumer")
        check_server_once(self)

    # -- fetching ------------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        # Nobody acks what a no-ack consumer (a control reply queue) gets: the fetch must not record it.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)  # type: ignore[no-untyped-call]

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        if queue is not None:
            self._no_ack_queues.discard(queue)
        return super().basic_cancel(consumer_tag)  # type: ignore[no-untyped-call]

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        try:
            message = self.Message(self._fetch_one(queue, record=not no_ack), channel=self)  # type: ignore[no-untyped-call]
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _fetch_keys_and_args(self, queues: list[str]) -> tuple[list[str], list[Any]]:
        """fetch_message.lua's KEYS and ARGV for these queues."""
        # kombu's own method, unannotated:
        pairs = [(self._q_for_pri(q, pri), q) for pri in self.priority_steps for q in queues]  # type: ignore[no-untyped-call]
        keys = [
            *(name for name, _ in pairs),
            self.unacked_key,
            self.unacked_index_key,
            UNACKED_OWNER_KEY,
            inflight_key(self.consumer_id),
            CONSUMERS_KEY,
        ]
        record = "".join("0" if q in self._no_ack_queues else "1" for _, q in pairs)
        return keys, [len(pairs), self.consumer_id, record]

    def _brpop_start(self, timeout: float | None = None) -> None:
        """Send one fetch (not BRPOP): it moves a message into our in-flight record atomically."""
        if time.monotonic() < self._idle_until:
            return
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]  # kombu declares it `= None`
        keys, args = self._fetch_keys_and_args(queues)
        self.client.connection.send_command("EVALSHA", self._fetch.sha, len(keys), *keys, *args)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "EVALSHA", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except NoScriptError:  # Redis lost its scripts (a restart, SCRIPT FLUSH)
                if self._load_fetch_script():
                    raise Empty() from None  # poll again at once
                reply = None
            except self.ResponseError as exc:  # e.g. scripts refused: wait, and try again
                log.warning("fetching a message failed: %s", exc)
                reply = None
            if not reply:
                self._on_idle()
                raise Empty()
            dest, item = reply
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                message = loads(bytes_to_str(item))
                problem = _message_problem(message)
            except (ValueError, UnicodeDecodeError) as exc:
                problem = f"undecodable message: {exc}"
            if problem:
                self._dead_letter(dest, item, problem)
                return True
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu declares it `= False`, then sets None too
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7
            if flush is not None:
                flush()

    def _load_fetch_script(self) -> bool:
        """Load the fetch script on the poll's connection (its reply read, so it is idle); False if refused."""
        log.info("the broker had no fetch script (it restarted, or SCRIPT FLUSH): loading it")
        try:
            self._fetch.sha = self.client.script_load(self._fetch.script)
        except self.ResponseError as exc:  # e.g. an ACL without SCRIPT LOAD: wait, and try again
            log.warning("loading the fetch script failed: %s", exc)
            return False
        return True

    def _on_idle(self) -> None:
        if getattr(self.connection, "greenq_event_loop", False):
            self._idle_until = time.monotonic() + self.idle_poll_s
        else:  # drain_events without an event loop: nothing else would pace the polls
            time.sleep(self.idle_poll_s)

    def _get(self, queue: str, timeout: Any = None) -> Any:
        return self._fetch_one(queue, record=True)

    def _fetch_one(self, queue: str, record: bool) -> Any:
        """basic_get: the same atomic fetch, for one queue."""
        keys, args = self._fetch_keys_and_args([queue])
        if not record:
            args[-1] = "0" * len(args[-1])
        with self.conn_or_acquire() as client:
            reply = self._fetch(keys=keys, args=args, client=client)
        if not reply:
            raise Empty()
        return loads(bytes_to_str(reply[1]))

    # -- ownership -----------------------------------------------------------------------

    def drop_held_record(self, delivery_tag: str) -> None:
        """Drop a message's in-flight record (ack, or reject without requeue) if we still hold it."""
        with self.conn_or_acquire() as client:
            keys = [self.unacked_key, self.unacked_index_key, UNACKED_OWNER_KEY, inflight_key(self.consumer_id)]
            self._ack(keys=keys, args=[delivery_tag, self.consumer_id], client=client)

    def heartbeat(self) -> None:
        """Tell other workers this consumer is alive (only once it holds or held messages)."""
        keys = [CONSUMERS_KEY, inflight_key(self.consumer_id), UNACKED_OWNER_KEY, self.unacked_index_key]
        holding = "1" if self.qos._delivered else "0"
        with self.conn_or_acquire() as client:
            self._heartbeat(keys=keys, args=[self.consumer_id, holding], client=client)

    def forget_consumer(self, consumer_id: str | None = None, silent_since: str = EVER, client: Any = None) -> None:
        """Unregister a consumer (default: this one, after a clean close) if it holds nothing and has not
        beaten since `silent_since` (Redis time; EVER: whenever it last did)."""
        consumer_id = self.consumer_id if consumer_id is None else consumer_id
        with self.conn_or_acquire(client) as client:
            keys = [CONSUMERS_KEY, inflight_key(consumer_id)]
            self._forget(keys=keys, args=[consumer_id, silent_since], client=client)

    def _dead_letter(self, queue: str, item: bytes | str, reason: str) -> None:
        log.error("dead-lettered a message from %s: %s", queue, reason)
        with self.conn_or_acquire() as client:
            limits = DeadLetterSettings(
                max_records=self.dead_letter_max_records, retention_s=self.dead_letter_retention_s
            )
            DeadLetterStore(client, limits).add(DeadLetter(reason=reason, queue=queue, raw=truncate(item)))


def _message_problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return f"a transport message must be a JSON object, not {type(message).__name__}"
    properties = message.get("properties")
    if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
        return "a transport message needs properties.delivery_tag (a string)"
    return None


class Transport(kombu_redis.Transport):
    Channel = Channel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[no-untyped-call]  # kombu's, unannotated
        connection.greenq_event_loop = True
        assert self.client is not None  # the Connection that made this transport
        options = self.client.transport_options
        idle_poll_s = float(options.get("idle_poll_s", DEFAULT_IDLE_POLL_S))
        timeout_s = float(options.get("consumer_lease_s", DEFAULT_HEARTBEAT_TIMEOUT_S))
        # Wake the loop so idle channels poll again; heartbeat well inside the timeout. A reconnect
        # registers a new transport with the same loop: the old one's timers go.
        for tref in _timers.pop(loop, []):
            tref.cancel()
        _timers[loop] = [
            loop.call_repeatedly(idle_poll_s, _noop),
            loop.call_repeatedly(max(0.2, timeout_s / 3), self._heartbeat_all),
        ]

    def _heartbeat_all(self) -> None:
        cycle = cast(kombu_redis.MultiChannelPoller, self.cycle)  # kombu's Redis transport always makes one
        for channel in list(cycle._channels):
            try:
                channel.heartbeat()
            except channel.connection_errors:
                log.debug("heartbeat: connection error, will retry", exc_info=True)


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """The reliable fetch on the master the sentinels name (`master_name` in the transport options)."""

    # A longer tuple than kombu's (see Channel).
    from_transport_options = kombu_redis.SentinelChannel.from_transport_options + GREENQ_OPTIONS  # type: ignore[assignment]


class SentinelTransport(Transport):
    """For sentinel:// URLs: after a failover, channels reconnect to the new master."""

    Channel = SentinelChannel
    default_port = kombu_redis.SentinelTransport.default_port  # type: ignore[assignment]  # kombu: `= None`


def _noop() -> None:
    pass


_checked_servers: set[tuple[Any, ...]] = set()


def check_server_once(channel: Channel) -> None:
    """Stop at the first connection to a Redis too old for the scripts (once per server and process)."""
    conninfo = channel.connection.client
    server = (conninfo.hostname, conninfo.port, conninfo.virtual_host)
    if server in _checked_servers:
        return
    try:
        with channel.conn_or_acquire() as client:
            found = bytes_to_str(client.info("server").get("redis_version", ""))
    except channel.ResponseError as exc:  # INFO renamed or refused (some managed services): nothing to read
        log.warning(
            "could not read the broker's Redis version (%s); greenq needs %s or later",
            exc,
            ".".join(map(str, MIN_REDIS_VERSION)),
        )
        found = None
    if found is not None:
        problem = redis_problem(str(found))
        if problem:
            raise UnsupportedDependency(problem)
    _checked_servers.add(server)


_timers: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()


def install() -> None:
    """Route redis://, rediss:// and sentinel:// URLs in this process to the reliable transport.

    Raises UnsupportedDependency when kombu or Celery is outside the range the transport is built for."""
    check_libraries()
    for scheme, cls in (("redis", "Transport"), ("rediss", "Transport"), ("sentinel", "SentinelTransport")):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:{cls}"
        kombu_transport._transport_cache.pop(scheme, None)  # kombu caches each name's class once resolved


__all__ = ["Channel", "QoS", "SentinelChannel", "SentinelTransport", "Transport", "dumps", "install"]
