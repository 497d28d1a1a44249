"""POST /v1/jobs:batch and POST /v1/jobs/{type}: one route per registered job type, each with its own schema."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from greenq.producers.gateway.admission import callback_problems
from greenq.producers.gateway.deps import Caller, IdempotencyHeader, JobTypePath, State
from greenq.producers.gateway.schemas import Accepted, BatchAccepted, BatchRequest, SubmitRequest, submit_request_for
from greenq.producers.gateway.state import GatewayState
from greenq.producers.gateway.submission import admit_batch, admit_one, enqueue_batch, enqueue_one
from greenq.producers.gateway.tenants import Tenant
from greenq.shared.job_types import JobType, JobTypeSpec

ANY_TYPE_PATH = "/v1/jobs/{job_type}"
SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {401: {}, 409: {}, 413: {}, 422: {}, 429: {}, 503: {}}


def typed_path(spec: JobTypeSpec[Any]) -> str:
    return f"/v1/jobs/{spec.name}"


async def submit(state: GatewayState, job_type: JobType, body: SubmitRequest, who: Tenant, key: str | None) -> Accepted:
    await run_in_threadpool(admit_one, state, job_type, body, who, key)
    problems = await callback_problems(state, who, [body.callback_url])
    return await run_in_threadpool(enqueue_one, state, job_type, body, who, key, problems)


async def submit_batch(body: BatchRequest, who: Caller, state: State) -> BatchAccepted:
    await run_in_threadpool(admit_batch, state, body, who)
    problems = await callback_problems(state, who, [item.callback_url for item in body.jobs])
    return await run_in_threadpool(enqueue_batch, state, body, who, problems)


async def submit_any(
    job_type: JobTypePath, body: SubmitRequest, who: Caller, state: State, idempotency_key: IdempotencyHeader = None
) -> Accepted:
    return await submit(state, job_type, body, who, idempotency_key)


def _add_typed_route(router: APIRouter, spec: JobTypeSpec[Any]) -> None:
    async def submit_typed(
        body: SubmitRequest, who: Caller, state: State, idempotency_key: IdempotencyHeader = None
    ) -> Accepted:
        return await submit(state, spec.name, body, who, idempotency_key)

    # FastAPI takes the body's schema from the annotation: this type's model documents `job` as its payload.
    submit_typed.__annotations__["body"] = submit_request_for(spec)
    router.post(
        typed_path(spec),
        status_code=202,
        response_model=Accepted,
        responses=SUBMIT_RESPONSES,
        operation_id=f"submit_{spec.name}",
        summary=f"Submit a {spec.name} job",
        description=f"{spec.summary[0].upper()}{spec.summary[1:]}.",
    )(submit_typed)


def submit_router(specs: Iterable[JobTypeSpec[Any]]) -> APIRouter:
    """The submit routes for the job types registered now; each type's route comes before the catch-all."""
    router = APIRouter()
    router.post(
        "/v1/jobs:batch",
        status_code=202,
        response_model=BatchAccepted,
        responses={401: {}, 413: {}, 422: {}, 429: {}, 503: {}},
    )(submit_batch)
    for spec in specs:
        _add_typed_route(router, spec)
    router.post(
        ANY_TYPE_PATH,
        status_code=202,
        response_model=Accepted,
        responses=SUBMIT_RESPONSES,
        include_in_schema=False,  # documented per type above; this route answers 422 for unknown types
    )(submit_any)
    return router
