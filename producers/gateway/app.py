"""The HTTP API: thin routes over the Python client, with tenants, limits and JSON errors.

POST   /v1/jobs/{type}     one job → 202 {id, status, links}; one route per job type, each with its own schema
POST   /v1/jobs:batch      many jobs → 202, one entry per job (id or error)          (routes_submit.py)
GET    /v1/jobs/{id}       status and result; ?wait=N long-polls up to N seconds       (routes_jobs.py)
GET    /v1/jobs/{id}/events  its text as it decodes, then its result: Server-Sent Events (routes_events.py)
DELETE /v1/jobs/{id}       cancel a job no worker has started                         (routes_jobs.py)
GET    /healthz /readyz /metrics /openapi.json                                         (routes_health.py)

Routes read their collaborators from one `GatewayState` (state.py) through dependencies (deps.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.middleware.base import BaseHTTPMiddleware

from greenq.producers.gateway import routes_events, routes_health, routes_jobs
from greenq.producers.gateway.bodylimit import BodyLimit
from greenq.producers.gateway.errors import error_body, install_error_handlers
from greenq.producers.gateway.metrics import GatewayMetrics
from greenq.producers.gateway.routes_submit import ANY_TYPE_PATH, submit_router, typed_path
from greenq.producers.gateway.state import GatewayState
from greenq.producers.gateway.tenants import TenantRegistry
from greenq.shared import job_types
from greenq.shared.settings import Settings

NextHandler = Callable[[Request], Awaitable[Response]]


def create_app(settings: Settings, tenants: TenantRegistry, dispatch_callbacks: bool = True) -> FastAPI:
    """The gateway for the job types registered now; `dispatch_callbacks=False` sends no callbacks."""
    state = GatewayState.build(settings, tenants, dispatch_callbacks)
    specs = job_types.specs()
    app = FastAPI(
        title="greenq",
        version="1",
        description="LLM jobs for online stores, with energy receipts.",
        lifespan=_lifespan,
    )
    app.state.gateway = state
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.gateway_max_body_bytes,
        refusal=lambda n: error_body("body_too_large", f"request body over {n} bytes"),
    )
    app.add_middleware(BaseHTTPMiddleware, dispatch=_observer(state.metrics, {typed_path(s) for s in specs}))
    install_error_handlers(app)
    app.include_router(submit_router(specs))
    app.include_router(routes_jobs.router)
    app.include_router(routes_events.router)
    app.include_router(routes_health.router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: GatewayState = app.state.gateway
    state.start()
    try:
        yield
    finally:
        state.stop()


def _observer(
    metrics: GatewayMetrics, typed_paths: Collection[str]
) -> Callable[[Request, NextHandler], Awaitable[Response]]:
    """Middleware counting each request and timing it, by the route it matched."""

    async def observe(request: Request, call_next: NextHandler) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        path = ANY_TYPE_PATH if path in typed_paths else path  # one series for every type's submissions
        metrics.requests.labels(path, request.method, str(response.status_code)).inc()
        metrics.latency.labels(path).observe(time.perf_counter() - start)
        return response

    return observe
