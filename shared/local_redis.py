"""For the demo and the tests: use the Redis at a URL, or start a local `redis-server` there."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlparse

import redis

from greenq.shared.errors import BrokerUnavailable
from greenq.shared.redact import redact_url
from greenq.shared.redis_client import DEFAULT_SENTINEL_MASTER, redis_client

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def redis_answers(url: str, timeout_s: float = 1.0, sentinel_master: str = DEFAULT_SENTINEL_MASTER) -> bool:
    try:
        return bool(redis_client(url, timeout_s=timeout_s, sentinel_master=sentinel_master).ping())
    except (redis.RedisError, OSError):
        return False


def _binary() -> str:
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise BrokerUnavailable(
            "redis-server is not installed: run `bash ops/dev/setup.sh` or `apt-get install redis-server`"
        )
    return binary


@dataclass
class LocalRedis:
    """A redis-server this process started (no persistence unless asked, `noeviction`)."""

    port: int
    databases: int = 16
    persistent: bool = False
    extra_args: Sequence[str] = ()
    data_dir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="greenq-redis-"))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait_s: float = 10.0) -> LocalRedis:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [
                _binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *persistence,
                "--maxmemory-policy",
                "noeviction",
                "--databases",
                str(self.databases),
                "--dir",
                self.data_dir,
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.extra_args or redis_answers(self.url, 0.2):  # TLS or auth: the caller checks
                return self
            time.sleep(0.05)
        self.process.kill()
        raise BrokerUnavailable(f"redis-server did not start on port {self.port}")

    def halt(self) -> None:
        """Stop the server (it saves its append-only file first when persistent)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, databases: int = 16, persistent: bool = False, extra_args: Sequence[str] = ()) -> LocalRedis:
    """Start `redis-server` on 127.0.0.1:`port` and wait for it."""
    return LocalRedis(port, databases, persistent, extra_args).start()


def ensure_redis(url: str, sentinel_master: str = DEFAULT_SENTINEL_MASTER) -> LocalRedis | None:
    """Return None if Redis answers at `url`; start one there if the URL is local; else raise."""
    if redis_answers(url, sentinel_master=sentinel_master):
        return None
    parsed = urlparse(url)
    if parsed.scheme != "redis" or (parsed.hostname or "") not in LOCAL_HOSTS:
        raise BrokerUnavailable(
            f"nothing answers at {redact_url(url)}, and it is not a local address to start Redis on"
        )
    return start_redis(parsed.port or 6379)
