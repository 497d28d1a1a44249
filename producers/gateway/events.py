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
stop. The stream is polled (one XREAD per connection per `poll_s`, off the event loop).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable

from producers.gateway.schemas import JobView
from shared.token_stream import FIRST_ID, StreamEntry, TokenStreams

RESULT_EVENT_ID = "result"
ENTRY_ID = re.compile(r"\d{1,20}-\d{1,20}")
POLL_S = 0.1
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


async def job_events(
    streams: TokenStreams,
    view: Callable[[str], JobView],
    job_id: str,
    after: str,
    max_s: float,
    poll_s: float = POLL_S,
) -> AsyncIterator[str]:
    """The events for one connection; `view(job_id)` is the job's current JobView (blocking: run in a thread)."""
    started = time.monotonic()
    last_sent = started
    current = await asyncio.to_thread(view, job_id)
    yield f"retry: {RETRY_MS}\n\n"
    yield sse("status", current.model_dump_json(exclude_none=True))
    while time.monotonic() - started < max_s:
        entries = await asyncio.to_thread(streams.read, job_id, after)
        for entry in entries:
            after = entry.entry_id
            yield entry_event(entry)
        if not entries:
            current = await asyncio.to_thread(view, job_id)
            if current.result is not None:
                rest = await asyncio.to_thread(streams.read, job_id, after)  # written just before the result
                for entry in rest:
                    yield entry_event(entry)
                yield sse("result", current.model_dump_json(exclude_none=True), RESULT_EVENT_ID)
                return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                yield ": keepalive\n\n"
                last_sent = time.monotonic()
            await asyncio.sleep(poll_s)
        else:
            last_sent = time.monotonic()
