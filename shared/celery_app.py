"""The one place Celery is configured, for producers and workers alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from kombu.entity import Exchange, Queue

from greenq.shared import job_types, redis_transport
from greenq.shared.delivery import MAX_PRIORITY
from greenq.shared.envelope import Envelope
from greenq.shared.queues import REDIS_PRIORITY_STEPS, broker_priority, is_redis_url, queue_name, task_name
from greenq.shared.redis_client import tls_options
from greenq.shared.result_backend import polling_backend_url
from greenq.shared.settings import Settings


def make_celery(settings: Settings, name: str = "greenq", producer: bool = False) -> Celery:
    """A Celery app with greenq's defaults: JSON only, late acks, events on, one queue per job type.

    `producer=True` reads results by polling instead of subscribing per job.

    Every process that builds an app here (workers, the scheduler, the gateway, `greenq pool` and
    `top`) gets the reliable transport: kombu's stock sweep, which runs in any process waiting for a
    reply, would requeue the messages live workers hold.
    """
    if is_redis_url(settings.broker_url):
        redis_transport.install()
    backend = polling_backend_url(settings.backend_url) if producer else settings.backend_url
    app = Celery(name, broker=settings.broker_url, backend=backend, set_as_current=False)
    transport_options = {
        "visibility_timeout": settings.visibility_timeout_s,
        "queue_order_strategy": "priority",
        "priority_steps": REDIS_PRIORITY_STEPS,
        "health_check_interval": 10,
        "socket_connect_timeout": 5,
        # The reliable fetch (shared/redis_transport.py): a dead worker's jobs come back after
        # its lease; sweep for dead workers a few times per lease.
        "consumer_lease_s": settings.consumer_lease_s,
        "idle_poll_s": settings.idle_poll_s,
        "unacked_restore_interval": max(1, min(60, int(settings.consumer_lease_s // 3))),
        "unacked_restore_throttle": 1,
        # The sweep's mutex (kombu's default: 300 s) would stall every sweep that long if its holder
        # died holding it, or a failover kept the key but lost its release. Sweeps are safe to overlap.
        "unacked_mutex_expire": 10,
        "master_name": settings.sentinel_master,  # read for sentinel:// URLs only
        # The transport dead-letters unreadable list items on the broker, within the store's bounds.
        "dead_letter_max_records": settings.dead_letters.max_records,
        "dead_letter_retention_s": settings.dead_letters.retention_s,
    }
    queue_args = {} if is_redis_url(settings.broker_url) else {"x-max-priority": MAX_PRIORITY}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=False,  # a redelivery cap comes with the dead-letter store
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        # The threads pool cannot cancel a running job; a job that outlives a lost connection is
        # redelivered after the visibility timeout and finds its stored result (workers/edge/tasks.py).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options=transport_options,
        result_backend_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "master_name": settings.sentinel_master,
        },
        result_expires=settings.result_ttl_s,
        result_extended=False,
        task_queues=[
            Queue(queue_name(t), Exchange(queue_name(t)), routing_key=queue_name(t), queue_arguments=queue_args)
            for t in job_types.names()
        ],
        task_routes={task_name(t): {"queue": queue_name(t)} for t in job_types.names()},
        # Tasks with no route (not greenq's) land on the first type's queue, where workers dead-letter them.
        task_default_queue=queue_name(job_types.names()[0]),
        worker_hijack_root_logger=False,
        broker_channel_error_retry=True,
        greenq_dead_letters=settings.dead_letters,  # for the worker's consumer (workers/edge/consumer.py)
    )
    broker_tls = tls_options(settings.broker_url, settings.tls_ca_file)
    backend_tls = tls_options(settings.backend_url, settings.tls_ca_file)
    if broker_tls:
        app.conf.broker_use_ssl = broker_tls
    if backend_tls:
        app.conf.redis_backend_use_ssl = backend_tls
    return app


PUBLISH_RETRY_POLICY = {"max_retries": 4, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


def send_job(app: Celery, envelope: Envelope, broker_url: str, producer: Any = None) -> None:
    """Put one job on its queue: task `greenq.jobs.<type>`, task id = job id, the envelope its one argument."""
    app.send_task(
        task_name(envelope.job_type),
        args=[envelope.encode()],
        task_id=envelope.job_id,
        queue=queue_name(envelope.job_type),
        priority=broker_priority(envelope.priority, broker_url),
        producer=producer,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
    )


def worker_statuses(app: Celery, timeout_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """node name → that worker's `greenq_status` reply (workers/edge/control.py), for every worker that answers."""
    replies = app.control.broadcast("greenq_status", reply=True, timeout=timeout_s) or []
    merged: dict[str, dict[str, Any]] = {}
    for reply in replies:
        merged.update(reply)
    return dict(sorted(merged.items()))


def register_task(app: Celery, **options: Any) -> Callable[[Callable[..., Any]], Task]:
    """`@app.task(**options)` with a type: Celery ships none, and strict mypy refuses an untyped decorator."""
    decorator: Callable[[Callable[..., Any]], Task] = app.task(**options)
    return decorator
