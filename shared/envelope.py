"""The message a producer puts on the queue: job id, type, payload and delivery terms."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import InvalidJob
from shared.jobs import SCHEMA_VERSION, JobType, field_errors

MIN_PRIORITY = 0
MAX_PRIORITY = 9


class Envelope(BaseModel):
    """One job on the wire; `payload` is validated again by the worker against its job type.

    `priority` is greenq's own scale, 0 (least urgent) to 9 (most urgent), whatever the broker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    job_id: str = Field(min_length=1, max_length=128)
    job_type: JobType
    payload: dict[str, Any]
    submitted_at: float = Field(gt=0, description="Unix time the producer accepted the job, seconds")
    deadline_at: float | None = Field(default=None, gt=0, description="Unix time after which the job is not computed")
    priority: int = Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)

    def encode(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def decode(cls, raw: Any) -> Envelope:
        if not isinstance(raw, dict):
            raise InvalidJob([("envelope", f"must be a JSON object, not {type(raw).__name__}")])
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise InvalidJob(field_errors(exc, prefix="envelope.")) from None

    def is_expired(self, now: float) -> bool:
        return self.deadline_at is not None and now >= self.deadline_at
