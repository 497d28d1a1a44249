"""Sends due callbacks from a thread of its own, on its own event loop, so slow endpoints never touch the API.

Each attempt has one deadline in all; each tenant has at most `concurrency` attempts in flight, so one
tenant's hanging endpoint holds only its own slots while other tenants' callbacks go out at once.

    dispatcher = CallbackDispatcher(queue, tenants.secrets(), DeliveryPolicy(allow=AllowList.parse([])))
    dispatcher.start()  # … dispatcher.stop()
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from greenq.producers.gateway import sender
from greenq.producers.gateway.addresses import AllowList, CallbackRefused, parse_callback_url
from greenq.producers.gateway.callbacks import CallbackAttempt, CallbackQueue, retry_after_s, sign
from greenq.producers.gateway.resolver import Lookups

log = logging.getLogger(__name__)
POLL_S = 0.2
UNAVAILABLE_PAUSE_S = 2.0
ATTEMPT_MARGIN_S = 5.0  # a claim outlives its attempt's deadline by this much before another gateway retries it
MAX_IN_FLIGHT = 256  # attempts in flight per gateway, all tenants together


@dataclass(frozen=True)
class DeliveryPolicy:
    allow: AllowList
    timeout_s: float = 10.0
    concurrency: int = 4
    max_attempts: int = 5
    resolve_timeout_s: float = 2.0  # a callback host's lookup, within the attempt's timeout_s

    @property
    def attempt_s(self) -> float:
        return self.timeout_s + ATTEMPT_MARGIN_S


class CallbackDispatcher:
    def __init__(
        self,
        queue: CallbackQueue,
        secrets_by_tenant: dict[str, str],
        policy: DeliveryPolicy,
        on_outcome: Any = None,  # a Counter labelled by outcome, or None
        post: Any = sender.post,
        lookups: Lookups | None = None,  # shared with the submit routes: one bound per tenant on lookup threads
    ) -> None:
        self._lookups = lookups or Lookups(policy.concurrency)
        self._queue = queue
        self._secrets = secrets_by_tenant
        self._policy = policy
        self._outcomes = on_outcome
        self._post = post
        self._in_flight: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="greenq-callbacks", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(timeout=5)

    def stop(self) -> None:
        """Stop claiming; attempts in flight are abandoned and their leases run out (another gateway resends)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._started.set()
        try:
            moved = await asyncio.to_thread(self._queue.adopt_legacy)
            if moved:
                log.info("moved %d callbacks queued by an older gateway", moved)
        except Exception:
            log.exception("could not move older callbacks")
        tasks: set[asyncio.Task[None]] = set()
        while not self._stopping.is_set():
            try:
                claims = await asyncio.to_thread(
                    self._queue.start_attempts,
                    time.time(),
                    self._policy.attempt_s,
                    {t: self._policy.concurrency - n for t, n in self._in_flight.items()},
                    self._policy.concurrency,
                    MAX_IN_FLIGHT - sum(self._in_flight.values()),
                )
            except Exception:  # Redis away, most likely: say so, and look again a little later
                log.exception("could not claim due callbacks")
                claims = []
                pause_s = UNAVAILABLE_PAUSE_S
            else:
                pause_s = POLL_S
            for claim in claims:
                self._in_flight[claim.tenant] += 1
                task = asyncio.create_task(self._deliver(claim))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            try:
                await asyncio.wait_for(self._stopping.wait(), pause_s)
            except asyncio.TimeoutError:
                pass
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, claim: CallbackAttempt) -> None:
        try:
            outcome, detail = await self._attempt(claim)
        finally:
            self._in_flight[claim.tenant] -= 1
            if self._in_flight[claim.tenant] <= 0:
                del self._in_flight[claim.tenant]
        try:
            await asyncio.to_thread(self._record, claim, outcome, detail)
        except Exception:  # the lease runs out and the callback is tried again
            log.exception("could not record the callback outcome for %s", claim.job_id)

    async def _attempt(self, claim: CallbackAttempt) -> tuple[sender.Outcome, str]:
        if claim.attempt > self._policy.max_attempts:  # gateways died while sending it
            return sender.Outcome.failed, "claimed more often than the attempt limit"
        secret = self._secrets.get(claim.tenant, "")
        if not secret:
            return sender.Outcome.refused, f"tenant {claim.tenant} has no callback_secret to sign with"
        try:
            target = parse_callback_url(claim.url)
        except CallbackRefused as exc:
            return sender.Outcome.refused, str(exc)
        body = json.dumps(claim.result, ensure_ascii=False).encode()
        timestamp = int(time.time())
        headers = {
            "X-Greenq-Timestamp": str(timestamp),
            "X-Greenq-Signature": sign(secret, timestamp, body),
            "X-Greenq-Job-Id": claim.job_id,
        }
        # Looked up in the tenant's own lookup threads: a name that resolves slowly holds no thread of this loop's
        # executor (which claims and records for every tenant), and at most the tenant's lookup slots.
        resolver = functools.partial(self._lookups.resolve, claim.tenant, timeout_s=self._policy.resolve_timeout_s)
        attempt = await self._post(target, body, headers, self._policy.allow, self._policy.timeout_s, resolver=resolver)
        return attempt.outcome, attempt.detail

    def _record(self, claim: CallbackAttempt, outcome: sender.Outcome, detail: str) -> None:
        if outcome is sender.Outcome.delivered:
            self._queue.delivered(claim)
            self._count("sent")
        elif outcome is sender.Outcome.refused:
            log.error("not sending the callback for %s: %s", claim.job_id, detail)
            self._queue.drop(claim)
            self._count("refused")
        elif claim.attempt >= self._policy.max_attempts:
            log.error("giving up on the callback for %s after %d attempts: %s", claim.job_id, claim.attempt, detail)
            self._queue.drop(claim)
            self._count("gave_up")
        else:
            log.warning("callback attempt %d for %s failed: %s", claim.attempt, claim.job_id, detail)
            self._queue.failed(claim, time.time() + retry_after_s(claim.attempt))
            self._count("retried")

    def _count(self, outcome: str) -> None:
        if self._outcomes is not None:
            self._outcomes.labels(outcome).inc()
