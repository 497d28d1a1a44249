"""Queue statistics: depth over kombu's priority sub-lists, the oldest job's age, unacked (no Redis)."""

from __future__ import annotations

import base64
import json
from typing import Any

from greenq.shared import job_types
from greenq.shared.keys import UNACKED_KEY
from greenq.shared.queue_stats import read_queue_stats, submitted_at
from greenq.shared.queues import queue_name, redis_priority_lists


class _ListsRedis:
    """Redis lists and one hash in memory, read through a pipeline as the real client is."""

    def __init__(self, lists: dict[str, list[bytes]], unacked: int = 0) -> None:
        self.lists = lists  # index 0 is the left end: LPUSH'd newest first
        self.unacked = unacked
        self._replies: list[Any] = []

    def pipeline(self) -> _ListsRedis:
        self._replies = []
        return self

    def llen(self, name: str) -> None:
        self._replies.append(len(self.lists.get(name, [])))

    def lindex(self, name: str, index: int) -> None:
        items = self.lists.get(name, [])
        self._replies.append(items[index] if items else None)

    def hlen(self, name: str) -> None:
        self._replies.append(self.unacked if name == UNACKED_KEY else 0)

    def execute(self) -> list[Any]:
        return self._replies


def _message(at: float, base64_body: bool = True) -> bytes:
    body = json.dumps([[{"job_id": "j", "submitted_at": at}], {}, {}])
    if base64_body:
        encoded = base64.b64encode(body.encode()).decode()
        return json.dumps({"body": encoded, "properties": {"body_encoding": "base64"}}).encode()
    return json.dumps({"body": body, "properties": {}}).encode()


def test_depth_counts_every_priority_sub_list_and_age_is_the_oldest_of_them() -> None:
    reply = redis_priority_lists(queue_name("reply"))
    client = _ListsRedis(
        {
            reply[0]: [_message(90.0), _message(80.0)],
            reply[9]: [_message(50.0, base64_body=False)],
            reply[3]: [b"not json"],
        },
        unacked=2,
    )
    stats = read_queue_stats(client, now=100.0)
    by_queue = {q.queue: q for q in stats.queues}
    assert by_queue["greenq.reply"].depth == 4
    assert by_queue["greenq.reply"].oldest_age_s == 50.0
    assert by_queue["greenq.strategy"].depth == 0 and by_queue["greenq.strategy"].oldest_age_s == 0.0
    assert set(by_queue) == {queue_name(t) for t in job_types.names()}
    assert stats.unacked == 2


def test_one_job_type_and_a_clock_behind_the_message() -> None:
    description = queue_name("description")
    stats = read_queue_stats(_ListsRedis({description: [_message(200.0)]}), ["description"], now=100.0)
    assert [(q.queue, q.depth, q.oldest_age_s) for q in stats.queues] == [(description, 1, 0.0)]


def test_unreadable_messages_have_no_submission_time() -> None:
    assert submitted_at(_message(12.5)) == 12.5
    for raw in (b"", b"[]", b'{"body": "e30="}', json.dumps({"body": "[[{}]]"}).encode()):
        assert submitted_at(raw) is None
