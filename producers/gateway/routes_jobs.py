"""GET /v1/jobs/{id} (status and result; ?wait=N long-polls) and DELETE /v1/jobs/{id} (cancel)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from greenq.producers.gateway.deps import Caller, JobIdPath, State
from greenq.producers.gateway.schemas import JobView
from greenq.producers.gateway.views import cancel, look_up, view

router = APIRouter()


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses={401: {}, 404: {}, 429: {}, 503: {}})
async def get_job(
    job_id: JobIdPath,
    who: Caller,
    state: State,
    wait: Annotated[float, Query(ge=0, le=600, description="long-poll up to this many seconds")] = 0,
) -> JobView:
    current = await run_in_threadpool(look_up, state, who, job_id)
    wait_s = min(wait, state.settings.gateway_max_wait_s)
    if current.result is None and wait_s > 0:  # waits on the event loop, holding no thread
        await state.waiter.wait(job_id, wait_s)
        current = await run_in_threadpool(view, state, job_id)
    return current


@router.delete("/v1/jobs/{job_id}", response_model=JobView, responses={401: {}, 404: {}, 409: {}, 429: {}, 503: {}})
def cancel_job(job_id: JobIdPath, who: Caller, state: State) -> JobView:
    return cancel(state, who, job_id)
