"""`greenq dlq`: look at, retry and purge what workers gave up on."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

from producers.client import Client
from shared.attempts import AttemptCounter
from shared.deadletter import DeadLetterStore
from shared.redis_client import redis_client
from shared.settings import Settings


def run_dlq(settings: Settings, action: str, letter_id: str | None) -> int:
    store = DeadLetterStore(
        redis_client(settings.backend_url, settings.tls_ca_file, sentinel_master=settings.sentinel_master)
    )
    if action == "list":
        for entry in store.list():
            when = datetime.fromtimestamp(entry.at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            retry = "retryable" if entry.retryable else "-"
            print(f"{entry.id}  {when}  {entry.queue or '-':<20} {entry.job_id or '-':<36} {retry:<9} {entry.reason}")
        return 0
    if action == "purge" and letter_id is None:
        print(f"purged {store.purge()} dead letters")
        return 0
    if letter_id is None:
        print(f"greenq dlq {action}: give a dead-letter id (see `greenq dlq list`)", file=sys.stderr)
        return 2
    letter = store.get(letter_id)
    if letter is None:
        print(f"greenq dlq: no dead letter {letter_id!r}", file=sys.stderr)
        return 2
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
