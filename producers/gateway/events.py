"""`GET /v1/jobs/{id}/events`: a job's token stream as Server-Sent Events, for a chat widget's EventSource.

Events, each with the stream entry's id (what a reconnecting EventSource sends back as `Last-Event-ID`):

    event: status   data: the job's view (queued, deferred or running)   first, once per connection
    event: start    data: {}               a computation begins: clear any text shown (a second one
                                           follows a worker's crash, and sends its text again)
    event: text     data: {"text": "..."}  text to append
    event: end      data: {}               the text is complete
    event: result   data: the job's view with its result; id "result"; the stream then closes

A connection lasts at most `max_s`; the browser reconnects with `Last-Event-ID` and resumes
after that entry. A reconnect after the result gets 204 No Content, which tells an EventSource to
stop. Connections do not poll: the gateway's one StreamHub (stream_hub.py) follows every open
stream, and `OpenStreams` caps how many each tenant holds open.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from greenq.producers.gateway.schemas import JobView
from greenq.producers.gateway.stream_hub import StreamHub
from greenq.shared.token_stream import FIRST_ID, StreamEntry, TokenStreams

RESULT_EVENT_ID = "result"
ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
READ_COUNT = 512
KEEPALIVE_S = 15.0
RETRY_MS = 1000


def resume_after(last_event_id: str | None) -> str:
    """Where a (re)connection starts in the stream: after the entry it last saw, else from the start."""
    if last_event_id and ENTRY_ID.fullmatch(last_event_id):
        return last_event_id
    return FIRST_ID


def sse(event: str, data: str, event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


def entry_event(entry: StreamEntry) -> str:
    return sse(entry.kind, json.dumps({"text": entry.text}) if entry.kind == "text" else "{}", entry.entry_id)


def replay(streams: TokenStreams, job_id: str, after: str) -> list[StreamEntry]:
    """Every entry after `after` (blocking: run in a thread)."""
    entries: list[StreamEntry] = []
    while chunk := streams.read(job_id, after, count=READ_COUNT):
        entries += chunk
        after = chunk[-1].entry_id
        if len(chunk) < READ_COUNT:
            break
    return entries


async def job_events(
    hub: StreamHub,
    streams: TokenStreams,
    view: Callable[[str], JobView],
    job_id: str,
    after: str,
    max_s: float,
) -> AsyncIterator[str]:
    """The events for one connection; `view(job_id)` is the job's current JobView (blocking: run in a thread)."""
    started = time.monotonic()
    current = await asyncio.to_thread(view, job_id)
    yield f"retry: {RETRY_MS}\n\n"
    yield sse("status", current.model_dump_json(exclude_none=True))
    if current.result is None:
        follower = hub.follow(job_id, after)
        try:
            while True:
                left_s = max_s - (time.monotonic() - started)
                if left_s <= 0:
                    return  # the connection's time is up: the client resumes with Last-Event-ID
                update = await follower.next(min(KEEPALIVE_S, left_s))
                if update is None:
                    yield ": keepalive\n\n"
                    continue
                entries, finished = update
                for entry in entries:
                    yield entry_event(entry)
                if finished:
                    break
        finally:
            hub.leave(follower)
        after = follower.after
        current = await asyncio.to_thread(view, job_id)
    for entry in await asyncio.to_thread(replay, streams, job_id, after):  # what was written just before the result
        yield entry_event(entry)
    yield sse("result", current.model_dump_json(exclude_none=True), RESULT_EVENT_ID)


async def held(events: AsyncIterator[str], release: Callable[[], None]) -> AsyncIterator[str]:
    """`events`, giving back its stream slot when it ends (also when the client goes away mid-stream)."""
    try:
        async for chunk in events:
            yield chunk
    finally:
        release()


class OpenStreams:
    """Event streams open in this gateway process, per tenant, at most `cap` each.

    Used on the event loop only (no lock). `take` returns the slot's release (safe to call twice), or None
    when the tenant is at its cap.
    """

    def __init__(self, cap: int, gauge: Any = None) -> None:
        self.cap = cap
        self._open: Counter[str] = Counter()
        self._gauge = gauge  # a Gauge of all open streams, or None

    def take(self, tenant: str) -> Callable[[], None] | None:
        if self._open[tenant] >= self.cap:
            return None
        self._open[tenant] += 1
        self._count(1)
        given_back = False

        def release() -> None:
            nonlocal given_back
            if not given_back:
                given_back = True
                self._open[tenant] -= 1
                if self._open[tenant] <= 0:
                    del self._open[tenant]
                self._count(-1)

        return release

    def open(self, tenant: str) -> int:
        return self._open[tenant]

    def _count(self, change: int) -> None:
        if self._gauge is not None:
            self._gauge.inc(change)
