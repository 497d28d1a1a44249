"""Refuse request bodies over the limit with 413, before the app sees them, chunked ones included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Reads the body first (at most `max_bytes` of it), then hands the app a replay of it.

    Reading it here, rather than counting as the app reads, matters: the framework turns any error raised
    while it reads a body into a 400, so a limit enforced from inside its read could never answer 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, refusal: Callable[[int], dict[str, Any]]) -> None:
        self.app, self.max_bytes, self.refusal = app, max_bytes, refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                await self._refuse(scope, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(self.refusal(self.max_bytes), 413, headers={"Connection": "close"})
        await response(scope, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}
