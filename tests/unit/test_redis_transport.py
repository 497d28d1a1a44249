"""The reliable transport's edge cases that need no Redis."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from greenq.shared import redis_transport


class _ClosedChannel:
    """A channel whose connection kombu has already torn down: building a client fails."""

    consumer_id = "consumer-1"

    def conn_or_acquire(self, client: Any = None) -> Any:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")  # what kombu raised


def test_giving_back_held_jobs_on_a_dead_connection_does_not_kill_the_worker() -> None:
    """Seen in test_broker_faults: Redis restarted while acks failed, the consumer closed its channel,
    and the restore on close raised out of Celery as an unrecoverable error: the worker exited."""
    qos = redis_transport.QoS.__new__(redis_transport.QoS)
    qos.channel = _ClosedChannel()  # type: ignore[assignment]
    qos._delivered = OrderedDict(tag=object())
    qos.restore_unacked()  # the sweep gives them back once this consumer's heartbeats stop
