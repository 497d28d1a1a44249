"""Callback host lookups: each tenant bounded, abandoned lookups keep their slot, answers and failures remembered."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

from greenq.producers.gateway import sender
from greenq.producers.gateway.addresses import AllowList, CallbackRefused, CallbackTarget, check_url
from greenq.producers.gateway.callbacks import CallbackAttempt
from greenq.producers.gateway.dispatcher import CallbackDispatcher, DeliveryPolicy
from greenq.producers.gateway.resolver import Lookups, RecentAnswers

NOTHING_ALLOWED = AllowList()
PUBLIC = ["93.184.216.34"]
WAIT_S = 30.0  # generous: only a broken implementation waits this long


class Names:
    """A resolver whose `.slow` names hang until released; every other name answers at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.looked_up: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[str]:
        with self._lock:
            self.looked_up.append(host)
        if host.endswith(".slow"):
            self.release.wait(WAIT_S)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        if host.endswith(".missing"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return PUBLIC


def test_a_tenant_with_slow_names_holds_only_its_own_slots() -> None:
    names = Names()
    lookups = Lookups(per_tenant=2, lookup=names)

    async def scenario() -> None:
        slow = [asyncio.create_task(lookups.resolve("acme", f"h{n}.slow", 443, WAIT_S)) for n in range(20)]
        await asyncio.sleep(0.05)
        assert lookups.running("acme") == 2  # the other 18 wait their turn: no thread each
        assert await lookups.resolve("globex", "shop.example", 443, WAIT_S) == PUBLIC
        assert await lookups.resolve("acme", "10.0.0.1", 443, 0.01) == ["10.0.0.1"]  # a literal needs no lookup
        names.release.set()
        for task in slow:
            with pytest.raises(socket.gaierror):
                await task

    asyncio.run(scenario())
    # A lookup thread frees its slot just after it hands over the answer: give the last ones a moment.
    deadline = time.monotonic() + WAIT_S
    while lookups.running("acme") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lookups.running("acme") == 0


def test_a_lookup_given_up_on_keeps_its_slot_until_it_returns() -> None:
    names = Names()
    lookups = Lookups(per_tenant=1, lookup=names)

    async def scenario() -> None:
        with pytest.raises(TimeoutError, match="no answer within 0.1 s"):
            await lookups.resolve("acme", "a.slow", 443, 0.1)
        assert lookups.running("acme") == 1  # its thread is still in getaddrinfo, and counts
        with pytest.raises(TimeoutError):  # so the tenant's next lookup waits, and gives up, without a thread
            await lookups.resolve("acme", "b.slow", 443, 0.1)
        assert await lookups.resolve("globex", "shop.example", 443, WAIT_S) == PUBLIC
        names.release.set()
        for _ in range(int(WAIT_S / 0.01)):
            if lookups.running("acme") == 0:
                break
            await asyncio.sleep(0.01)
        assert await lookups.resolve("acme", "shop.example", 443, WAIT_S) == PUBLIC

    asyncio.run(scenario())
    assert "b.slow" not in names.looked_up  # given up on while it waited: never looked up


def test_answers_and_failures_are_remembered_for_a_while() -> None:
    names = Names()
    now = [0.0]
    answers = RecentAnswers(Lookups(lookup=names), timeout_s=0.2, clock=lambda: now[0])

    async def scenario() -> None:
        for _ in range(50):
            await check_url("https://shop.example/hook", NOTHING_ALLOWED, lambda h, p: answers.resolve("acme", h, p))
            with pytest.raises(CallbackRefused, match="does not resolve"):
                await check_url(
                    "https://gone.missing/hook", NOTHING_ALLOWED, lambda h, p: answers.resolve("acme", h, p)
                )
            with pytest.raises(CallbackRefused, match="no answer within 0.2 s"):
                await check_url("https://x.slow/hook", NOTHING_ALLOWED, lambda h, p: answers.resolve("globex", h, p))
        now[0] = 11.0
        await answers.resolve("acme", "shop.example", 443)

    try:
        asyncio.run(scenario())
    finally:
        names.release.set()
    assert sorted(names.looked_up) == ["gone.missing", "shop.example", "shop.example", "x.slow"]


def test_a_lookup_that_only_waited_for_a_slot_is_not_remembered_as_slow() -> None:
    names = Names()
    lookups = Lookups(per_tenant=1, lookup=names)
    answers = RecentAnswers(lookups, timeout_s=WAIT_S, queue_s=0.1)

    async def scenario() -> None:
        blocker = asyncio.create_task(lookups.resolve("acme", "a.slow", 443, WAIT_S))
        await asyncio.sleep(0.05)
        with pytest.raises(TimeoutError, match="too many lookups at once"):
            await answers.resolve("acme", "shop.example", 443)
        assert await answers.resolve("globex", "shop.example", 443) == PUBLIC  # not remembered as failed
        names.release.set()
        with pytest.raises(socket.gaierror):
            await blocker

    asyncio.run(scenario())


def test_the_dispatcher_looks_callback_hosts_up_in_the_tenants_own_slots() -> None:
    names = Names()
    lookups = Lookups(per_tenant=1, lookup=names)
    seen: list[tuple[str, int]] = []

    async def post(
        target: CallbackTarget, body: bytes, headers: Any, allow: AllowList, timeout_s: float, resolver: Any
    ) -> sender.Attempt:
        task = asyncio.create_task(resolver(target.host, target.port))
        await asyncio.sleep(0.05)
        seen.append((target.host, lookups.running("acme")))
        names.release.set()
        try:
            await task
        except OSError as exc:
            return sender.Attempt(sender.Outcome.failed, str(exc))
        return sender.Attempt(sender.Outcome.delivered, "204")

    policy = DeliveryPolicy(allow=NOTHING_ALLOWED, resolve_timeout_s=WAIT_S)
    dispatcher = CallbackDispatcher(None, {"acme": "s3cret"}, policy, post=post, lookups=lookups)  # type: ignore[arg-type]
    claim = CallbackAttempt(job_id="j1", url="https://hook.slow/x", tenant="acme", attempt=1, result={})
    outcome, detail = asyncio.run(dispatcher._attempt(claim))
    assert seen == [("hook.slow", 1)]
    assert outcome is sender.Outcome.failed and "Temporary failure" in detail


def test_a_batch_of_many_distinct_hosts_is_looked_up_without_refusals() -> None:
    """Review finding 5: 20 hosts at 0.2 s each, 2 at a time, take 2 s in all; each lookup's 1 s timeout counts
    from when it starts, so none is refused for having waited behind the others."""
    lookups = Lookups(per_tenant=2, lookup=lambda host, port: time.sleep(0.2) or PUBLIC)
    answers = RecentAnswers(lookups, timeout_s=1.0, queue_s=WAIT_S)

    async def scenario() -> list[Any]:
        hosts = [f"h{n}.example" for n in range(20)]
        return await asyncio.gather(*(answers.resolve("acme", h, 443) for h in hosts), return_exceptions=True)

    found = asyncio.run(scenario())
    print("refused:", [str(f) for f in found if isinstance(f, BaseException)][:3])
    assert found == [PUBLIC] * 20
