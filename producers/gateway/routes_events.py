"""GET /v1/jobs/{id}/events: the job's text as it decodes, then its result, as Server-Sent Events (events.py)."""

from __future__ import annotations

import functools
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from greenq.producers.gateway.deps import Caller, JobIdPath, State
from greenq.producers.gateway.errors import ApiError
from greenq.producers.gateway.events import RESULT_EVENT_ID, held, job_events, resume_after
from greenq.producers.gateway.views import look_up, view

router = APIRouter()


@router.get(
    "/v1/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, 204: {}, 401: {}, 404: {}, 429: {}, 503: {}},
)
async def job_events_route(
    job_id: JobIdPath,
    who: Caller,
    state: State,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> Response:
    """The job's text as it decodes, as Server-Sent Events (see producers/gateway/events.py)."""
    current = await run_in_threadpool(look_up, state, who, job_id)
    if last_event_id == RESULT_EVENT_ID and current.result is not None:
        return Response(status_code=204)  # the EventSource saw the result: stop reconnecting
    release = state.open_streams.take(who.name)
    if release is None:
        raise ApiError(
            429,
            "too_many_streams",
            f"this tenant already has {state.open_streams.cap} event streams open on this gateway "
            "(GREENQ_GATEWAY_MAX_STREAMS_PER_TENANT); close one, or long-poll GET /v1/jobs/{id}?wait=N",
            headers={"Retry-After": "5"},
        )
    after = resume_after(last_event_id)
    current_view = functools.partial(view, state)
    events = job_events(state.hub, state.streams, current_view, job_id, after, state.settings.gateway_max_wait_s)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no proxy buffering
    # The background task gives the slot back too if the client left before the body started.
    return StreamingResponse(
        held(events, release), media_type="text/event-stream", headers=headers, background=BackgroundTask(release)
    )
