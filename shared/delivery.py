"""Delivery terms: how urgent a job is, how long it is worth computing, and which resubmissions are the same job.

`DeliveryTerms` is the one model that checks them, for the Python client, job files (`greenq submit`)
and the HTTP API alike; the envelope on the wire (shared/envelope.py) and the settings use the same
field types, so each range is written here once.

>>> DeliveryTerms.parse({"priority": 9, "deadline_s": 30, "idempotency_key": "ticket-981"})
DeliveryTerms(priority=9, deadline_s=30.0, idempotency_key='ticket-981', run_by=None, carbon_aware=None)

`run_by` makes a job deferrable: a number is seconds from submission, a string an ISO 8601 time with
its zone. A carbon-aware job (the job type's default when `run_by` is given: on for description and
strategy) waits in Redis for the cleanest grid hours before it (`greenq scheduler`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from greenq.shared.errors import InvalidJob

MIN_PRIORITY = 0  # least urgent
MAX_PRIORITY = 9  # most urgent
MAX_DEADLINE_S = 7 * 86400
MAX_IDEMPOTENCY_KEY_CHARS = 200


def _explained(problem: str) -> WrapValidator:
    """Replace pydantic's wording with `problem` when the field fails, whatever the reason."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("delivery_term", "{problem}", {"problem": problem}) from None

    return WrapValidator(check)


Priority = Annotated[
    int,
    Field(ge=MIN_PRIORITY, le=MAX_PRIORITY, description="0 least urgent … 9 most urgent"),
    _explained(f"must be an integer from {MIN_PRIORITY} (least urgent) to {MAX_PRIORITY} (most urgent)"),
]
DeadlineSeconds = Annotated[
    float,
    Field(gt=0, le=MAX_DEADLINE_S, description="seconds from submission after which the job is not computed"),
    _explained(f"must be a positive number of seconds, at most {MAX_DEADLINE_S} (7 days)"),
]
IdempotencyKey = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY_CHARS,
        description="the same key (per job type) names the same job, which is enqueued once",
    ),
    _explained(f"must be a string of 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
]
RUN_BY_PROBLEM = (
    f"must be a positive number of seconds, at most {MAX_DEADLINE_S} (7 days), or an ISO 8601 time with its "
    "zone (2026-12-01T06:00:00Z)"
)


def _run_by(value: Any) -> float | datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= MAX_DEADLINE_S:
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value
    raise PydanticCustomError("delivery_term", RUN_BY_PROBLEM)


RunBy = Annotated[
    float | datetime,
    PlainValidator(_run_by),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DEADLINE_S},
                {"type": "string", "format": "date-time"},
            ],
            "description": (
                "when the job must have run: seconds from submission (a number), or an ISO 8601 time with its "
                "zone; a carbon-aware job waits for the cleanest grid hours before it"
            ),
        }
    ),
]
CarbonAware = Annotated[
    bool,
    Field(description="wait for the cleanest grid hours before `run_by`; default: the job type's"),
    _explained("must be true or false"),
]


class DeliveryTerms(BaseModel):
    """What a submitter may ask of one job's delivery; every term is optional.

    `priority` defaults to the job type's (GREENQ_PRIORITY); without `deadline_s` a job never expires.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    priority: Priority | None = None
    deadline_s: DeadlineSeconds | None = None
    idempotency_key: IdempotencyKey | None = None
    run_by: RunBy | None = None
    carbon_aware: CarbonAware | None = None

    def run_by_at(self, now: float) -> float | None:
        """`run_by` as Unix seconds, for a job submitted at `now`."""
        if self.run_by is None:
            return None
        if isinstance(self.run_by, datetime):
            return self.run_by.timestamp()
        return now + self.run_by

    @classmethod
    def parse(cls, raw: Mapping[str, Any], prefix: str = "") -> DeliveryTerms:
        """Validate raw terms; raise InvalidJob with one (field, problem) pair per problem."""
        try:
            return cls.model_validate(dict(raw))
        except ValidationError as exc:
            raise InvalidJob.from_validation(exc, prefix) from None
