"""The dead-letter store: messages and jobs greenq gave up on, each with its reason.

A Redis hash `greenq:dead` maps a record id to a JSON record, and `greenq:dead:at` indexes the ids
by when they were written. Records hold the raw body (truncated) so an operator can inspect,
retry (`greenq dlq retry`) or purge them.

The store is bounded: every write (one script, `scripts/add_dead_letter.lua`) drops records
older than `retention_s` and then the oldest beyond `max_records`, and counts what it dropped in
`greenq:dead:dropped`; the keys expire `retention_s` after the last write. A poison producer
cannot fill Redis (which, with `noeviction`, would stop the queues), and `greenq dlq list` says
how many were dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from greenq.shared import scripts
from greenq.shared.keys import DEAD_LETTER_DROPPED_KEY, DEAD_LETTER_INDEX_KEY, DEAD_LETTER_KEY
from greenq.shared.settings import DeadLetterSettings

MAX_BODY_CHARS = 64 * 1024


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    queue: str | None = None
    task: str | None = None
    job_id: str | None = None
    args: list[Any] | None = None  # the task's arguments, when the message could be decoded
    raw: str | None = None  # the undecodable body, truncated
    attempts: int = 0
    at: float = field(default_factory=time.time)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def retryable(self) -> bool:
        return self.task is not None and self.args is not None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, default=str)


def truncate(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text[:MAX_BODY_CHARS]


class DeadLetterStore:
    """>>> store = DeadLetterStore(redis_client, settings.dead_letters)
    >>> store.add(DeadLetter(reason="unknown task 'x'", raw=body))
    """

    def __init__(self, client: Any, limits: DeadLetterSettings | None = None) -> None:
        self._redis = client  # a redis.Redis (or kombu's pooled client)
        self._limits = limits or DeadLetterSettings()
        self._add = scripts.register(client, "add_dead_letter")

    def add(self, letter: DeadLetter) -> str:
        keys = [DEAD_LETTER_KEY, DEAD_LETTER_INDEX_KEY, DEAD_LETTER_DROPPED_KEY]
        limits = self._limits
        args: list[str | int] = [letter.id, letter.to_json(), repr(letter.at), limits.max_records, limits.retention_s]
        self._add(keys=keys, args=args, client=self._redis)
        return letter.id

    def list(self) -> list[DeadLetter]:
        records = [DeadLetter(**json.loads(v)) for v in self._redis.hvals(DEAD_LETTER_KEY)]
        if records and len(records) > int(self._redis.zcard(DEAD_LETTER_INDEX_KEY)):
            # Written before the index existed: index them, so the next write's trim counts them too.
            self._redis.zadd(DEAD_LETTER_INDEX_KEY, {r.id: r.at for r in records}, nx=True)
        return sorted(records, key=lambda r: r.at)

    def dropped(self) -> int:
        """Records the bounds dropped (oldest first) since the store last expired."""
        return int(self._redis.get(DEAD_LETTER_DROPPED_KEY) or 0)

    def get(self, letter_id: str) -> DeadLetter | None:
        raw = self._redis.hget(DEAD_LETTER_KEY, letter_id)
        return None if raw is None else DeadLetter(**json.loads(raw))

    def remove(self, letter_id: str) -> bool:
        self._redis.zrem(DEAD_LETTER_INDEX_KEY, letter_id)
        return bool(self._redis.hdel(DEAD_LETTER_KEY, letter_id))

    def purge(self) -> int:
        count = int(self._redis.hlen(DEAD_LETTER_KEY))
        self._redis.delete(DEAD_LETTER_KEY, DEAD_LETTER_INDEX_KEY)
        return count
