"""A tiny in-memory Redis for unit tests: the commands greenq's own modules send, and their Lua scripts.

Values come back as bytes, as from redis-py without `decode_responses`. Keys expire on the
`clock` given, so a test moves time on instead of sleeping. A few of greenq's Lua scripts
(`shared/scripts/`) are implemented by what they mean, looked up by their text; a script the
fake does not know fails loudly rather than doing nothing. `fail_next(n)` makes the next n commands raise
`redis.ConnectionError`, as when Redis goes away.

>>> clock = Clock()
>>> leases = JobLeases(FakeRedis(clock), ttl_s=30)
>>> clock.now += 31                                  # the lease has lapsed
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from greenq.shared import scripts

Key = str | bytes
Script = Callable[["FakeRedis", list[str], list[bytes]], Any]


class Clock:
    """Time that moves only when a test moves it."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key(key: Key) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


class FakeRedis:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._strings: dict[str, bytes] = {}
        self._hashes: dict[str, dict[bytes, bytes]] = {}
        self._expires_at: dict[str, float] = {}
        self._lock = threading.RLock()
        self._failures = 0
        self.published: list[tuple[str, bytes]] = []
        self.commands = 0

    def fail_next(self, count: int) -> None:
        """The next `count` commands (a pipeline's execute counts once) raise redis.ConnectionError."""
        self._failures = count

    def _command(self) -> None:
        self.commands += 1
        if self._failures:
            self._failures -= 1
            raise redis.ConnectionError("fake Redis: connection refused")

    def _expire_due(self, key: str) -> None:
        at = self._expires_at.get(key)
        if at is not None and self._clock() >= at:
            self._drop(key)

    def _drop(self, key: str) -> bool:
        self._expires_at.pop(key, None)
        return self._strings.pop(key, None) is not None or self._hashes.pop(key, None) is not None

    # -- strings --------------------------------------------------------------------------

    def get(self, key: Key) -> bytes | None:
        with self._lock:
            self._command()
            return self._get(_key(key))

    def _get(self, key: str) -> bytes | None:
        self._expire_due(key)
        return self._strings.get(key)

    def set(
        self, key: Key, value: Any, ex: float | None = None, px: int | None = None, nx: bool = False
    ) -> bool | None:
        with self._lock:
            self._command()
            return self._set(_key(key), value, ex=ex, px=px, nx=nx)

    def _set(
        self, key: str, value: Any, ex: float | None = None, px: int | None = None, nx: bool = False
    ) -> bool | None:
        self._expire_due(key)
        if nx and (key in self._strings or key in self._hashes):
            return None
        self._drop(key)
        self._strings[key] = _bytes(value)
        if ex is not None:
            self._expires_at[key] = self._clock() + float(ex)
        elif px is not None:
            self._expires_at[key] = self._clock() + int(px) / 1000
        return True

    def setex(self, key: Key, seconds: float, value: Any) -> bool | None:
        return self.set(key, value, ex=seconds)

    def delete(self, *keys: Key) -> int:
        with self._lock:
            self._command()
            return self._delete(*(_key(k) for k in keys))

    def _delete(self, *keys: str) -> int:
        count = 0
        for key in keys:
            self._expire_due(key)
            count += self._drop(key)
        return count

    def incr(self, key: Key, amount: int = 1) -> int:
        with self._lock:
            self._command()
            name = _key(key)
            value = int(self._get(name) or 0) + amount
            self._strings[name] = _bytes(value)
            return value

    def decr(self, key: Key, amount: int = 1) -> int:
        return self.incr(key, -amount)

    def expire(self, key: Key, seconds: float) -> bool:
        with self._lock:
            self._command()
            return self._pexpire(_key(key), float(seconds) * 1000)

    def _pexpire(self, key: str, ms: float) -> bool:
        self._expire_due(key)
        if key not in self._strings and key not in self._hashes:
            return False
        self._expires_at[key] = self._clock() + ms / 1000
        return True

    def ttl(self, key: Key) -> float:
        """Seconds left (not rounded), -1 without expiry, -2 for no key."""
        with self._lock:
            name = _key(key)
            self._expire_due(name)
            if name not in self._strings and name not in self._hashes:
                return -2
            at = self._expires_at.get(name)
            return -1 if at is None else at - self._clock()

    def publish(self, channel: Key, message: Any) -> int:
        with self._lock:
            self._command()
            self.published.append((_key(channel), _bytes(message)))
            return 0

    # -- hashes ---------------------------------------------------------------------------

    def _hash(self, key: Key) -> dict[bytes, bytes]:
        name = _key(key)
        self._expire_due(name)
        return self._hashes.setdefault(name, {})

    def hset(self, key: Key, field: Any, value: Any) -> int:
        with self._lock:
            self._command()
            table = self._hash(key)
            new = _bytes(field) not in table
            table[_bytes(field)] = _bytes(value)
            return int(new)

    def hget(self, key: Key, field: Any) -> bytes | None:
        with self._lock:
            self._command()
            return self._hash(key).get(_bytes(field))

    def hdel(self, key: Key, *fields: Any) -> int:
        with self._lock:
            self._command()
            table = self._hash(key)
            return sum(table.pop(_bytes(f), None) is not None for f in fields)

    def hvals(self, key: Key) -> list[bytes]:
        with self._lock:
            self._command()
            return list(self._hash(key).values())

    def hlen(self, key: Key) -> int:
        with self._lock:
            self._command()
            return len(self._hash(key))

    # -- scripts and pipelines ------------------------------------------------------------

    def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        with self._lock:
            self._command()
            run = SCRIPTS.get(script)
            if run is None:
                raise NotImplementedError(f"fake Redis: no implementation of the script {script.strip()[:60]!r}")
            keys = [_key(k) for k in keys_and_args[:numkeys]]
            return run(self, keys, [_bytes(a) for a in keys_and_args[numkeys:]])

    def register_script(self, script: str) -> RegisteredScript:
        return RegisteredScript(self, script)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class RegisteredScript:
    """What `register_script` returns: call it with keys, args and optionally a pipeline."""

    def __init__(self, redis_: FakeRedis, script: str) -> None:
        self._redis = redis_
        self._script = script

    def __call__(self, keys: Sequence[Key] = (), args: Sequence[Any] = (), client: Any = None) -> Any:
        return (client or self._redis).eval(self._script, len(keys), *keys, *args)


