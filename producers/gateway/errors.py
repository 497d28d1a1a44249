"""The API's error bodies, `{"error": {code, message, fields}}`, and the handlers that answer with them."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import KombuError
from starlette.exceptions import HTTPException as StarletteHTTPException

from greenq.shared.errors import BrokerUnavailable
from greenq.shared.redact import redact_text

# What the queue's outage looks like from here, whichever layer noticed it: each is answered 503.
UNAVAILABLE: tuple[type[Exception], ...] = (BrokerUnavailable, redis.RedisError, KombuError, OSError)


class ApiError(Exception):
    """A refusal with its status, code, message, field-level problems and headers; routes raise it."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[tuple[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields = fields or []
        self.headers = headers or {}


def error_body(code: str, message: str, fields: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "fields": [{"field": f, "problem": p} for f, p in (fields or [])]}
    }


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, exc.fields), exc.status, headers=exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
    return JSONResponse(error_body("invalid_request", "the request does not match the API", fields), 422)


async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body("http_error", str(exc.detail)), exc.status_code)


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        error_body("broker_unavailable", "the job queue is unreachable; retry shortly"),
        503,
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(error_body("internal", redact_text(f"{type(exc).__name__}: {exc}")), 500)


def install_error_handlers(app: FastAPI) -> None:
    """Every error the API answers, as an error body: refusals, bad requests, an unreachable queue, a bug."""
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(RequestValidationError)(_invalid)
    app.exception_handler(StarletteHTTPException)(_http)
    for unavailable in UNAVAILABLE:
        app.exception_handler(unavailable)(_unavailable)
    app.exception_handler(Exception)(_unexpected)
