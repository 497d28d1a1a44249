"""GET /healthz (the process answers), /readyz (and reaches the broker) and /metrics (Prometheus)."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import generate_latest

from greenq.producers.gateway.deps import State

router = APIRouter()


@router.get("/healthz", response_class=PlainTextResponse)
async def healthz() -> str:
    return "ok\n"


@router.get("/readyz", response_class=PlainTextResponse, responses={503: {}})
def readyz(state: State) -> Response:
    try:
        state.broker.ping()
    except redis.RedisError:
        return PlainTextResponse("broker unreachable\n", 503)
    return PlainTextResponse("ok\n")


@router.get("/metrics", response_class=PlainTextResponse)
def serve_metrics(state: State) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type="text/plain; version=0.0.4")
