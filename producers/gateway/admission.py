"""Whether a tenant's request may go on: its rate limit, the queues' depth, its unfinished jobs, its callback URLs.

Each check raises `ApiError` (429 or 422) naming the limit; the blocking ones run in a worker thread.
"""

from __future__ import annotations

import asyncio
import functools

from greenq.producers.gateway.addresses import CallbackRefused, check_url
from greenq.producers.gateway.errors import ApiError
from greenq.producers.gateway.limits import allow_request
from greenq.producers.gateway.state import GatewayState
from greenq.producers.gateway.tenants import Tenant
from greenq.shared.job_types import JobType

NO_CALLBACK_SECRET = (
    "this tenant has no callback_secret to sign callbacks with; add one to its entry in the tenants "
    "file (`greenq gateway-key` makes one)"
)


def throttle(state: GatewayState, who: Tenant, cost: int = 1) -> None:
    """Count `cost` requests against the tenant's per-second limit."""
    if cost > who.rate_limit_per_s:  # could never fit in one second's window
        raise ApiError(
            422,
            "batch_over_rate_limit",
            f"a batch counts as one request per job; at most {who.rate_limit_per_s} per second for this tenant",
            [("jobs", f"has {cost} items; split it")],
        )
    if not allow_request(state.store, who.name, who.rate_limit_per_s, cost):
        raise ApiError(
            429, "rate_limited", f"over {who.rate_limit_per_s} requests per second", headers={"Retry-After": "1"}
        )


def admit(state: GatewayState, who: Tenant, types: list[JobType]) -> None:
    """Room for one job of each of `types`: the rate limit, each queue's depth and the tenant's unfinished jobs."""
    throttle(state, who, len(types))
    for job_type in dict.fromkeys(types):
        if state.depth(job_type) >= state.settings.gateway_max_queue_depth:
            raise ApiError(
                429, "queue_full", f"the {job_type} queue is full; retry later", headers={"Retry-After": "10"}
            )
    if not state.outstanding.has_room(who.name, len(types), who.max_outstanding):
        raise ApiError(
            429, "too_many_outstanding", f"over {who.max_outstanding} unfinished jobs", headers={"Retry-After": "5"}
        )


async def callback_problems(state: GatewayState, who: Tenant, urls: list[str | None]) -> dict[str, str | None]:
    """Why each distinct callback URL is refused (None: it is not), checked at once on the event loop.

    Lookups wait here, not in a worker thread: a tenant whose names resolve slowly holds only its own
    lookup slots (resolver.py), never the threads every tenant's requests run in.
    """
    wanted = list(dict.fromkeys(url for url in urls if url is not None))
    if not who.callback_secret:
        return dict.fromkeys(wanted, NO_CALLBACK_SECRET)
    resolver = functools.partial(state.answers.resolve, who.name)

    async def problem_of(url: str) -> str | None:
        try:
            await check_url(url, state.allow, resolver)
        except CallbackRefused as exc:
            return str(exc)
        return None

    return dict(zip(wanted, await asyncio.gather(*map(problem_of, wanted)), strict=True))
