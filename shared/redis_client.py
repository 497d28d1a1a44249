"""redis-py clients for greenq's own keys, with the same TLS rules as Celery's connections."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import redis


def tls_options(url: str, ca_file: Path | None) -> dict[str, Any] | None:
    """For rediss:// URLs: verify the server's certificate (against `ca_file` if given)."""
    if not url.startswith("rediss://"):
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    return options


def redis_client(url: str, ca_file: Path | None = None, timeout_s: float = 5.0) -> redis.Redis:
    kwargs: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    kwargs.update(tls_options(url, ca_file) or {})
    return redis.Redis.from_url(url, **kwargs)
