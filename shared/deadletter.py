"""The dead-letter store: messages and jobs greenq gave up on, each with its reason.

A Redis hash `greenq:dead` maps a record id to a JSON record. Records hold the raw body
(truncated) so an operator can inspect, retry (`greenq dlq retry`) or purge them.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.keys import DEAD_LETTER_KEY

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
    def __init__(self, client: Any) -> None:
        self._redis = client  # a redis.Redis (or kombu's pooled client)

    def add(self, letter: DeadLetter) -> str:
        self._redis.hset(DEAD_LETTER_KEY, letter.id, letter.to_json())
        return letter.id

    def list(self) -> list[DeadLetter]:
        records = [DeadLetter(**json.loads(v)) for v in self._redis.hvals(DEAD_LETTER_KEY)]
        return sorted(records, key=lambda r: r.at)

    def get(self, letter_id: str) -> DeadLetter | None:
        raw = self._redis.hget(DEAD_LETTER_KEY, letter_id)
        return None if raw is None else DeadLetter(**json.loads(raw))

    def remove(self, letter_id: str) -> bool:
        return bool(self._redis.hdel(DEAD_LETTER_KEY, letter_id))

    def purge(self) -> int:
        count = int(self._redis.hlen(DEAD_LETTER_KEY))
        self._redis.delete(DEAD_LETTER_KEY)
        return count
