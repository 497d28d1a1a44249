"""The message a producer puts on the queue: job id, type, payload and delivery terms.

The envelope is the one positional argument of the Celery task `greenq.jobs.<job_type>`; its JSON
Schema, with each job type's payload schema, is published in `shared/schema/envelope.schema.json`
(regenerate it with `python -m greenq.shared.envelope`) for producers written in other languages.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from greenq.shared.delivery import IdempotencyKey, Priority
from greenq.shared.errors import InvalidJob
from greenq.shared.job_types import KnownJobType
from greenq.shared.job_types.variants import per_type_union
from greenq.shared.jobs import SCHEMA_VERSION

ENVELOPE_SCHEMA_PATH = Path(__file__).parent / "schema" / "envelope.schema.json"


class Envelope(BaseModel):
    """One job on the wire; `payload` is validated again by the worker against its job type.

    `priority` is greenq's own scale, 0 (least urgent) to 9 (most urgent), whatever the broker.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)
    job_id: str = Field(min_length=1, max_length=128, description="the Celery task id; results are stored under it")
    job_type: KnownJobType
    payload: dict[str, Any] = Field(description="the job, valid against its job type's payload schema")
    submitted_at: float = Field(gt=0, description="Unix time the producer accepted the job, seconds")
    deadline_at: float | None = Field(default=None, gt=0, description="Unix time after which the job is not computed")
    priority: Priority
    idempotency_key: IdempotencyKey | None = None
    run_by: float | None = Field(default=None, gt=0, description="Unix time by which the job must have run")
    carbon_aware: bool = Field(default=False, description="deferred to the cleanest grid hours before `run_by`")
    released_at: float | None = Field(
        default=None, gt=0, description="Unix time a deferred job was released; its objective counts from here"
    )
    intensity_at_submission_g_per_kwh: float | None = Field(
        default=None, ge=0, description="grid intensity when a deferred job was submitted, for its receipt"
    )

    def encode(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def decode(cls, raw: Any) -> Envelope:
        if not isinstance(raw, dict):
            raise InvalidJob([("envelope", f"must be a JSON object, not {type(raw).__name__}")])
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise InvalidJob.from_validation(exc, prefix="envelope.") from None

    def is_expired(self, now: float) -> bool:
        return self.deadline_at is not None and now >= self.deadline_at

    @property
    def clock_from(self) -> float:
        """Where its latency objective counts from: submission, or its release if it was deferred."""
        return self.released_at or self.submitted_at


def envelope_schema() -> dict[str, Any]:
    """The envelope's JSON Schema: one variant per registered job type, its payload typed."""
    one_of = per_type_union(
        Envelope,
        "Envelope",
        tag="job_type",
        payload=("payload", lambda spec: (spec.payload, Field(description=f"the {spec.name} job"))),
        doc=lambda spec: f"A `{spec.name}` job: {spec.summary}.",
    )
    schema: dict[str, Any] = TypeAdapter[Any](one_of).json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "greenq job envelope",
        "description": (
            "The single positional argument of the Celery task greenq.jobs.<job_type>, sent to the queue "
            "greenq.<job_type> with JSON serialization. See the README's 'Wire contract'."
        ),
        **schema,
    }


def render_envelope_schema() -> str:
    return json.dumps(envelope_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    ENVELOPE_SCHEMA_PATH.write_text(render_envelope_schema(), encoding="utf-8")
    print(f"wrote {ENVELOPE_SCHEMA_PATH}", file=sys.stderr)
