"""What the gateway does when a job finishes: its waiting callback becomes due, and its owner record is
made to expire with its result (a deferred job's owner record is kept until its run_by plus the result TTL,
so without this a job that ran early would read `queued` once its result had expired).

Every final result is PUBLISHed on a channel named after its result key (Celery's backend does it,
and so does the workers' store-once script), so one pattern subscription per gateway hears them all.
Pub/sub is not durable: a notification sent while a gateway is reconnecting is lost, which the
callbacks' sweep (callbacks.py) and `GET /v1/jobs/{id}` (which aligns the owner record when it reads a
final result) make up for. Redis channels span databases: a gateway also hears other databases'
results, and finds nothing of its own for them.

    feed = FinishedFeed(store, backend.get_key_for_task(""), on_finished=lambda ids: ...)
    feed.start()  # … feed.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from greenq.shared import scripts
from greenq.shared.keys import OWNER_KEY_PREFIX

log = logging.getLogger(__name__)
LISTEN_S = 1.0  # how long one read waits for a notification (and how soon `stop` is noticed)
PING_S = 10.0  # an idle subscription is pinged this often, so a dead connection is noticed and replaced
RECONNECT_S = 2.0
MAX_BATCH = 500
OWNER_EARLY_MS = 1000  # the owner record goes this much before the result, so no read falls between them


class OwnerRecords:
    """Owner records (`greenq:owner:<job id>` → tenant) expire with their job's result
    (`scripts/align_owner_expiry.lua`)."""

    def __init__(self, client: Any, backend: Any) -> None:
        self._redis = client
        self._backend = backend
        self._align = scripts.register(client, "align_owner_expiry")

    def expire_with_results(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        for job_id in job_ids:
            keys = [f"{OWNER_KEY_PREFIX}{job_id}", self._backend.get_key_for_task(job_id)]
            self._align(keys=keys, args=[OWNER_EARLY_MS], client=pipe)
        pipe.execute()


class FinishedFeed:
    """Calls `on_finished(job_ids)` from a thread of its own, in batches, as results are stored."""

    def __init__(self, client: Any, result_key_prefix: str, on_finished: Callable[[list[str]], None]) -> None:
        self._redis = client
        self._prefix = result_key_prefix
        self._on_finished = on_finished
        self._stopping = threading.Event()
        self.subscribed = threading.Event()  # set while a subscription is live (tests wait on it)
        self._thread = threading.Thread(target=self._main, name="greenq-finished", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _main(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception:  # Redis away, most likely; the sweep covers what is missed meanwhile
                log.warning("the result notifications stopped; subscribing again", exc_info=True)
            self.subscribed.clear()
            self._stopping.wait(RECONNECT_S)

    def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.psubscribe(f"{self._prefix}*")
            self.subscribed.set()
            quiet_since = time.monotonic()
            while not self._stopping.is_set():
                batch = self._read(pubsub)
                if batch:
                    quiet_since = time.monotonic()
                    self._deliver(batch)
                elif time.monotonic() - quiet_since >= PING_S:
                    pubsub.ping()  # raises if the connection died silently
                    quiet_since = time.monotonic()
        finally:
            pubsub.close()

    def _read(self, pubsub: Any) -> list[str]:
        """The job ids of the notifications that arrive within LISTEN_S (and any right behind them)."""
        job_ids: list[str] = []
        message = pubsub.get_message(timeout=LISTEN_S)
        while message is not None and len(job_ids) < MAX_BATCH:
            if message.get("type") == "pmessage":
                channel = message["channel"]
                channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                if channel.startswith(self._prefix):
                    job_ids.append(channel[len(self._prefix) :])
            message = pubsub.get_message(timeout=0)
        return job_ids

    def _deliver(self, job_ids: list[str]) -> None:
        try:
            self._on_finished(job_ids)
        except Exception:  # the sweep looks at these callbacks again; a GET aligns the owner record
            log.warning("could not act on %d finished jobs", len(job_ids), exc_info=True)
