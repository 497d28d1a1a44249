"""What a route declares it needs: the gateway's state, the calling tenant, and the typed path and header values."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from greenq.producers.gateway.errors import ApiError
from greenq.producers.gateway.state import GatewayState
from greenq.producers.gateway.tenants import Tenant
from greenq.shared.delivery import IdempotencyKey
from greenq.shared.job_types import KnownJobType


async def gateway_state(request: Request) -> GatewayState:
    """The state `create_app` stored on the app (async: no thread is taken to read it)."""
    state: GatewayState = request.app.state.gateway
    return state


State = Annotated[GatewayState, Depends(gateway_state)]


def caller(
    state: State,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Tenant:
    """The tenant whose API key the request carries (`Authorization: Bearer <key>` or `X-Api-Key`); else 401."""
    key = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
    found = state.tenants.authenticate(key) if key else None
    if found is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return found


Caller = Annotated[Tenant, Depends(caller)]
JobTypePath = Annotated[KnownJobType, Path(description="a registered job type")]
IdempotencyHeader = Annotated[IdempotencyKey | None, Header()]
JobIdPath = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
