"""Name lookups for callback hosts that no tenant can use to stall the gateway.

`getaddrinfo` blocks, and a nameserver that never answers holds its thread for as long as the system resolver
waits (seconds). So lookups run in threads of their own, never in the API's or the dispatcher's shared pools;
each tenant has at most `per_tenant` of them running, and a lookup its caller gave up on keeps its tenant's
slot until it returns, so a tenant whose names resolve slowly holds a few threads of its own and no one
else's. Callers wait on the event loop, with a deadline. At submit, a lookup's timeout counts from when it
takes its slot (a batch's distinct hosts take turns, and a host is not refused for waiting behind the
others); the wait for a slot has a bound of its own, generous, for the whole request.

    lookups = Lookups(per_tenant=4)
    answers = RecentAnswers(lookups, timeout_s=2.0, queue_s=60.0)
    addresses = await answers.resolve("acme", "shop.example", 443)   # at submit: remembered a few seconds
    addresses = await lookups.resolve("acme", "shop.example", 443, 2.0)  # before an attempt: afresh
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future

from greenq.producers.gateway.addresses import resolve

MOST_THREADS = 256  # lookup threads per gateway, all tenants together: past it, lookups wait for a thread
ANSWER_TTL_S = 10.0  # a batch of jobs with one callback host costs one lookup
FAILURE_TTL_S = 10.0  # nor does a host that does not resolve (or too slowly) cost one per job
MOST_REMEMBERED = 4096
QUEUE_S = 60.0  # default for how long a lookup at submit may wait for its tenant's slot

Lookup = Callable[[str, int], list[str]]
# host, port, its answer, and a future set (on the lookup's thread) once it takes its tenant's slot
_Pending = tuple[str, int, "Future[list[str]]", "Future[None]"]


class Lookups:
    """Blocking lookups in daemon threads, at most `per_tenant` running for each tenant, taken in turn."""

    def __init__(self, per_tenant: int = 4, most_threads: int = MOST_THREADS, lookup: Lookup = resolve) -> None:
        self._per_tenant, self._most_threads, self._lookup = per_tenant, most_threads, lookup
        self._lock = threading.Lock()
        self._running: Counter[str] = Counter()
        self._waiting: dict[str, deque[_Pending]] = {}
        self._threads = 0

    async def resolve(self, tenant: str, host: str, port: int, timeout_s: float | None = None) -> list[str]:
        """`host`'s addresses; OSError if it does not resolve, TimeoutError (an OSError) if not within `timeout_s`."""
        literal = _literal(host)
        if literal is not None:
            return literal
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(tenant, host, port)[0]), timeout_s)
        except asyncio.TimeoutError:  # builtin TimeoutError from 3.11 on
            raise TimeoutError(f"no answer within {timeout_s:g} s") from None

    def submit(self, tenant: str, host: str, port: int) -> tuple[Future[list[str]], Future[None]]:
        """Queue a lookup: its answer, and a future done once it starts. Cancelling the answer before the
        lookup starts takes it off the queue."""
        future: Future[list[str]] = Future()
        started: Future[None] = Future()
        with self._lock:
            self._waiting.setdefault(tenant, deque()).append((host, port, future, started))
            first = self._take() if self._threads < self._most_threads else None
            if first is not None:
                self._threads += 1
        if first is not None:
            threading.Thread(target=self._work, args=first, name="greenq-lookup", daemon=True).start()
        return future, started

    def running(self, tenant: str) -> int:
        with self._lock:
            return self._running[tenant]

    def _take(self) -> tuple[str, _Pending] | None:
        """The next lookup of a tenant with a free slot (lock held); tenants take turns."""
        for tenant in list(self._waiting):
            if self._running[tenant] >= self._per_tenant:
                continue
            queue = self._waiting.pop(tenant)
            while queue:
                pending = queue.popleft()
                if pending[2].set_running_or_notify_cancel():  # False: its caller gave up while it waited
                    break
            else:
                continue
            if queue:
                self._waiting[tenant] = queue  # to the back of the line
            self._running[tenant] += 1
            if not pending[3].done():
                pending[3].set_result(None)
            return tenant, pending
        return None

    def _work(self, tenant: str, pending: _Pending) -> None:
        while True:
            host, port, future, _ = pending
            try:
                future.set_result(self._lookup(host, port))
            except BaseException as exc:  # the caller sees it, as it would have seen getaddrinfo's
                future.set_exception(exc)
            with self._lock:
                self._running[tenant] -= 1
                if self._running[tenant] <= 0:
                    del self._running[tenant]
                following = self._take()
                if following is None:
                    self._threads -= 1
                    return
            tenant, pending = following


class RecentAnswers:
    """Lookups at submit, with answers and failures remembered for a few seconds (shared by every tenant).

    Every attempt resolves afresh (`Lookups.resolve`), and that check is the one that decides. A lookup has
    `timeout_s` from when it starts; it may wait up to `queue_s` for its tenant's slot first.
    """

    def __init__(
        self,
        lookups: Lookups,
        timeout_s: float,
        queue_s: float = QUEUE_S,
        answer_ttl_s: float = ANSWER_TTL_S,
        failure_ttl_s: float = FAILURE_TTL_S,
        most: int = MOST_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookups, self._timeout_s, self._queue_s = lookups, timeout_s, queue_s
        self._answer_ttl_s, self._failure_ttl_s, self._most, self._clock = answer_ttl_s, failure_ttl_s, most, clock
        self._kept: dict[tuple[str, int], tuple[float, list[str] | OSError]] = {}
        self._lock = threading.Lock()

    async def resolve(self, tenant: str, host: str, port: int) -> list[str]:
        literal = _literal(host)
        if literal is not None:
            return literal
        now = self._clock()
        with self._lock:
            kept = self._kept.get((host, port))
        if kept is not None:
            at, answer = kept
            if isinstance(answer, list) and now - at < self._answer_ttl_s:
                return answer
            if isinstance(answer, OSError) and now - at < self._failure_ttl_s:
                raise OSError(str(answer))
        future, started = self._lookups.submit(tenant, host, port)
        try:  # shielded: `started` stays settable by the lookup thread whatever this wait does
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(started)), self._queue_s)
        except asyncio.CancelledError:  # the request went away: its lookup need not run
            future.cancel()
            raise
        except asyncio.TimeoutError:  # builtin TimeoutError from 3.11 on
            if future.cancel():  # still queued behind this tenant's other lookups: not the host's fault
                raise TimeoutError(f"not looked up within {self._queue_s:g} s: too many lookups at once") from None
        try:  # it started (perhaps just now): its own timeout counts from here
            answer = await asyncio.wait_for(asyncio.wrap_future(future), self._timeout_s)
        except asyncio.TimeoutError:
            self._keep(host, port, now, TimeoutError(f"no answer within {self._timeout_s:g} s"))
            raise TimeoutError(f"no answer within {self._timeout_s:g} s") from None
        except OSError as exc:
            self._keep(host, port, now, exc)
            raise
        self._keep(host, port, now, answer)
        return answer

    def _keep(self, host: str, port: int, now: float, answer: list[str] | OSError) -> None:
        with self._lock:
            if len(self._kept) >= self._most:
                self._kept.clear()
            self._kept[(host, port)] = (now, answer)


def _literal(host: str) -> list[str] | None:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        return None
