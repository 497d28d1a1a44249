"""One callback attempt: resolve, check, connect to the checked address, POST, read the status line.

The whole attempt has one deadline (a slow-drip endpoint cannot stretch it one byte at a time), redirects
are never followed (a 3xx is a failed attempt), and TLS verifies the URL's host name although the socket
goes to the address that was checked.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from greenq.producers.gateway.addresses import (
    AllowList,
    AsyncResolver,
    CallbackRefused,
    CallbackTarget,
    check_addresses,
)
from greenq.producers.gateway.resolver import Lookups

MAX_STATUS_LINE_BYTES = 8192


class Outcome(enum.Enum):
    delivered = "delivered"  # a 2xx answer
    failed = "failed"  # worth another attempt: unreachable, slow, an error or a redirect
    refused = "refused"  # the address is not allowed (any more): never worth another attempt


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    detail: str


async def post(
    target: CallbackTarget,
    body: bytes,
    headers: Mapping[str, str],
    allow: AllowList,
    timeout_s: float,
    resolver: AsyncResolver | None = None,
    tls: ssl.SSLContext | None = None,
) -> Attempt:
    """POST `body` to `target` within `timeout_s` in all.

    The gateway passes its tenant-bounded `resolver`; without one, the name is looked up in a thread of its own.
    """
    resolver = resolver or functools.partial(Lookups(per_tenant=1).resolve, "", timeout_s=timeout_s)
    try:
        status = await asyncio.wait_for(_post(target, body, headers, allow, resolver, tls), timeout_s)
    except CallbackRefused as exc:
        return Attempt(Outcome.refused, str(exc))
    except asyncio.TimeoutError:
        return Attempt(Outcome.failed, f"no answer within {timeout_s:g} s")
    except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        return Attempt(Outcome.failed, f"{type(exc).__name__}: {exc}")
    if 200 <= status < 300:
        return Attempt(Outcome.delivered, str(status))
    if 300 <= status < 400:
        return Attempt(Outcome.failed, f"{status} (redirects are not followed)")
    return Attempt(Outcome.failed, str(status))


async def _post(
    target: CallbackTarget,
    body: bytes,
    headers: Mapping[str, str],
    allow: AllowList,
    resolver: AsyncResolver,
    tls: ssl.SSLContext | None,
) -> int:
    try:
        resolved = await resolver(target.host, target.port)
    except OSError as exc:
        raise OSError(f"{target.host} does not resolve ({exc})") from None
    address = str(check_addresses(target.host, resolved, allow)[0])
    secure = target.scheme == "https"
    reader, writer = await asyncio.open_connection(
        address,
        target.port,
        ssl=(tls or ssl.create_default_context()) if secure else None,
        server_hostname=target.host if secure else None,
        limit=MAX_STATUS_LINE_BYTES,
    )
    try:
        lines = [
            f"POST {target.request_target} HTTP/1.1",
            f"Host: {target.host_header}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            "User-Agent: greenq-gateway",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body)
        await writer.drain()
        return parse_status_line(await reader.readuntil(b"\n"))
    finally:
        writer.transport.abort()  # no lingering close handshake with a peer that may be stalling


def parse_status_line(line: bytes) -> int:
    """The status code of `HTTP/1.1 204 No Content`; ValueError for anything else."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError(f"not an HTTP/1.x status line: {line[:80]!r}")
    return int(parts[1])
