"""`greenq dlq`: look at, retry and purge what workers gave up on."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlparse

from greenq.producers.client import Client
from greenq.shared.attempts import AttemptCounter
from greenq.shared.deadletter import DeadLetter, DeadLetterStore
from greenq.shared.redis_client import redis_client
from greenq.shared.settings import Settings

DEFAULT_REDIS_PORT = 6379


def database_of(url: str) -> tuple[str, int, int] | str:
    """Which database a Redis URL names: (host, port, number), or (socket path, 0, number) for unix://.
    A URL that names no single server (sentinel://: its sentinels find the master) is its own text."""
    try:
        parsed = urlparse(url)
        in_query = parse_qs(parsed.query).get("db", [""])[0]
        if parsed.scheme == "unix":  # the path is the socket's: the number is in the query alone
            return (parsed.path, 0, int(in_query or 0))
        if parsed.scheme in ("redis", "rediss"):
            db = int(in_query or parsed.path.strip("/") or 0)
            return ((parsed.hostname or "localhost").lower(), parsed.port or DEFAULT_REDIS_PORT, db)
    except ValueError:  # a port or database that is not a number: compare the text
        pass
    return url


def dead_letter_stores(settings: Settings) -> list[DeadLetterStore]:
    """Every store `greenq dlq` reads: the result backend's (jobs and messages workers refused), and the
    broker's when it is another Redis (list items the transport could not read are dead-lettered there)."""
    # One store when both name the same database, however written (redis://h:6379 is redis://h:6379/0).
    urls: dict[tuple[str, int, int] | str, str] = {}
    for url in (settings.backend_url, settings.broker_url):
        urls.setdefault(database_of(url), url)
    return [
        DeadLetterStore(
            redis_client(url, settings.tls_ca_file, sentinel_master=settings.sentinel_master), settings.dead_letters
        )
        for url in urls.values()
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
