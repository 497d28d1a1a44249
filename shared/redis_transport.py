"""kombu's Redis transport, hardened: a list item that is not JSON is dead-lettered, not fatal.

Stock kombu decodes each BRPOP'd item inline, and a decode error escapes into Celery's
event loop as an "Unrecoverable error" that ends the worker (seen with kombu 5.7). Anything
can LPUSH into a Redis list, so a worker must survive that: the raw item goes to the
dead-letter list with its reason and consumption continues.
"""

from __future__ import annotations

import logging

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from shared.deadletter import DeadLetter, DeadLetterStore, truncate

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def _brpop_read(self, **options):  # type: ignore[no-untyped-def]
        # Mirrors kombu.transport.redis.Channel._brpop_read, with the decode guarded.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise kombu_redis.Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                message = kombu_redis.loads(bytes_to_str(item))
                if not isinstance(message, dict):
                    raise ValueError(f"a transport message must be a JSON object, not {type(message).__name__}")
            except (ValueError, UnicodeDecodeError) as exc:
                self._dead_letter(dest, item, f"undecodable message: {exc}")
                return True
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.7
            if flush is not None:
                flush()

    def _dead_letter(self, queue: str, item: bytes | str, reason: str) -> None:
        log.error("dead-lettered a message from %s: %s", queue, reason)
        with self.conn_or_acquire() as client:
            DeadLetterStore(client).add(DeadLetter(reason=reason, queue=queue, raw=truncate(item)))


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Route redis:// and rediss:// URLs in this process to the hardened transport."""
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
    TRANSPORT_ALIASES["rediss"] = f"{__name__}:Transport"