class FakePipeline:
    """Queues commands, runs them in order on `execute` (atomically, as MULTI/EXEC would)."""

    def __init__(self, redis_: FakeRedis) -> None:
        self._redis = redis_
        self._queued: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __enter__(self) -> FakePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queued.clear()

    def __getattr__(self, name: str) -> Callable[..., FakePipeline]:
        if name.startswith("_") or not callable(getattr(self._redis, name, None)):
            raise AttributeError(name)

        def queue(*args: Any, **kwargs: Any) -> FakePipeline:
            self._queued.append((name, args, kwargs))
            return self

        return queue

    def execute(self) -> list[Any]:
        with self._redis._lock:
            self._redis._command()
            queued, self._queued = self._queued, []
            failures, self._redis._failures = self._redis._failures, 0  # one round trip: already counted
            try:
                return [getattr(self._redis, name)(*args, **kwargs) for name, args, kwargs in queued]
            finally:
                self._redis._failures = failures


# -- greenq's Lua scripts, by meaning ---------------------------------------------------------


def _release_if_held(fake: FakeRedis, keys: list[str], args: list[bytes]) -> int:
    """DEL the key only if it still holds ARGV[1] (a lease's token, an idempotency reservation's value)."""
    return fake._delete(keys[0]) if fake._get(keys[0]) == args[0] else 0


def _renew_lease(fake: FakeRedis, keys: list[str], args: list[bytes]) -> int:
    return int(fake._pexpire(keys[0], int(args[1]))) if fake._get(keys[0]) == args[0] else 0


def _store_once(fake: FakeRedis, keys: list[str], args: list[bytes]) -> int:
    if fake._set(keys[0], args[0], ex=int(args[1]), nx=True):
        fake.published.append((keys[0], args[0]))
        return 1
    return 0


def _confirm_reservation(fake: FakeRedis, keys: list[str], args: list[bytes]) -> int:
    value = fake._get(keys[0])
    if value == args[0] or value is None:
        fake._set(keys[0], args[1], ex=int(args[2]))
        return 1
    return 0


SCRIPTS: dict[str, Script] = {
    scripts.source("renew_job_lease"): _renew_lease,
    scripts.source("release_job_lease"): _release_if_held,
    scripts.source("store_result_once"): _store_once,
    scripts.source("confirm_idempotency_key"): _confirm_reservation,
    scripts.source("release_idempotency_key"): _release_if_held,
}
