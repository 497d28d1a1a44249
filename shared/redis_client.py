"""redis-py clients for greenq's own keys, with the same TLS and Sentinel rules as Celery's connections.

A `sentinel://host:26379;sentinel://host2:26379/0` URL names the sentinels, not Redis: the
client asks them for the current master of `sentinel_master` (kombu's and Celery's
`master_name`) on each new connection, so it follows a failover. The first sentinel URL's
password, user name and database are the master's, as in Celery.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import redis
from redis.sentinel import Sentinel

DEFAULT_SENTINEL_MASTER = "mymaster"
DEFAULT_SENTINEL_PORT = 26379


def is_sentinel_url(url: str) -> bool:
    return url.startswith("sentinel://")


def tls_options(url: str, ca_file: Path | None) -> dict[str, Any] | None:
    """For rediss:// URLs: verify the server's certificate (against `ca_file` if given)."""
    if not url.startswith("rediss://"):
        return None
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    return options


def sentinel_params(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """`sentinel://:pw@h1:26379/2;sentinel://h2` → ([("h1", 26379), ("h2", 26379)], {"password": "pw", "db": 2})."""
    parts = [urlparse(part) for part in url.split(";") if part.strip()]
    hosts = [(p.hostname or "127.0.0.1", p.port or DEFAULT_SENTINEL_PORT) for p in parts]
    first = parts[0]
    master: dict[str, Any] = {"db": int(first.path.strip("/") or 0)}
    if first.password is not None:
        master["password"] = unquote(first.password)
    if first.username:
        master["username"] = unquote(first.username)
    return hosts, master


def redis_client(
    url: str, ca_file: Path | None = None, timeout_s: float = 5.0, sentinel_master: str = DEFAULT_SENTINEL_MASTER
) -> redis.Redis:
    """A client for `url`; for a sentinel:// URL, one that always talks to the current master."""
    kwargs: dict[str, Any] = {"socket_connect_timeout": timeout_s, "socket_timeout": timeout_s}
    if is_sentinel_url(url):
        hosts, master = sentinel_params(url)
        client: redis.Redis = Sentinel(hosts, **kwargs).master_for(sentinel_master, redis_class=redis.Redis, **master)
        return client
    kwargs.update(tls_options(url, ca_file) or {})
    return redis.Redis.from_url(url, **kwargs)
