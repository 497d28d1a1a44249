"""For the demo and the tests: use the Redis at a URL, or start a local `redis-server` there."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import redis

from shared.errors import BrokerUnavailable
from shared.redact import redact_url

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s).ping())
    except (redis.RedisError, OSError):
        return False


@dataclass
class LocalRedis:
    """A redis-server this process started; `stop()` ends it."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_redis(port: int, wait_s: float = 10.0, databases: int = 16) -> LocalRedis:
    """Start `redis-server` on 127.0.0.1:`port` (no persistence, `noeviction`) and wait for it."""
    binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if binary is None:
        raise BrokerUnavailable("redis-server is not installed: run `bash ops/dev/setup.sh` or `apt-get install redis-server`")
    data_dir = tempfile.mkdtemp(prefix="greenq-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction", "--databases", str(databases), "--dir", data_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if redis_answers(url, 0.2):
            return LocalRedis(url, process, data_dir)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    shutil.rmtree(data_dir, ignore_errors=True)
    raise BrokerUnavailable(f"redis-server did not start on port {port}")


def ensure_redis(url: str) -> LocalRedis | None:
    """Return None if Redis answers at `url`; start one there if the URL is local; else raise."""
    if redis_answers(url):
        return None
    parsed = urlparse(url)
    if parsed.scheme != "redis" or (parsed.hostname or "") not in LOCAL_HOSTS:
        raise BrokerUnavailable(f"nothing answers at {redact_url(url)}, and it is not a local address to start Redis on")
    return start_redis(parsed.port or 6379)
