"""Celery's consumer, with every message it refuses also written to the dead-letter store.

Celery already survives these (it logs and rejects them); greenq keeps the evidence:
unknown task names, invalid task messages, and bodies it may not decode (pickle, for one:
`accept_content` is JSON only).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

from greenq.shared.deadletter import DeadLetter, DeadLetterStore, truncate
from greenq.shared.redact import redact_text

log = logging.getLogger(__name__)


class DeadLetteringConsumer(Consumer):  # type: ignore[misc]
    def _dead_letter(self, message: Any, reason: str) -> None:
        try:
            headers = message.headers or {}
            letter = DeadLetter(
                reason=redact_text(reason),
                queue=(message.delivery_info or {}).get("routing_key"),
                task=headers.get("task"),
                job_id=headers.get("id"),
                raw=truncate(message.body),
            )
            DeadLetterStore(self.app.backend.client, self.app.conf.get("greenq_dead_letters")).add(letter)
        except Exception:  # the store is best effort: never let it stop the consumer
            log.exception("could not write a dead letter")

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"undecodable message ({message.content_type}): {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, "not a Celery task message")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"unknown task {(message.headers or {}).get('task')!r}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)
