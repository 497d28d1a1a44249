"""`greenq dlq`: look at, retry and purge what workers gave up on."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from producers.client import Client
from shared.attempts import AttemptCounter
from shared.deadletter import DeadLetter, DeadLetterStore
from shared.redis_client import redis_client
from shared.settings import Settings


def dead_letter_stores(settings: Settings) -> list[DeadLetterStore]:
    """Every store `greenq dlq` reads: the result backend's (jobs and messages workers refused), and the
    broker's when it is another Redis (list items the transport could not read are dead-lettered there)."""
    urls = dict.fromkeys([settings.backend_url, settings.broker_url])  # one store when they are the same
    return [
        DeadLetterStore(
            redis_client(url, settings.tls_ca_file, sentinel_master=settings.sentinel_master), settings.dead_letters
        )
        for url in urls
    ]


def _find(stores: list[DeadLetterStore], letter_id: str) -> tuple[DeadLetterStore, DeadLetter] | None:
    for store in stores:
        letter = store.get(letter_id)
        if letter is not None:
            return store, letter
    return None


def run_dlq(settings: Settings, action: str, letter_id: str | None) -> int:
    stores = dead_letter_stores(settings)
    if action == "list":
        for entry in sorted((e for s in stores for e in s.list()), key=lambda e: e.at):
            when = datetime.fromtimestamp(entry.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            retry = "retryable" if entry.retryable else "-"
            print(f"{entry.id}  {when}  {entry.queue or '-':<20} {entry.job_id or '-':<36} {retry:<9} {entry.reason}")
        dropped = sum(s.dropped() for s in stores)
        if dropped:
            print(
                f"greenq dlq: {dropped} older dead letters were dropped by the store's bounds (GREENQ_DEAD_LETTERS)",
                file=sys.stderr,
            )
        return 0
    if action == "purge" and letter_id is None:
        print(f"purged {sum(s.purge() for s in stores)} dead letters")
        return 0
    if letter_id is None:
        print(f"greenq dlq {action}: give a dead-letter id (see `greenq dlq list`)", file=sys.stderr)
        return 2
    found = _find(stores, letter_id)
    if found is None:
        print(f"greenq dlq: no dead letter {letter_id!r}", file=sys.stderr)
        return 2
    store, letter = found
    if action == "show":
        print(json.dumps(json.loads(letter.to_json()), indent=2, ensure_ascii=False))
    elif action == "purge":
        store.remove(letter_id)
        print(f"purged 1 dead letter ({letter_id})")
    else:
        if not letter.retryable or letter.task is None or letter.args is None:
            print(f"greenq dlq retry: {letter_id} has no decodable task to send again", file=sys.stderr)
            return 2
        with Client(settings) as client:
            if letter.job_id:  # a fresh start: forget the stored failure and the attempt count
                client.app.backend.forget(letter.job_id)
                AttemptCounter(client.app.backend.client, settings.result_ttl_s).reset(letter.job_id)
            client.app.send_task(letter.task, args=letter.args, task_id=letter.job_id, queue=letter.queue)
        store.remove(letter_id)
        print(f"sent {letter.job_id or letter_id} back to {letter.queue}")
    return 0
