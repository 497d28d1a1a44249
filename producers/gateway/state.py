"""`GatewayState`: the collaborators one gateway process shares between requests, built once at start.

>>> state = GatewayState.build(settings, tenants)
>>> app.state.gateway = state  # routes read it through `deps.State`
>>> state.start(); ...; state.stop()  # the app's lifespan does this
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from greenq.producers.client import Client
from greenq.producers.gateway.addresses import AllowList
from greenq.producers.gateway.callbacks import CallbackQueue
from greenq.producers.gateway.dispatcher import CallbackDispatcher, DeliveryPolicy
from greenq.producers.gateway.events import OpenStreams
from greenq.producers.gateway.finished import FinishedFeed, OwnerRecords
from greenq.producers.gateway.limits import Outstanding, QueueDepth
from greenq.producers.gateway.metrics import GatewayMetrics
from greenq.producers.gateway.resolver import Lookups, RecentAnswers
from greenq.producers.gateway.stream_hub import StreamHub
from greenq.producers.gateway.tenants import TenantRegistry
from greenq.producers.gateway.waiting import ResultWaiter, finished_among
from greenq.shared.deferral import DeferredStore
from greenq.shared.redis_client import redis_client
from greenq.shared.settings import Settings
from greenq.shared.token_stream import TokenStreams


@dataclass(frozen=True, eq=False)
class GatewayState:
    settings: Settings
    tenants: TenantRegistry
    client: Client  # prepares and publishes jobs, as a storefront's Python code would
    store: redis.Redis  # the result backend's Redis: owners, limits, callbacks, streams
    broker: redis.Redis
    backend: Any  # the Celery result backend: results and their metadata
    metrics: GatewayMetrics
    allow: AllowList  # where a callback may be sent
    answers: RecentAnswers  # callback host lookups, bounded per tenant
    callbacks: CallbackQueue
    dispatcher: CallbackDispatcher
    finished: FinishedFeed  # wakes callbacks and shortens owner records as results are stored
    owners: OwnerRecords
    outstanding: Outstanding
    depth: QueueDepth
    waiter: ResultWaiter  # long polls
    deferred: DeferredStore
    streams: TokenStreams
    hub: StreamHub  # follows every open event stream
    open_streams: OpenStreams
    dispatch_callbacks: bool = True  # False: this process neither watches results nor sends callbacks

    @classmethod
    def build(cls, settings: Settings, tenants: TenantRegistry, dispatch_callbacks: bool = True) -> GatewayState:
        client = Client(settings)
        store = redis_client(settings.backend_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
        broker = redis_client(settings.broker_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
        backend = client.app.backend
        metrics = GatewayMetrics(CollectorRegistry())
        allow = AllowList.parse(settings.gateway_callback_allow)
        lookups = Lookups(settings.gateway_callback_resolve_concurrency)  # submits and attempts share each bound
        answers = RecentAnswers(
            lookups, settings.gateway_callback_resolve_timeout_s, settings.gateway_callback_resolve_queue_s
        )
        callbacks = CallbackQueue(
            store, backend, settings.result_ttl_s, settings.gateway_callback_sweep_s, outcomes=metrics.callbacks
        )
        policy = DeliveryPolicy(
            allow=allow,
            timeout_s=settings.gateway_callback_timeout_s,
            concurrency=settings.gateway_callback_concurrency,
            max_attempts=settings.gateway_callback_attempts,
            resolve_timeout_s=settings.gateway_callback_resolve_timeout_s,
        )
        dispatcher = CallbackDispatcher(
            callbacks, tenants.secrets(), policy, on_outcome=metrics.callbacks, lookups=lookups
        )
        owners = OwnerRecords(store, backend)
        streams = TokenStreams(store, settings.stream.max_entries, settings.result_ttl_s)

        def on_finished(job_ids: list[str]) -> None:
            callbacks.wake(job_ids, time.time())
            owners.expire_with_results(job_ids)

        return cls(
            settings=settings,
            tenants=tenants,
            client=client,
            store=store,
            broker=broker,
            backend=backend,
            metrics=metrics,
            allow=allow,
            answers=answers,
            callbacks=callbacks,
            dispatcher=dispatcher,
            finished=FinishedFeed(store, backend.task_keyprefix.decode(), on_finished),
            owners=owners,
            outstanding=Outstanding(store, backend, settings.result_ttl_s),
            depth=QueueDepth(broker),
            waiter=ResultWaiter(backend),
            deferred=DeferredStore(store),
            streams=streams,
            hub=StreamHub(streams, lambda job_ids: finished_among(backend, job_ids)),
            open_streams=OpenStreams(settings.gateway_max_streams_per_tenant, metrics.event_streams),
            dispatch_callbacks=dispatch_callbacks,
        )

    def start(self) -> None:
        if self.dispatch_callbacks:
            self.finished.start()
            self.dispatcher.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.finished.stop()
        self.client.close()
